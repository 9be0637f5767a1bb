"""Shoal's own events on EventBridge: "demand changed" wakes the scaler as soon as jobs arrive.

``PutEvents`` reports failures per entry with HTTP 200, so the answer is checked, not just the call.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws
from shared.services.ports import EventPublishError
from shared.services.telemetry import EVENT_DEMAND_CHANGED, EVENT_SOURCE

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

    from shared.services.ports import DemandEvents


class EventBridgeDemandEvents:
    """``DemandEvents`` on an EventBridge bus."""

    def __init__(
        self, event_bus_name: str = "default", *, client: EventBridgeClient | None = None, region: str | None = None
    ) -> None:
        self.event_bus_name = event_bus_name or "default"
        self.client: EventBridgeClient = client if client is not None else aws.client("events", region)

    def publish_demand_changed(self, *, cluster: str, queued: int, now: float) -> None:
        detail = {"cluster": cluster, "queued": queued, "at": now}
        try:
            response = self.client.put_events(
                Entries=[
                    {
                        "Source": EVENT_SOURCE,
                        "DetailType": EVENT_DEMAND_CHANGED,
                        "Detail": json.dumps(detail, sort_keys=True),
                        "EventBusName": self.event_bus_name,
                        "Time": datetime.fromtimestamp(now, tz=UTC),
                        "Resources": [],
                    }
                ]
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", "")
            hint = (
                "; deploy the cluster's stack or check --event-bus / SHOAL_EVENT_BUS_NAME"
                if code == "ResourceNotFoundException"
                else ""
            )
            raise EventPublishError(
                f"could not put the demand event on event bus {self.event_bus_name!r}: {code}: {message}{hint}"
            ) from error
        except BotoCoreError as error:  # no credentials, no network, ...
            raise EventPublishError(
                f"could not put the demand event on event bus {self.event_bus_name!r}: {error}"
            ) from error
        if response.get("FailedEntryCount", 0):
            failed = [e for e in response.get("Entries", []) if "ErrorCode" in e]
            code = failed[0].get("ErrorCode", "unknown error") if failed else "unknown error"
            message = failed[0].get("ErrorMessage", "") if failed else ""
            raise EventPublishError(f"event bus {self.event_bus_name!r} refused the demand event: {code}: {message}")


if TYPE_CHECKING:  # mypy checks that the adapter implements the port

    def _implement_the_port(events: EventBridgeDemandEvents) -> None:
        port: DemandEvents = events
        del port

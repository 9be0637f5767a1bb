"""The "demand changed" event: what lands on the bus, and the errors when it cannot."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from shared.adapters import aws
from shared.adapters.events import EventBridgeDemandEvents
from shared.services.ports import EventPublishError
from shared.services.telemetry import EVENT_DEMAND_CHANGED, EVENT_SOURCE
from tests.adapters.conftest import REGION, EventCapture

NOW = 1_700_000_000.5


def test_the_event_carries_cluster_queued_and_time(event_capture: EventCapture) -> None:
    # GIVEN a bus whose Shoal events are captured
    # WHEN demand changes are published
    event_capture.publisher.publish_demand_changed(cluster="genomics", queued=42, now=NOW)

    # THEN one event with Shoal's source and detail-type, and the detail the scaler reads
    (event,) = event_capture.events()
    assert (event["source"], event["detail-type"]) == (EVENT_SOURCE, EVENT_DEMAND_CHANGED)
    assert event["detail"] == {"cluster": "genomics", "queued": 42, "at": NOW}


def test_a_missing_bus_is_named(event_capture: EventCapture) -> None:
    # GIVEN a bus name that does not exist  WHEN an event is put  THEN the error names the bus and the fix
    events = EventBridgeDemandEvents("no-such-bus", client=event_capture.publisher.client)
    with pytest.raises(EventPublishError, match=r"'no-such-bus'.*ResourceNotFoundException.*SHOAL_EVENT_BUS_NAME"):
        events.publish_demand_changed(cluster="genomics", queued=1, now=NOW)


def test_a_refused_entry_is_an_error(aws_credentials: None) -> None:
    # GIVEN EventBridge answers 200 but refuses the entry (moto never does: a Stubber plays EventBridge)
    client = aws.client("events", REGION)
    with Stubber(client) as stubber:
        stubber.add_response(
            "put_events",
            {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try later"}]},
        )

        # WHEN an event is put  THEN the refusal is an error naming the bus and the code
        with pytest.raises(EventPublishError, match="'shoal' refused the demand event: InternalFailure: try later"):
            EventBridgeDemandEvents("shoal", client=client).publish_demand_changed(cluster="c", queued=1, now=NOW)

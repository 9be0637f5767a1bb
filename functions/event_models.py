"""The events that wake the control plane, as parser models: the EventBridge envelope and each detail type.

Parsed at the edge (here, in ``functions/``): the services below take plain values, not events.

Both functions take an EventBridge event directly, or an SQS batch whose bodies are EventBridge events
(the durable route for interruption notices). ``parse_*`` turn a raw event into one of these models or
raise ``MalformedEventError`` with one line naming what was wrong, for the log and the dead-letter queue.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, RootModel

from shared.services.telemetry import EVENT_DEMAND_CHANGED

INSTANCE_ID = r"^i-[0-9a-f]{8,17}$"
M = TypeVar("M", bound=BaseModel)


class MalformedEventError(ValueError):
    """An event that is not one this function handles; the message says what was wrong."""


class _Detail(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


# --- evaluate_scaling ---------------------------------------------------------------------------


class ScheduledEvent(EventBridgeModel):
    """The EventBridge schedule (every ``scaleInterval``)."""

    source: Literal["aws.events", "aws.scheduler"]
    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")
    detail: dict[str, Any] = Field(default_factory=dict)


class AlarmState(_Detail):
    value: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
    reason: str | None = None


class AlarmDetail(_Detail):
    alarm_name: str = Field(alias="alarmName", min_length=1)
    state: AlarmState
    previous_state: AlarmState | None = Field(default=None, alias="previousState")


class AlarmStateChangeEvent(EventBridgeModel):
    """The queue-depth alarm changed state."""

    source: Literal["aws.cloudwatch"]
    detail_type: Literal["CloudWatch Alarm State Change"] = Field(alias="detail-type")
    detail: AlarmDetail


class DemandChangedDetail(_Detail):
    cluster: str = Field(min_length=1)
    queued: int = Field(ge=0)
    at: float


class DemandChangedEvent(EventBridgeModel):
    """Submission put jobs in the queue (debounced by the submitter)."""

    source: Literal["shoal"]  # telemetry.EVENT_SOURCE
    detail_type: Literal["Shoal Demand Changed"] = Field(alias="detail-type")
    detail: DemandChangedDetail


AnyScalingTrigger = Annotated[
    ScheduledEvent | AlarmStateChangeEvent | DemandChangedEvent, Field(discriminator="detail_type")
]


ScalingTriggerEvent = ScheduledEvent | AlarmStateChangeEvent | DemandChangedEvent


class ScalingTrigger(RootModel[AnyScalingTrigger]):
    """Whatever wakes ``evaluate_scaling``."""


# --- on_instance_event --------------------------------------------------------------------------


class InstanceStateDetail(_Detail):
    instance_id: str = Field(alias="instance-id", pattern=INSTANCE_ID)
    state: Literal["pending", "running", "stopping", "stopped", "shutting-down", "terminated"]


class InstanceStateChangeEvent(EventBridgeModel):
    source: Literal["aws.ec2"]
    detail_type: Literal["EC2 Instance State-change Notification"] = Field(alias="detail-type")
    detail: InstanceStateDetail


class SpotInterruptionDetail(_Detail):
    instance_id: str = Field(alias="instance-id", pattern=INSTANCE_ID)
    instance_action: Literal["terminate", "stop", "hibernate"] = Field(alias="instance-action")


class SpotInterruptionEvent(EventBridgeModel):
    """Two minutes' notice before EC2 reclaims a spot instance."""

    source: Literal["aws.ec2"]
    detail_type: Literal["EC2 Spot Instance Interruption Warning"] = Field(alias="detail-type")
    detail: SpotInterruptionDetail


class RebalanceDetail(_Detail):
    instance_id: str = Field(alias="instance-id", pattern=INSTANCE_ID)


class RebalanceRecommendationEvent(EventBridgeModel):
    """A spot instance is at elevated risk of interruption."""

    source: Literal["aws.ec2"]
    detail_type: Literal["EC2 Instance Rebalance Recommendation"] = Field(alias="detail-type")
    detail: RebalanceDetail


AnyInstanceEvent = Annotated[
    InstanceStateChangeEvent | SpotInterruptionEvent | RebalanceRecommendationEvent, Field(discriminator="detail_type")
]


AnyInstanceEventModel = InstanceStateChangeEvent | SpotInterruptionEvent | RebalanceRecommendationEvent


class InstanceEvent(RootModel[AnyInstanceEvent]):
    """Whatever wakes ``on_instance_event``."""


SCALING_DETAIL_TYPES = ("Scheduled Event", "CloudWatch Alarm State Change", EVENT_DEMAND_CHANGED)
INSTANCE_DETAIL_TYPES = (
    "EC2 Instance State-change Notification",
    "EC2 Spot Instance Interruption Warning",
    "EC2 Instance Rebalance Recommendation",
)


def parse_scaling_trigger(event: object) -> ScalingTriggerEvent:
    return _parse(event, ScalingTrigger, SCALING_DETAIL_TYPES).root


def parse_instance_event(event: object) -> AnyInstanceEventModel:
    return _parse(event, InstanceEvent, INSTANCE_DETAIL_TYPES).root


def event_from_body(body: str) -> dict[str, Any]:
    """The EventBridge event an SQS message carries."""
    try:
        event = json.loads(body)
    except json.JSONDecodeError as error:
        raise MalformedEventError(f"the message body is not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(event, dict):
        raise MalformedEventError(f"the message body must be an EventBridge event object, got {type(event).__name__}")
    return event


def _parse(event: object, model: type[M], expected: tuple[str, ...]) -> M:
    if not isinstance(event, dict):
        raise MalformedEventError(f"an event must be a JSON object, got {type(event).__name__}")
    detail_type = event.get("detail-type")
    if detail_type not in expected:
        raise MalformedEventError(
            f"detail-type {detail_type!r} (source {event.get('source')!r}) is not handled here; "
            f"expected one of: {', '.join(expected)}"
        )
    try:
        return parse(event=event, model=model)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:] if part != detail_type) or "event"
        raise MalformedEventError(
            f"{detail_type} event {event.get('id', '(no id)')!r}: {where}: {first['msg']}"
            + (f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else "")
        ) from None

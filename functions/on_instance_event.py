"""on_instance_event: EC2 state changes, spot interruption warnings and rebalance recommendations.

Handler name ``on_instance_event.lambda_handler``. The node is marked, its jobs go back to the queue if
it is going away, and a scaling round replaces the lost capacity. Takes an EventBridge event, or an SQS
batch of them (the durable route: a malformed record is a batch item failure, the others still run).
Each event id is handled once (Powertools idempotency on ``id``).
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.event_entry import Warm, entry, warm_up
from shared.services.event_models import (
    InstanceStateChangeEvent,
    RebalanceRecommendationEvent,
    SpotInterruptionEvent,
    parse_instance_event,
)
from shared.services.reconcile import InstanceEventKind, handle_instance_event
from shared.services.round_report import report_round
from shared.services.telemetry import METRICS_NAMESPACE, SERVICE_NAME

FUNCTION = "on_instance_event"
logger = Logger(service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
processor = BatchProcessor(event_type=EventType.SQS)

AnyInstanceEvent = InstanceStateChangeEvent | SpotInterruptionEvent | RebalanceRecommendationEvent


def clock() -> float:
    """Now, in epoch seconds (tests put a simulated clock here)."""
    return time.time()


@lru_cache(maxsize=1)
def runtime() -> Warm:
    return warm_up(FUNCTION, _handle)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return entry(
        event,
        context,
        warm=runtime(),
        parse=parse_instance_event,
        run=_once,
        logger=logger,
        metrics=metrics,
        processor=processor,
    )


def _once(event: AnyInstanceEvent) -> dict[str, object]:
    logger.append_keys(event_id=event.id, instance_id=event.detail.instance_id, detail_type=event.detail_type)
    try:
        return runtime().once(event=event)
    except IdempotencyAlreadyInProgressError:
        logger.info("this event is already being handled")
        return {"status": "in progress", "event_id": event.id}


@tracer.capture_method
def _handle(event: AnyInstanceEvent) -> dict[str, object]:
    rt = runtime()
    if isinstance(event, SpotInterruptionEvent):
        kind, ec2_state = InstanceEventKind.SPOT_INTERRUPTION, None
    elif isinstance(event, RebalanceRecommendationEvent):
        kind, ec2_state = InstanceEventKind.REBALANCE, None
    else:
        kind, ec2_state = InstanceEventKind.STATE_CHANGE, event.detail.state
    result = handle_instance_event(
        rt.plane,
        rt.env.cluster,
        rt.offers,
        kind=kind,
        instance_id=event.detail.instance_id,
        ec2_state=ec2_state,
        now=clock(),
        round_id=event.id,
    )
    if not result.known:
        logger.info("not a node of this cluster; ignored")
    elif result.requeued_jobs:
        logger.info("jobs returned to the queue", jobs=list(result.requeued_jobs))
    if result.round is not None:
        report_round(result.round, logger, metrics)
    return result.to_dict()

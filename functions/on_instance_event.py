"""on_instance_event: EC2 state changes, spot interruption warnings and rebalance recommendations.

Handler name ``on_instance_event.lambda_handler``. The node is marked, its jobs go back to the queue if
it is going away, and a scaling round replaces the lost capacity. Takes an EventBridge event, or an SQS
batch of them (``record_handler``, the durable route: a malformed record is a batch item failure, the
others still run). Each event id is handled once (Powertools idempotency on ``id``).
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.event_models import (
    AnyInstanceEventModel,
    MalformedEventError,
    RebalanceRecommendationEvent,
    SpotInterruptionEvent,
    parse_instance_event,
)
from functions.event_runtime import Result, Runtime, from_record, is_sqs_batch, rejected
from functions.observability import logger, metrics, report_round, tracer
from shared.services.instance_events import InstanceEventKind, handle_instance_event

FUNCTION = "on_instance_event"
processor = BatchProcessor(event_type=EventType.SQS)


def clock() -> float:
    """Now, in epoch seconds (tests and the local cloud put a simulated clock here)."""
    return time.time()


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    return Runtime.warm_up(FUNCTION, handle)


def record_handler(record: SQSRecord) -> Result:
    """One message of the SQS route: the EventBridge event it carries."""
    return runtime().once(from_record(record, parse_instance_event))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime().start(context)
    if is_sqs_batch(event):
        return dict(
            process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
        )
    try:
        return runtime().once(parse_instance_event(event))
    except MalformedEventError as error:
        return rejected(error)


@tracer.capture_method
def handle(event: AnyInstanceEventModel) -> Result:
    """What ``event`` does to its node (run at most once per event id)."""
    logger.append_keys(instance_id=event.detail.instance_id)
    if isinstance(event, SpotInterruptionEvent):
        kind, ec2_state = InstanceEventKind.SPOT_INTERRUPTION, None
    elif isinstance(event, RebalanceRecommendationEvent):
        kind, ec2_state = InstanceEventKind.REBALANCE, None
    else:
        kind, ec2_state = InstanceEventKind.STATE_CHANGE, event.detail.state
    rt = runtime()
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
        report_round(result.round)
    return result.to_dict()

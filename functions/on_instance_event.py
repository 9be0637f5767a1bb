"""on_instance_event: EC2 state changes, spot interruption warnings and rebalance recommendations.

Handler name ``on_instance_event.lambda_handler``. The node is marked, its jobs go back to the queue if
it is going away, and a scaling round replaces the lost capacity. Takes an EventBridge event, or an SQS
batch of them (the durable route: a malformed record is a batch item failure, the others still run).
Each event id is handled once (Powertools idempotency on ``id``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.adapters.control_plane import build_control_plane, idempotency_store
from shared.domain.node_types import Offer
from shared.domain.scaling import offers_for
from shared.services.environment import FunctionEnvironment
from shared.services.event_models import (
    InstanceStateChangeEvent,
    MalformedEventError,
    RebalanceRecommendationEvent,
    SpotInterruptionEvent,
    event_from_body,
    parse_instance_event,
)
from shared.services.reconcile import ControlPlane, InstanceEventKind, handle_instance_event
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


@dataclass(frozen=True, slots=True)
class Runtime:
    env: FunctionEnvironment
    offers: list[Offer]
    plane: ControlPlane
    idempotency: IdempotencyConfig
    handle_once: Callable[..., dict[str, object]]


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    """Built on first use (not at import, so tests set the environment first) and kept while warm."""
    env = FunctionEnvironment.from_env()
    config = IdempotencyConfig(event_key_jmespath="id", raise_on_no_idempotency_key=True)
    handle_once = idempotent_function(
        data_keyword_argument="event", persistence_store=idempotency_store(env, FUNCTION), config=config
    )(_handle)
    return Runtime(
        env=env,
        offers=offers_for(env.cluster),
        plane=build_control_plane(env),
        idempotency=config,
        handle_once=handle_once,
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt = runtime()
    rt.idempotency.register_lambda_context(context)
    metrics.set_default_dimensions(cluster=rt.env.cluster.name)
    if isinstance(event, dict) and "Records" in event:
        return dict(process_partial_response(event=event, record_handler=_record, processor=processor, context=context))
    try:
        parsed = parse_instance_event(event)
    except MalformedEventError as error:
        logger.error("event rejected", reason=str(error))
        return {"status": "rejected", "reason": str(error)}
    return _once(parsed)


def _record(record: SQSRecord) -> dict[str, object]:
    try:
        parsed = parse_instance_event(event_from_body(record.body))
    except MalformedEventError as error:
        logger.error("message rejected", message_id=record.message_id, reason=str(error))
        raise
    return _once(parsed)


def _once(event: AnyInstanceEvent) -> dict[str, object]:
    logger.append_keys(event_id=event.id, instance_id=event.detail.instance_id, detail_type=event.detail_type)
    try:
        return runtime().handle_once(event=event)
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

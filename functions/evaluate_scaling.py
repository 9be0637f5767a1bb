"""evaluate_scaling: the schedule, the queue-depth alarm and "demand changed" each run one scaling round.

Handler name ``evaluate_scaling.lambda_handler``. Takes an EventBridge event, or an SQS batch of them
(malformed records are reported as batch item failures; the others still run). Each event id runs at
most one round (Powertools idempotency on ``id``), and overlapping rounds are excluded by the lease.
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
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.adapters.control_plane import build_control_plane, idempotency_store
from shared.domain.node_types import Offer
from shared.domain.scaling import offers_for
from shared.services.environment import FunctionEnvironment
from shared.services.event_models import (
    DemandChangedEvent,
    MalformedEventError,
    event_from_body,
    parse_scaling_trigger,
)
from shared.services.reconcile import ControlPlane, run_round
from shared.services.round_report import report_round
from shared.services.telemetry import METRICS_NAMESPACE, SERVICE_NAME

FUNCTION = "evaluate_scaling"
logger = Logger(service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
processor = BatchProcessor(event_type=EventType.SQS)


def clock() -> float:
    """Now, in epoch seconds (tests put a simulated clock here)."""
    return time.time()


@dataclass(frozen=True, slots=True)
class Runtime:
    env: FunctionEnvironment
    offers: list[Offer]
    plane: ControlPlane
    idempotency: IdempotencyConfig
    run_once: Callable[..., dict[str, object]]


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    """Built on first use (not at import, so tests set the environment first) and kept while warm."""
    env = FunctionEnvironment.from_env()
    config = IdempotencyConfig(event_key_jmespath="id", raise_on_no_idempotency_key=True)
    run_once = idempotent_function(
        data_keyword_argument="event", persistence_store=idempotency_store(env, FUNCTION), config=config
    )(_round)
    return Runtime(
        env=env, offers=offers_for(env.cluster), plane=build_control_plane(env), idempotency=config, run_once=run_once
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
        trigger = parse_scaling_trigger(event)
    except MalformedEventError as error:
        logger.error("event rejected", reason=str(error))
        return {"status": "rejected", "reason": str(error)}
    return _run(trigger)


def _record(record: SQSRecord) -> dict[str, object]:
    try:
        trigger = parse_scaling_trigger(event_from_body(record.body))
    except MalformedEventError as error:
        logger.error("message rejected", message_id=record.message_id, reason=str(error))
        raise
    return _run(trigger)


def _run(trigger: EventBridgeModel) -> dict[str, object]:
    logger.append_keys(event_id=trigger.id, trigger=trigger.detail_type)
    try:
        return runtime().run_once(event=trigger)
    except IdempotencyAlreadyInProgressError:
        logger.info("a round for this event is already running")
        return {"status": "in progress", "event_id": trigger.id}


@tracer.capture_method
def _round(event: EventBridgeModel) -> dict[str, object]:
    rt = runtime()
    if isinstance(event, DemandChangedEvent) and event.detail.cluster != rt.env.cluster.name:
        logger.info("demand changed for another cluster; ignored", cluster=event.detail.cluster)
        return {"status": "ignored", "event_id": event.id, "cluster": event.detail.cluster}
    result = run_round(rt.plane, rt.env.cluster, rt.offers, now=clock(), round_id=event.id, trigger=event.detail_type)
    report_round(result, logger, metrics)
    return result.to_dict()

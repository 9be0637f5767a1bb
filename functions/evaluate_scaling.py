"""evaluate_scaling: the schedule, the queue-depth alarm and "demand changed" each run one scaling round.

Handler name ``evaluate_scaling.lambda_handler``. Takes an EventBridge event, or an SQS batch of them
(malformed records are reported as batch item failures; the others still run). Each event id runs at
most one round (Powertools idempotency on ``id``), and overlapping rounds are excluded by the lease.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.event_entry import Warm, entry, warm_up
from shared.services.event_models import (
    DemandChangedEvent,
    parse_scaling_trigger,
)
from shared.services.reconcile import run_round
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


@lru_cache(maxsize=1)
def runtime() -> Warm:
    return warm_up(FUNCTION, _round)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return entry(
        event,
        context,
        warm=runtime(),
        parse=parse_scaling_trigger,
        run=_run,
        logger=logger,
        metrics=metrics,
        processor=processor,
    )


def _run(trigger: EventBridgeModel) -> dict[str, object]:
    logger.append_keys(event_id=trigger.id, trigger=trigger.detail_type)
    try:
        return runtime().once(event=trigger)
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

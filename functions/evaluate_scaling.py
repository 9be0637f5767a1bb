"""evaluate_scaling: the schedule, the queue-depth alarm and "demand changed" each run one scaling round.

Handler name ``evaluate_scaling.lambda_handler``. Takes an EventBridge event, or an SQS batch of them
(``record_handler``: malformed records are reported as batch item failures; the others still run).
Each event id runs at most one round (Powertools idempotency on ``id``), and overlapping rounds are
excluded by the lease.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.event_models import DemandChangedEvent, MalformedEventError, ScalingTriggerEvent, parse_scaling_trigger
from functions.event_runtime import Result, Runtime, from_record, is_sqs_batch, rejected
from functions.observability import logger, metrics, report_round, tracer
from shared.services.reconcile import run_round

FUNCTION = "evaluate_scaling"
processor = BatchProcessor(event_type=EventType.SQS)


def clock() -> float:
    """Now, in epoch seconds (tests and the local cloud put a simulated clock here)."""
    return time.time()


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    return Runtime.warm_up(FUNCTION, scale)


def record_handler(record: SQSRecord) -> Result:
    """One message of the SQS route: the EventBridge event it carries."""
    return runtime().once(from_record(record, parse_scaling_trigger))


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
        return runtime().once(parse_scaling_trigger(event))
    except MalformedEventError as error:
        return rejected(error)


@tracer.capture_method
def scale(event: ScalingTriggerEvent) -> Result:
    """One scaling round for ``event`` (run at most once per event id)."""
    rt = runtime()
    if isinstance(event, DemandChangedEvent) and event.detail.cluster != rt.env.cluster.name:
        logger.info("demand changed for another cluster; ignored", cluster=event.detail.cluster)
        return {"status": "ignored", "event_id": event.id, "cluster": event.detail.cluster}
    result = run_round(rt.plane, rt.env.cluster, rt.offers, now=clock(), round_id=event.id, trigger=event.detail_type)
    report_round(result)
    return result.to_dict()

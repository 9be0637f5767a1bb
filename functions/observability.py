"""The functions' observability objects (Powertools), one set for all of them, and a round's report.

Services stay free of Powertools: a round returns a ``RoundResult`` and its ``round_metrics`` as plain
points; this edge module turns them into a log line and EMF metrics.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from shared.services.round_report import RoundResult, round_metrics
from shared.services.telemetry import METRICS_NAMESPACE, SERVICE_NAME

logger = Logger(service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)


def report_round(result: RoundResult) -> None:
    """A round's log line and metrics, the same for every function that runs rounds."""
    if not result.ran:
        logger.info("round skipped", round_id=result.round_id, reason=result.skipped)
        return
    logger.info("round done", extra={"round": result.to_dict()})
    for error in result.errors:
        logger.warning("round action failed", round_id=result.round_id, error=error)
    for point in round_metrics(result):
        if not point.dimensions:
            metrics.add_metric(name=point.name, unit=MetricUnit(point.unit), value=point.value)
            continue
        # One EMF document per dimension set (a metric set shares its dimensions).
        with single_metric(
            name=point.name,
            unit=MetricUnit(point.unit),
            value=point.value,
            namespace=METRICS_NAMESPACE,
            default_dimensions=metrics.default_dimensions,
        ) as metric:
            for name, value in point.dimensions.items():
                metric.add_dimension(name=name, value=value)

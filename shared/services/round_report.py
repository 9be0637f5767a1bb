"""What a scaling round reports: its result (the Lambda's answer), its decision-log entry, and its metrics.

Plain values only: ``functions/observability.py`` turns the metric points into EMF, and the decision log
entry is ``shared.formats.decision_record.DecisionRecord``, the one type ``shoal status`` reads back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from shared.domain.cluster_state import NodeRecord
from shared.domain.decision import Decision
from shared.domain.scaling import ANY_ZONE
from shared.services import telemetry
from shared.services.actuator import ActionCounts
from shared.services.guardrails import GuardView
from shared.services.ports import LaunchFailure


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundResult:
    round_id: str
    trigger: str
    ran: bool
    skipped: str | None = None  # why the round did not run
    decision: Decision | None = None  # the last pass's
    passes: int = 0
    counts: ActionCounts = field(default_factory=ActionCounts)
    launch_failures: tuple[LaunchFailure, ...] = ()
    errors: tuple[str, ...] = ()
    nodes: tuple[NodeRecord, ...] = ()  # the records after the round
    hourly_cost: float = 0.0  # of the nodes running after the round, and of stopped ones' root volumes
    decide_seconds: float = 0.0
    round_seconds: float = 0.0
    spent: float | None = None  # USD by the spend ledger, when the round keeps one
    guard: GuardView | None = None  # what the round saved for status and the dashboard (quotas, preemptions)

    def to_dict(self) -> dict[str, object]:
        """A small JSON summary (the Lambda's answer and the idempotency record)."""
        out: dict[str, object] = {"round_id": self.round_id, "trigger": self.trigger, "ran": self.ran}
        if self.skipped:
            out["skipped"] = self.skipped
            return out
        out.update(
            passes=self.passes,
            **asdict(self.counts),
            launch_failures=[f"{f.instance_type}@{f.zone or ANY_ZONE}: {f.code}" for f in self.launch_failures],
            errors=list(self.errors),
            hourly_cost=round(self.hourly_cost, 4),
        )
        if self.decision is not None:
            out["wanted"] = {k: v for k, v in self.decision.wanted.items() if v}
            out["queued_jobs"] = self.decision.queued_jobs
        return out


def failure_dict(failure: LaunchFailure) -> dict[str, object]:
    """A launch failure as the decision log keeps it."""
    return {
        "instance_type": failure.instance_type,
        "zone": failure.zone,
        "code": failure.code,
        "message": failure.message,
        "offering_error": failure.offering_error,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricPoint:
    name: str
    unit: str  # CloudWatch's unit name: Count, Milliseconds, None
    value: float
    dimensions: Mapping[str, str] = field(default_factory=dict)  # beyond the cluster's


def round_metrics(result: RoundResult) -> list[MetricPoint]:
    """What a round reports to CloudWatch (names from ``telemetry``); nothing for a skipped round."""
    if not result.ran or result.decision is None:
        return []
    d = result.decision
    actions = result.counts.changes()
    points = [
        MetricPoint(name=telemetry.METRIC_QUEUED_JOBS, unit="Count", value=d.queued_jobs),
        MetricPoint(name=telemetry.METRIC_RUNNING_JOBS, unit="Count", value=d.running_jobs),
        MetricPoint(name=telemetry.METRIC_HOURLY_COST, unit="None", value=round(result.hourly_cost, 4)),
        MetricPoint(name=telemetry.METRIC_DECISION_LATENCY, unit="Milliseconds", value=result.round_seconds * 1000),
        MetricPoint(name=telemetry.METRIC_DECISIONS, unit="Count", value=actions),
        MetricPoint(name=telemetry.METRIC_LAUNCH_FAILURES, unit="Count", value=len(result.launch_failures)),
    ]
    if result.spent is not None:  # the budget alarm's metric
        points.append(MetricPoint(name=telemetry.METRIC_SPENT, unit="None", value=round(result.spent, 4)))
    points += _guard_metrics(result.guard)
    counts: dict[tuple[str, str, str], int] = {}
    for node in result.nodes:
        dims = (node.instance_type, str(node.market), str(node.state))
        counts[dims] = counts.get(dims, 0) + 1
    points += [
        MetricPoint(
            name=telemetry.METRIC_NODES,
            unit="Count",
            value=count,
            dimensions={"node_type": node_type, "market": market, "state": state},
        )
        for (node_type, market, state), count in sorted(counts.items())
    ]
    return points


def _guard_metrics(guard: GuardView | None) -> list[MetricPoint]:
    """The preemption budget's, the lease's and the vCPU quotas' points (the dashboard's guardrail row)."""
    if guard is None:
        return []
    points = [
        MetricPoint(name=telemetry.METRIC_PREEMPTED_JOBS, unit="Count", value=guard.preempted_jobs),
        MetricPoint(name=telemetry.METRIC_ON_DEMAND_ONLY_JOBS, unit="Count", value=guard.on_demand_only_jobs),
    ]
    left = guard.lease_hours_left()
    if left is not None:
        points.append(MetricPoint(name=telemetry.METRIC_LEASE_HOURS_LEFT, unit="None", value=round(left, 4)))
    points += [
        MetricPoint(
            name=telemetry.METRIC_VCPU_QUOTA_USED,
            unit="Percent",
            value=round(quota.used_percent(), 2),
            dimensions={"quota": quota.name},
        )
        for quota in guard.quotas or ()
    ]
    points += [
        MetricPoint(
            name=telemetry.METRIC_SPOT_PLACEMENT_SCORE,
            unit="None",
            value=score,
            dimensions={"offer": offer, "zone": zone},
        )
        for offer, zones in sorted((guard.placement_scores or {}).items())
        for zone, score in sorted(zones.items())
    ]
    return points

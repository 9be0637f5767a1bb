"""The guardrails on the command line: ``launch-cluster --maxHourlyCost/--budget/--lease/--idleLease``, the
renewal ``launch-cluster --lease`` makes on a deployed cluster, and the lines ``shoal status`` shows (spend, leases,
vCPU quotas, preemptions) from the view the scaling round saves beside its spend ledger."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TextIO

from shared.domain.units import format_duration
from shared.services import guardrails
from shared.services.guardrails import GuardView
from shared.wiring import cluster_cli

# settings name → launch-cluster flag; idle_lease before lease, so a message about idle_lease names --idleLease
FLAGS = {
    "max_hourly_cost": "--maxHourlyCost",
    "budget": "--budget",
    "idle_lease": "--idleLease",
    "lease": "--lease",
}
CONTEXT_KEYS = {"max_hourly_cost": "maxHourlyCost", "budget": "budget", "idle_lease": "idleLease", "lease": "lease"}


def add_launch_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--maxHourlyCost", "--max-hourly-cost", dest="max_hourly_cost", help="USD/h the fleet may cost, e.g. 40"
    )
    parser.add_argument("--budget", help="USD the cluster may spend over its life; then it drains")
    parser.add_argument(
        "--lease", help="tear the cluster down by itself after this long, e.g. 12h (on a deployed cluster: renew)"
    )
    parser.add_argument(
        "--idleLease", "--idle-lease", dest="idle_lease", help="tear down after this long with no job, e.g. 2h"
    )


def renew(outputs: cluster_cli.ClusterOutputs, lease: float, *, now: float, out: TextIO, err: TextIO) -> None:
    """``launch-cluster --lease`` on a deployed cluster: the lease ends ``lease`` seconds from now."""
    ledger = cluster_cli.spend_ledger(outputs)
    view = ledger.view()
    expires = guardrails.renew_lease(ledger, lease, now=now)
    print(
        f"lease of cluster {outputs.name} renewed: it ends at {_when(expires)} (in {format_duration(lease)})", file=out
    )
    if view is None or (view.lease_expires_at is None and view.idle_expires_at is None):
        print(
            f"shoal launch-cluster: warning: {outputs.stack_name} may have been deployed without a lease, so its "
            "scaler may not be allowed to start the teardown; redeploy with cdk deploy -c lease=... to be sure",
            file=err,
        )


def status_lines(view: GuardView | None, now: float) -> list[str]:
    """What ``shoal status`` shows of the spend and the leases (nothing before the first round)."""
    if view is None:
        return []
    spend = f"spend: ${view.spent:.2f}"
    if view.budget is not None:
        spend += f" of the ${view.budget:g} budget ({100 * view.spent / view.budget:.0f} %)"
    spend += f"; fleet ${view.rate:.2f}/h"
    if view.max_hourly_cost is not None:
        spend += f" (maxHourlyCost ${view.max_hourly_cost:g}/h)"
    lines = [spend]
    for label, end in (("lease", view.lease_expires_at), ("idle lease", view.idle_expires_at)):
        if end is not None:
            left = end - now
            shown = f"{_left(left)} left" if left > 0 else "run out: TeardownCluster starts"
            lines.append(f"{label}: ends {_when(end)} ({shown})")
    return lines + _quota_lines(view) + _placement_lines(view) + _preemption_lines(view)


def _quota_lines(view: GuardView) -> list[str]:
    if view.quotas is None:
        return []  # a ledger written before quotas were recorded
    if not view.quotas:
        return ["vCPU quotas: none readable, no limit known (the fleet is not capped by them)"]
    lines = ["vCPU quotas:"]
    for quota in view.quotas:
        elsewhere = f", {quota.elsewhere:g} outside it" if quota.elsewhere else ""
        lines.append(
            f"  {quota.name} {quota.limit:g}: {quota.cluster:g} vCPUs used by this cluster{elsewhere} "
            f"({quota.used_percent():.0f} %)"
        )
    return lines


def _placement_lines(view: GuardView) -> list[str]:
    if view.placement_scores is None:
        return []  # a ledger written before the scores were recorded
    if not view.placement_scores:
        return ["spot placement scores: none known (spot launches in price order)"]
    lines = ["spot placement scores (1-10; spot launches go to the best-scored zone first):"]
    for offer, zones in sorted(view.placement_scores.items()):
        ranked = sorted(zones.items(), key=lambda zone_score: (-zone_score[1], zone_score[0]))
        lines.append(f"  {offer}: " + ", ".join(f"{zone} {score}" for zone, score in ranked))
    return lines


def _preemption_lines(view: GuardView) -> list[str]:
    if view.max_preemptions is None:
        return []
    budget = f"maxPreemptions {view.max_preemptions} by default"
    if not view.preempted_jobs:
        return [f"preemptions: no queued or running job has been reclaimed from spot ({budget})"]
    past = (
        f"; {view.on_demand_only_jobs} used their budget and run on on-demand nodes only"
        if view.on_demand_only_jobs
        else ""
    )
    return [f"preemptions: {view.preempted_jobs} queued or running jobs were reclaimed from spot ({budget}){past}"]


def _left(seconds: float) -> str:
    """Time left, to the minute: ``9h59m``, ``12m``, ``40s``."""
    whole = int(seconds)
    hours, minutes = divmod(whole // 60, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m" if minutes else f"{whole}s"


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")

"""What a demo run is given and gives back: its options and result, the cluster's settings, the workload's checks.

``shared.local.demo`` runs it; these are apart so that the run reads top to bottom.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.domain.jobs import Job, histogram
from shared.domain.node_types import Offer
from shared.domain.packing import plan
from shared.domain.settings import ClusterSettings
from shared.local.demo_defaults import DEFAULT_NODE_TYPES, DEFAULT_OUT

STEP_SECONDS = 20.0  # simulated seconds per step of the lockstep clock (a third of a scaling interval)


class DemoError(RuntimeError):
    """The demo could not run or did not finish; the message says where."""


class WorkloadError(ValueError):
    """A workload the demo cannot finish (a job no node type fits); the message says how to fix it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    jobs: Sequence[Job]
    node_types: str = DEFAULT_NODE_TYPES
    min_nodes: tuple[int, ...] = ()  # default: 0 per node type
    max_nodes: tuple[int, ...] = ()  # default: 8 per node type
    static_nodes: tuple[int, ...] = ()
    cluster: str = "demo"
    region: str = "us-west-2"
    target_time: float = 1800.0
    speed: float = 120.0  # lockstep: the most simulated seconds per real second; accelerated: exactly this
    step: float = STEP_SECONDS  # simulated seconds per step of the lockstep clock
    bursts: int = 2
    burst_gap: float = 2400.0  # simulated seconds between bursts
    boot_delay: float = 90.0  # simulated seconds from "running" to the agent taking jobs
    real: bool = False  # run the jobs' own commands (on the accelerated clock) instead of simulated durations
    workdir: Path = DEFAULT_OUT
    keep_work: Path | None = None  # the nodes' work root (executions.log, overlaps.log...): kept; default: a temp dir
    report_path: Path | None = None  # default: workdir/report.json
    plot_path: Path | None = None  # default: workdir/demand.png
    progress_every: float = 2.0  # real seconds between progress lines; 0: none
    time_limit: float = 1800.0  # real seconds the run may take once the cluster is up (a busy machine: longer)
    chaos: int | None = None  # a seed: inject faults at random and check invariants (shared/local/chaos.py)


@dataclass(slots=True)
class DemoResult:
    report: dict[str, object]
    report_path: Path
    plot_path: Path
    workdir: Path  # logs: lambda.log, agents.log, cdk-*.log
    ok: bool
    problems: list[str] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)  # job id → completed executions (the execution log)
    records: dict[str, tuple[str, int]] = field(default_factory=dict)  # job id → (status, attempts) in the table
    work_root: Path | None = None  # the nodes' work root when it was kept (``keep_work``)


def cluster_settings(options: DemoOptions) -> ClusterSettings:
    """The demo cluster's settings, validated (``SettingsError`` names a bad one)."""
    classes = len([c for c in options.node_types.split(",") if c.strip()])
    return ClusterSettings.from_mapping(
        {
            "name": options.cluster,
            "node_types": options.node_types,
            "region": options.region,
            "min_nodes": list(options.min_nodes or (0,) * classes),
            "max_nodes": list(options.max_nodes or (8,) * classes),
            "static_nodes": list(options.static_nodes),
            "target_time": options.target_time,
            "scale_interval": "1m",
        }
    )


def check_workload(jobs: Sequence[Job], offers: Sequence[Offer], target_time: float) -> None:
    """Every job must fit some node type, or the demo would wait for it forever."""
    if not jobs:
        raise WorkloadError("the workload has no jobs")
    buyable = [offer for offer in offers if offer.max_nodes > 0]
    if not buyable:
        raise WorkloadError(
            "--max-nodes allows no node of any type, so no job could ever run; give at least one type a maximum above 0"
        )
    result = plan(histogram(jobs), buyable, target_time=target_time)
    if result.unplaceable:
        first = result.unplaceable[0]
        raise WorkloadError(
            f"{sum(u.count for u in result.unplaceable)} jobs fit none of the node types --max-nodes allows "
            f"({first.reason}); pass --node-types with a type that fits them, or leave them out of the workload"
        )


def settings_toml(settings: ClusterSettings) -> str:
    lines = []
    for key, value in settings.to_mapping().items():
        if isinstance(value, str):
            lines.append(f"{key} = {json.dumps(value)}")
        elif isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        else:
            lines.append(f"{key} = {value!r}")
    return "\n".join(lines) + "\n"


def split_bursts(jobs: Sequence[Job], bursts: int) -> list[list[Job]]:
    bursts = max(1, min(bursts, len(jobs)))
    size, extra = divmod(len(jobs), bursts)
    out, start = [], 0
    for index in range(bursts):
        end = start + size + (1 if index < extra else 0)
        out.append(list(jobs[start:end]))
        start = end
    return out

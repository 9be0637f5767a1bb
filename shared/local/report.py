"""The demo's report: a JSON document and a PNG of demand against nodes over simulated time.

Building the numbers is pure (``percentile``, ``node_usage``, ``starts_in_agent_log``); ``write_plot`` uses
matplotlib's Agg backend, so no display is needed.

How often a job started is counted from the agents' log, not from the job records: a record gives an
attempt back when its job is requeued (interruption, drain, restart), so it cannot witness its own starts.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

REQUIRED_KEYS = (
    "jobs_submitted",
    "jobs_completed",
    "jobs_lost",
    "jobs_run_more_than_once",
    "p50_wait_seconds",
    "p95_wait_seconds",
    "node_hours",
    "cost",
    "max_nodes",
    "nodes_at_end",
    "resources_left_after_teardown",
    "decisions",
)


# What the agent logs as it starts a job (shared.worker.agent: "job %s started (attempt %d)"); older agents
# wrote "(attempt N of M)".
_STARTED = re.compile(r" job (?P<job_id>.+) started \(attempt (?P<attempt>\d+)(?: of \d+)?\)$")


def starts_in_agent_log(lines: Iterable[str]) -> Counter[str]:
    """Job id → how many times an agent started it, from the agents' log lines."""
    starts: Counter[str] = Counter()
    for line in lines:
        match = _STARTED.search(line.rstrip("\n"))
        if match is not None:
            starts[match["job_id"]] += 1
    return starts


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """The cluster at one moment of simulated time (seconds since the demo started)."""

    t: float
    waiting: int  # visible messages: jobs waiting for a node
    running: int  # jobs running on the agents
    done: int  # jobs completed so far
    nodes: Mapping[str, int]  # live instances by instance type
    booting: int = 0  # instances whose agent has not started yet

    @property
    def total_nodes(self) -> int:
        return sum(self.nodes.values())


@dataclass(slots=True)
class NodeSpan:
    """One instance's life in simulated time, for node-hours and cost."""

    instance_id: str
    instance_type: str
    hourly_price: float
    started: float
    ended: float | None = None


@dataclass(slots=True)
class Timeline:
    samples: list[Sample] = field(default_factory=list)
    spans: dict[str, NodeSpan] = field(default_factory=dict)

    def max_nodes(self) -> int:
        return max((s.total_nodes for s in self.samples), default=0)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def node_usage(spans: Mapping[str, NodeSpan], end: float) -> tuple[float, float]:
    """(node-hours, cost in USD) of every span, open ones counted up to ``end``."""
    hours = 0.0
    cost = 0.0
    for span in spans.values():
        lasted = max(0.0, (span.ended if span.ended is not None else end) - span.started) / 3600
        hours += lasted
        cost += lasted * span.hourly_price
    return hours, cost


def write_json(report: Mapping[str, object], path: Path) -> None:
    missing = [key for key in REQUIRED_KEYS if key not in report]
    if missing:
        raise ValueError(f"the report lacks {', '.join(missing)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")


def write_plot(timeline: Timeline, path: Path, *, title: str) -> None:
    """Jobs waiting and running (left axis) against live nodes by type (right axis), over simulated minutes."""
    samples = timeline.samples
    minutes = [s.t / 60 for s in samples]
    figure = Figure(figsize=(10, 5), dpi=110)  # no pyplot: no GUI backend, no global figure state
    jobs_axis = figure.add_subplot()
    jobs_axis.fill_between(minutes, [s.waiting for s in samples], step="post", alpha=0.25, color="tab:red")
    jobs_axis.step(minutes, [s.waiting for s in samples], where="post", color="tab:red", label="jobs waiting")
    jobs_axis.step(minutes, [s.running for s in samples], where="post", color="tab:orange", label="jobs running")
    jobs_axis.set_xlabel("simulated minutes")
    jobs_axis.set_ylabel("jobs")
    nodes_axis = jobs_axis.twinx()
    types = sorted({name for s in samples for name in s.nodes})
    palette = ["tab:blue", "tab:green", "tab:purple", "tab:brown", "tab:cyan", "tab:olive", "tab:pink", "tab:gray"]
    for index, name in enumerate(types):
        nodes_axis.step(minutes, [s.nodes.get(name, 0) for s in samples], where="post", linestyle="--",
                        color=palette[index % len(palette)], label=f"{name} nodes")  # fmt: skip
    nodes_axis.step(minutes, [s.total_nodes for s in samples], where="post", color="black", linewidth=2,
                    label="all nodes")  # fmt: skip
    nodes_axis.set_ylabel("nodes")
    nodes_axis.set_ylim(bottom=0, top=max(1, timeline.max_nodes()) * 1.15)
    jobs_axis.set_ylim(bottom=0)
    handles = jobs_axis.get_legend_handles_labels()[0] + nodes_axis.get_legend_handles_labels()[0]
    labels = jobs_axis.get_legend_handles_labels()[1] + nodes_axis.get_legend_handles_labels()[1]
    jobs_axis.legend(handles, labels, loc="upper right", fontsize="small")
    jobs_axis.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)

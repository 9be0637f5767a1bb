"""The cluster utilities' use cases: run LaunchCluster/TeardownCluster and wait, and gather ``shoal status``.

Everything here talks to small Protocols and takes its clock and its sleep, so tests drive it without AWS
and without wall-clock waits. The adapters (CloudFormation, Step Functions, the state table, SQS) serve
the Protocols; the CLI prints what comes back.
"""

from __future__ import annotations

import enum
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol, TypeVar

from shared.domain.cluster_state import ClusterStatusRecord, NodeRecord
from shared.services.guardrails import GuardView
from shared.services.ports import Clock

RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
T = TypeVar("T")


class Outcome(enum.StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # the execution failed, timed out or was aborted in Step Functions
    TIMED_OUT = "TIMED_OUT"  # we stopped waiting; the execution keeps running


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionInfo:
    arn: str
    name: str
    machine: str  # "LaunchCluster" or "TeardownCluster"
    status: str  # Step Functions' status: RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED
    started_at: float  # epoch seconds
    stopped_at: float | None = None
    error: str | None = None
    cause: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    outcome: Outcome
    execution_arn: str
    cause: str | None = None  # one line: the failure's error name and cause
    states: tuple[str, ...] = ()  # every state entered, in order, repeats included


class Executions(Protocol):
    def start(self, machine_arn: str, *, verb: str, payload: Mapping[str, object], now: float) -> str: ...

    def describe(self, execution_arn: str) -> ExecutionInfo: ...

    def states_entered(self, execution_arn: str) -> list[str]: ...


def run_and_wait(
    executions: Executions,
    machine_arn: str,
    *,
    verb: str,
    payload: Mapping[str, object],
    clock: Clock,
    timeout: float,
    check_every: float,
    progress: Callable[[str], None],
) -> RunResult:
    """Start an execution and wait for its end (or ``timeout`` seconds), reporting each state as it is entered.

    A state entered again (a polling loop going round) is reported only the first time: progress lines
    say where the run got to, not how often it checked.
    """
    arn = executions.start(machine_arn, verb=verb, payload=payload, now=clock.now())
    deadline = clock.now() + timeout
    reported: set[str] = set()
    states: list[str] = []

    def report_new_states() -> None:
        nonlocal states
        states = executions.states_entered(arn)
        for name in states:
            if name not in reported:
                reported.add(name)
                progress(name)

    while True:
        info = executions.describe(arn)
        report_new_states()
        if info.status == SUCCEEDED:
            return RunResult(outcome=Outcome.SUCCEEDED, execution_arn=arn, states=tuple(states))
        if info.status != RUNNING:
            return RunResult(outcome=Outcome.FAILED, execution_arn=arn, cause=failure_cause(info), states=tuple(states))
        if clock.now() >= deadline:
            return RunResult(outcome=Outcome.TIMED_OUT, execution_arn=arn, states=tuple(states))
        clock.sleep(max(0.0, min(check_every, deadline - clock.now())))


def failure_cause(info: ExecutionInfo) -> str:
    """The failure in one line: ``Error: cause`` (a JSON cause from a Lambda task is shown as its message)."""
    parts = [part for part in (info.error, _one_line(info.cause)) if part]
    if not parts:
        return f"the execution ended {info.status} without a cause"
    return ": ".join(parts)


def _one_line(text: str | None) -> str | None:
    if not text:
        return None
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("errorMessage"):
        kind = decoded.get("errorType")
        text = f"{kind}: {decoded['errorMessage']}" if kind else str(decoded["errorMessage"])
    return " ".join(text.split())


# --- status ------------------------------------------------------------------------------------------


class StatusReader(Protocol):
    def get_status(self) -> ClusterStatusRecord | None: ...


class NodeLister(Protocol):
    def list_nodes(self) -> list[NodeRecord]: ...


class Depth(Protocol):
    @property
    def visible(self) -> int: ...

    @property
    def in_flight(self) -> int: ...


class DepthReader(Protocol):
    def depth(self) -> Depth: ...


class DecisionReader(Protocol):
    def recent(self, limit: int) -> list[dict[str, object]]: ...


class GuardReader(Protocol):
    def view(self) -> GuardView | None: ...


class ExecutionLister(Protocol):
    def recent(self, machines: Mapping[str, str], limit: int) -> list[ExecutionInfo]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeGroup:
    instance_type: str
    market: str
    state: str
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterReport:
    cluster: str
    region: str
    status: ClusterStatusRecord | None
    nodes: tuple[NodeGroup, ...]
    queue_visible: int
    queue_in_flight: int
    decisions: tuple[Mapping[str, object], ...]
    executions: tuple[ExecutionInfo, ...]
    dashboard_url: str | None = None
    problems: tuple[str, ...] = field(default=())  # parts that could not be read, so the rest still shows
    guard: GuardView | None = None  # spend and leases, as the last round saw them

    def to_json(self) -> dict[str, object]:
        """The ``shoal status --json`` contract."""
        return {
            "cluster": self.cluster,
            "region": self.region,
            "status": None
            if self.status is None
            else {
                "status": str(self.status.status),
                "reason": self.status.reason,
                "updated_at": self.status.updated_at,
            },
            "nodes": [
                {"instance_type": g.instance_type, "market": g.market, "state": g.state, "count": g.count}
                for g in self.nodes
            ],
            "queue": {"visible": self.queue_visible, "in_flight": self.queue_in_flight},
            "decisions": [dict(d) for d in self.decisions],
            "executions": [
                {
                    "name": e.name,
                    "machine": e.machine,
                    "status": e.status,
                    "started_at": e.started_at,
                    "stopped_at": e.stopped_at,
                    "arn": e.arn,
                }
                for e in self.executions
            ],
            "dashboard_url": self.dashboard_url,
            "problems": list(self.problems),
            "guardrails": None if self.guard is None else asdict(self.guard),
        }


def group_nodes(nodes: Sequence[NodeRecord]) -> tuple[NodeGroup, ...]:
    counts = Counter((n.instance_type, str(n.market), str(n.state)) for n in nodes)
    return tuple(NodeGroup(instance_type=t, market=m, state=s, count=c) for (t, m, s), c in sorted(counts.items()))


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusSources:
    status: StatusReader
    nodes: NodeLister
    queue: DepthReader
    decisions: DecisionReader
    executions: ExecutionLister
    machines: Mapping[str, str]  # "LaunchCluster" -> state machine ARN, ...
    guard: GuardReader | None = None  # the spend ledger's view (budget, maxHourlyCost, leases)


class StatusReadError(RuntimeError):
    """Base of the errors a status source may raise (the adapters' store and queue errors derive from it)."""


def status(
    sources: StatusSources,
    *,
    cluster: str,
    region: str,
    decisions: int = 5,
    executions: int = 5,
    dashboard_url: str | None = None,
    tolerated: tuple[type[Exception], ...] = (),
) -> ClusterReport:
    """Everything ``shoal status`` shows. A source raising one of ``tolerated`` becomes a problem line."""
    problems: list[str] = []

    def read(what: str, call: Callable[[], T], default: T) -> T:
        try:
            return call()
        except tolerated as error:
            problems.append(f"{what}: {error}")
            return default

    record = read("cluster status", sources.status.get_status, None)
    nodes: list[NodeRecord] = read("nodes", sources.nodes.list_nodes, [])
    depth = read("queue depth", sources.queue.depth, None)
    recent_decisions: list[dict[str, object]] = read("decisions", lambda: sources.decisions.recent(decisions), [])
    recent_executions: list[ExecutionInfo] = read(
        "executions", lambda: sources.executions.recent(sources.machines, executions), []
    )
    guard = None if sources.guard is None else read("guardrails", sources.guard.view, None)
    return ClusterReport(
        cluster=cluster,
        region=region,
        status=record,
        nodes=group_nodes(nodes),
        queue_visible=0 if depth is None else depth.visible,
        queue_in_flight=0 if depth is None else depth.in_flight,
        decisions=tuple(recent_decisions),
        executions=tuple(recent_executions),
        dashboard_url=dashboard_url,
        problems=tuple(problems),
        guard=guard,
    )

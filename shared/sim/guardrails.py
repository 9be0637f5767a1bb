"""The simulator's vCPU quotas and preemption budget (issue 15), kept apart from the engine's event loop.

- Quotas: ``SimOptions.vcpu_quotas`` (quota code → vCPUs, e.g. the on-demand standard quota ``L-1216C47A``)
  bound the simulated account. EC2 refuses a launch that would go past one (VcpuLimitExceeded: the offering
  goes into the capacity-failure cache like a capacity error, and the round falls back). With
  ``quota_aware`` the scaler is told the quotas (``Snapshot.quotas``), as the deployed round reads them from
  Service Quotas; without, it learns only from refusals.
- Preemptions: a spot interruption counts one preemption for each job it returns to the queue (no attempt
  is used); a job that reaches its budget (``preemption.budget``) is planned and admitted on on-demand nodes
  only, by the same domain rules the deployed scaler and agents use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from shared.domain.cluster_state import DemandCount, Market
from shared.domain.demand import DemandKey
from shared.domain.jobs import Job, Shape
from shared.domain.preemption import on_demand_only
from shared.domain.quotas import QUOTA_CODES, STANDARD, QuotaView, quota_code, vcpus
from shared.sim.trace import TraceJob

if TYPE_CHECKING:
    from shared.domain.node_types import Offer


class _Job(Protocol):
    trace: TraceJob
    key: DemandKey
    node: str | None
    done: int
    preemptions: int


class _Node(Protocol):
    instance_type: str
    market: Market
    running: dict[int, float]


def parse_quotas(text: str) -> dict[str, float]:
    """``on-demand=640,spot=256`` (vCPUs of the standard classes) → quota code → vCPUs; ``ValueError`` names it."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        market, _, value = part.partition("=")
        try:
            code = QUOTA_CODES[(Market(market.strip()), STANDARD)]
            vcpu = float(value)
        except (ValueError, KeyError):
            raise ValueError(f"--vcpu-quota {text!r}: write MARKET=VCPUS, e.g. on-demand=640,spot=256") from None
        if not 0 <= vcpu < 1e9:
            raise ValueError(f"--vcpu-quota {text!r}: {value} is not a number of vCPUs >= 0")
        out[code] = vcpu
    return out


def quota_view(quotas: Mapping[str, float], aware: bool) -> QuotaView | None:
    return QuotaView(limits=dict(quotas)) if quotas and aware else None


def over_quota(quotas: Mapping[str, float], nodes: Iterable[_Node], offer: Offer, type_name: str, count: int) -> bool:
    """Would launching ``count`` of ``type_name`` for ``offer`` go past its quota (EC2's VcpuLimitExceeded)?"""
    market = Market.SPOT if offer.spot else Market.ON_DEMAND
    code = quota_code(type_name, market)
    if code is None or code not in quotas:
        return False
    used = sum(vcpus(n.instance_type) for n in nodes if quota_code(n.instance_type, n.market) == code)
    return used + count * vcpus(type_name) > quotas[code]


def count_preemptions(node: _Node, jobs: Sequence[_Job], default: int, demoted: set[int]) -> int:
    """A spot node's interruption: each job it runs counts a preemption; returns how many were counted."""
    if node.market is not Market.SPOT:
        return 0
    for index in node.running:
        job = jobs[index]
        job.preemptions += 1
        if on_demand_only(_job_of(job), job.preemptions, default):
            demoted.add(index)
    return len(node.running)


def past_budget(
    jobs: Sequence[_Job], demoted: set[int], shape_of: Mapping[DemandKey, Shape]
) -> dict[Shape, DemandCount]:
    """Queued and running jobs past their budget, per shape as the round's demand names it (finished ones
    leave ``demoted``)."""
    out: dict[Shape, DemandCount] = {}
    for index in sorted(demoted):
        job = jobs[index]
        if job.done:
            demoted.discard(index)
            continue
        shape = shape_of.get(job.key)
        if shape is None:
            continue
        count = out.get(shape, DemandCount())
        running = job.node is not None
        out[shape] = DemandCount(queued=count.queued + (not running), running=count.running + running)
    return out


def _job_of(job: _Job) -> Job:
    return job.trace.job

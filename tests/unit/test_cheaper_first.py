"""Cheaper nodes first (``shared.domain.cheaper_first``): the rule, the admission verdict it gives, and the
simulated agents that follow it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.domain.admission import Verdict, admit_here
from shared.domain.cheaper_first import HOLD_OFF, CheaperFirst
from shared.domain.cluster_state import NodeState
from shared.domain.jobs import Job, Shape
from shared.domain.node_types import Offer
from shared.domain.resources import Resources
from shared.domain.scaling import offers_for
from shared.domain.settings import ClusterSettings
from shared.sim.engine import SimOptions, Simulation
from shared.sim.model import WAKE
from shared.sim.trace import read_trace
from tests.unit.test_simulate import trace_line, write_trace

GiB = 2**30
SMALL = Resources(cores=1, memory=2 * GiB, disk=GiB)
EIGHT = Resources(cores=8, memory=8 * GiB, disk=GiB)
BIG = Resources(cores=64, memory=64 * GiB, disk=GiB)  # fits only the m5.24xlarge
SETTINGS = ClusterSettings(name="t", node_types="c5.4xlarge:0.30,m5.2xlarge,m5.24xlarge").validate()


def _offers() -> dict[str, Offer]:
    return {o.key: o for o in offers_for(SETTINGS)}


def _leave(need: Resources, node: str, *, waited: float = 0.0, preemptible: bool = True) -> str | None:
    offers = _offers()
    here = offers[node]
    rule = CheaperFirst(list(offers.values()))
    return rule.leave(need, preemptible, waited=waited, price=here.hourly_price, usable=here.usable)


def test_a_dear_node_leaves_a_young_small_job_to_spot_and_takes_it_once_the_hold_off_is_over() -> None:
    # GIVEN a one-core job an on-demand m5.24xlarge would run for several times what a spot c5.4xlarge would
    offers = _offers()
    spot, big = offers["c5.4xlarge:spot"], offers["m5.24xlarge"]
    on_spot, on_big = (o.hourly_price * SMALL.share_of(o.usable) for o in (spot, big))
    assert on_big > 2 * on_spot
    # WHEN the big node looks at it just queued, and again once it has waited the hold-off
    young, old = _leave(SMALL, "m5.24xlarge"), _leave(SMALL, "m5.24xlarge", waited=HOLD_OFF)
    # THEN it leaves it at first, saying what each would cost, and takes it after
    assert young is not None and f"${on_spot:.4f}/h against ${on_big:.4f}/h" in young and f"{HOLD_OFF:g} s" in young
    assert old is None
    # AND the spot node itself never leaves it
    assert _leave(SMALL, "c5.4xlarge:spot") is None


@pytest.mark.parametrize(
    ("need", "node", "preemptible"),
    [
        (BIG, "m5.24xlarge", True),  # nothing cheaper can run it
        (SMALL, "m5.2xlarge", False),  # on demand only: the cheapest that may run it
        (EIGHT, "m5.24xlarge", False),  # an m5.2xlarge's whole self costs the same as a twelfth of the big one
    ],
)
def test_a_node_takes_a_job_no_other_type_runs_for_less(need: Resources, node: str, preemptible: bool) -> None:
    assert _leave(need, node, preemptible=preemptible) is None


def test_a_jobs_cost_is_its_largest_share() -> None:
    usable = Resources(cores=16, memory=32 * GiB, disk=100 * GiB)
    assert Resources(cores=1, memory=16 * GiB, disk=GiB).share_of(usable) == 0.5  # memory dominates
    assert Resources(cores=1, memory=GiB, disk=GiB, accelerators=1).share_of(usable) == float("inf")


def test_admission_leaves_only_a_job_that_fits() -> None:
    job = Job(id="j1", shape=Shape(resources=SMALL, wall_time=60.0))
    node = Resources(cores=96, memory=384 * GiB, disk=100 * GiB)
    left = admit_here(job, free=node, capacity=node, draining=False, node_id="i-big", leave="spot is cheaper")
    assert left is not None and left.verdict is Verdict.LEAVE and "spot is cheaper" in left.reason
    full = admit_here(job, free=Resources(), capacity=node, draining=False, node_id="i-big", leave="spot is cheaper")
    assert full is not None and full.verdict is Verdict.DECLINE_LATER
    assert admit_here(job, free=node, capacity=node, draining=False, node_id="i-big") is None


def two_nodes(tmp_path: Path, cheaper_first: bool) -> tuple[Simulation, str, str]:
    """A simulation with a ready m5.24xlarge that the agents' random order puts first, and a ready spot c5."""
    trace = read_trace(write_trace(tmp_path / "t.jsonl", [trace_line(0, 0.0, cores=1, memory_gib=2, wall=600)]))
    sim = Simulation(trace, SimOptions(settings=SETTINGS, seed=0, cheaper_first=cheaper_first))
    offers = _offers()
    (big,) = sim.create_nodes(offers["m5.24xlarge"], "m5.24xlarge", 1)
    (spot,) = sim.create_nodes(offers["c5.4xlarge:spot"], "c5.4xlarge", 1)
    sim.now = 100.0
    for node_id, priority in ((big, 0.0), (spot, 1.0)):
        sim.nodes[node_id].state = NodeState.ACTIVE
        sim.nodes[node_id].priority = priority
    return sim, big, spot


@pytest.mark.parametrize(("cheaper_first", "where"), [(True, "spot"), (False, "big")])
def test_simulated_agents_start_a_young_job_on_the_cheaper_node(
    tmp_path: Path, cheaper_first: bool, where: str
) -> None:
    # GIVEN both nodes free, the m5.24xlarge first in the agents' order  WHEN a small job is queued
    sim, big, spot = two_nodes(tmp_path, cheaper_first)
    sim._enqueue(0)
    sim._dispatch()
    # THEN Shoal's agents start it on the spot node; without the rule, on whichever node comes first
    assert sim.jobs[0].node == {"spot": spot, "big": big}[where]


def test_a_left_job_starts_on_the_dear_node_when_its_hold_off_ends(tmp_path: Path) -> None:
    # GIVEN the spot node full
    sim, big, spot = two_nodes(tmp_path, True)
    sim.nodes[spot].free = Resources()
    # WHEN a small job is queued: THEN nothing starts it now, and a wake-up is due when its hold-off ends
    sim._enqueue(0)
    sim._dispatch()
    assert sim.jobs[0].node is None
    assert [(t, kind) for t, kind, _, _ in sim.events if kind == WAKE] == [(100.0 + HOLD_OFF, WAKE)]
    # AND at that wake-up the m5.24xlarge starts it
    sim.now = 100.0 + HOLD_OFF
    sim._handle(WAKE, None)
    assert sim.jobs[0].node == big

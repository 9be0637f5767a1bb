"""Busy nodes first (``shared.domain.busy_first``): the rule, and the simulated agents that follow it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.domain import busy_first, cheaper_first
from shared.domain.busy_first import HOLD_OFF
from shared.domain.cluster_state import NodeState
from shared.domain.resources import Resources
from shared.domain.scaling import offers_for
from shared.domain.settings import ClusterSettings
from shared.sim.engine import SimOptions, Simulation
from shared.sim.model import WAKE
from shared.sim.trace import read_trace
from tests.unit.test_simulate import trace_line, write_trace

GiB = 2**30
SETTINGS = ClusterSettings(name="t", node_types="m5.24xlarge").validate()
MIXED = ClusterSettings(name="t", node_types="c5.4xlarge:0.30,m5.24xlarge").validate()


def test_an_idle_node_leaves_a_young_job_and_takes_it_once_the_hold_off_is_over() -> None:
    young = busy_first.leave(idle=True, waited=0.0)
    assert young is not None and "runs no job" in young and f"{HOLD_OFF:g} s" in young
    assert busy_first.leave(idle=True, waited=HOLD_OFF) is None
    assert busy_first.leave(idle=False, waited=0.0) is None  # a busy node takes it at once


def two_nodes(tmp_path: Path, busy: bool) -> tuple[Simulation, str, str]:
    """Two ready m5.24xlarge: an idle one the agents' random order puts first, and one already running a job."""
    jobs = [trace_line(0, 0.0, cores=8, memory_gib=8, wall=3600), trace_line(1, 0.0, cores=8, memory_gib=8, wall=600)]
    trace = read_trace(write_trace(tmp_path / "t.jsonl", jobs))
    sim = Simulation(trace, SimOptions(settings=SETTINGS, seed=0, busy_first=busy))
    idle, running = sim.create_nodes(offers_for(SETTINGS)[0], "m5.24xlarge", 2)
    sim.nodes[idle].priority, sim.nodes[running].priority = 0.0, 1.0
    sim.nodes[running].state = NodeState.ACTIVE
    sim._enqueue(0)  # queued at 0, taken at 100 (past any hold-off) by the only ready node
    sim.now = 100.0
    sim._dispatch()
    assert sim.jobs[0].node == running
    sim.nodes[idle].state = NodeState.ACTIVE
    return sim, idle, running


@pytest.mark.parametrize(("busy", "where"), [(True, "running"), (False, "idle")])
def test_simulated_agents_start_a_young_job_beside_running_ones(tmp_path: Path, busy: bool, where: str) -> None:
    # GIVEN an idle node first in the agents' order and a node with room beside its job  WHEN a job is queued
    sim, idle, running = two_nodes(tmp_path, busy)
    sim._enqueue(1)
    sim._dispatch()
    # THEN Shoal's agents start it beside the running job; without the rule, on whichever node comes first
    assert sim.jobs[1].node == {"running": running, "idle": idle}[where]


def test_a_left_job_starts_on_the_idle_node_when_its_hold_off_ends(tmp_path: Path) -> None:
    # GIVEN the busy node full
    sim, idle, running = two_nodes(tmp_path, True)
    sim.nodes[running].free = Resources()
    # WHEN a job is queued: THEN nothing starts it now, and a wake-up is due when its hold-off ends
    sim._enqueue(1)
    sim._dispatch()
    assert sim.jobs[1].node is None
    assert [(t, kind) for t, kind, _, _ in sim.events if kind == WAKE] == [(100.0 + HOLD_OFF, WAKE)]
    # AND at that wake-up the idle node starts it
    sim.now = 100.0 + HOLD_OFF
    sim._handle(WAKE, None)
    assert sim.jobs[1].node == idle


def test_an_idle_cheap_node_comes_before_a_busy_dear_one(tmp_path: Path) -> None:
    # GIVEN a busy on-demand m5.24xlarge with room, first in the agents' order, and an idle spot c5.4xlarge
    assert HOLD_OFF < cheaper_first.HOLD_OFF
    jobs = [trace_line(0, 0.0, cores=8, memory_gib=8, wall=3600), trace_line(1, 0.0, cores=1, memory_gib=2, wall=600)]
    sim = Simulation(read_trace(write_trace(tmp_path / "t.jsonl", jobs)), SimOptions(settings=MIXED, seed=0))
    offers = {o.key: o for o in offers_for(MIXED)}
    (dear,) = sim.create_nodes(offers["m5.24xlarge"], "m5.24xlarge", 1)
    (cheap,) = sim.create_nodes(offers["c5.4xlarge:spot"], "c5.4xlarge", 1)
    sim.nodes[dear].priority, sim.nodes[cheap].priority = 0.0, 1.0
    sim.nodes[dear].state = NodeState.ACTIVE
    sim._enqueue(0)
    sim.now = 100.0
    sim._dispatch()
    sim.nodes[cheap].state = NodeState.ACTIVE
    # WHEN a one-core job is queued: both leave it (the dear node to cheaper types, the idle one to busy nodes)
    sim._enqueue(1)
    sim._dispatch()
    assert sim.jobs[0].node == dear and sim.jobs[1].node is None
    # THEN when the idle node's shorter hold-off ends, the cheap node takes it, not the dear one
    sim.now = 100.0 + HOLD_OFF
    sim._handle(WAKE, None)
    assert sim.jobs[1].node == cheap

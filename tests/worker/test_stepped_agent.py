"""The demo's stepped agent on the lockstep clock: its timed work at a step is done before the step's rounds.

A draining node's heartbeat (its drain acknowledged, its jobs gone) is what lets a round terminate it. The step
used to wait only for the timed work of agents that take work, so a draining agent's keeper heartbeated whenever
its thread woke, before or after the round of the same step: two runs of the same demo terminated the same node
a round apart (docs/simulate.md, session 16).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.state_table import StateTable
from shared.domain.cluster_state import NodeRecord
from shared.local.clock import LockstepClock
from shared.local.lockstep import StepGate, SteppedAgent
from shared.services.job_message import decode_job_message
from tests.worker.conftest import Cluster, wait_until

HEARTBEAT = 20.0  # simulated seconds: one step of the clock below


def _stepped(
    cluster: Cluster, clock: LockstepClock, gate: StepGate, nodes: Any, node_id: str, *, start: bool = True
) -> SteppedAgent:
    agent = SteppedAgent(
        cluster.settings(node_id, heartbeat_interval=HEARTBEAT), queue=cluster.queue, jobs=cluster.jobs, nodes=nodes,
        decode=decode_job_message, runtimes=cluster.runtimes, clock=clock.now, base_env={"PATH": os.environ["PATH"]},
        gate=gate,
    )  # fmt: skip
    cluster.agents.append(agent)
    if start:
        cluster.start(agent)
    return agent


def _heartbeat_at(cluster: Cluster, node_id: str) -> float | None:
    record = cluster.nodes.get_node(node_id)
    assert record is not None
    return record.heartbeat_at


def test_a_draining_agent_heartbeats_at_the_step_before_the_rounds_read_its_record(cluster: Cluster) -> None:
    # GIVEN a stepped agent on a lockstep clock, heartbeating every step, whose node the scaler then drains
    clock = LockstepClock(1000.0, step=HEARTBEAT)
    gate = StepGate()
    agent = _stepped(cluster, clock, gate, cluster.nodes, "i-drained")
    wait_until(lambda: _heartbeat_at(cluster, "i-drained") == clock.now(), what="the first heartbeat")
    assert cluster.nodes.mark_draining("i-drained", clock.now())
    clock.advance()
    assert gate.timed_work([agent], clock.now())
    wait_until(lambda: not agent.takes_work(), what="the agent to learn of the drain")

    # WHEN the clock moves on a step, and the driver waits for the agents' timed work due then
    clock.advance()
    assert gate.timed_work([agent], clock.now())

    # THEN the draining agent has heartbeated at this step, its drain acknowledged, by the time the wait returns:
    # a round run now reads it, on any machine
    record = cluster.nodes.get_node("i-drained")
    assert record is not None
    assert record.heartbeat_at == clock.now()
    assert record.drain_acknowledged
    assert gate.overruns == 0


class _SlowHeartbeats(DynamoNodeStore):
    """The real node store, whose heartbeat holds until the test lets it go: a keeper caught mid-tick."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(StateTable("shoal-state", client=cluster.dynamodb))
        self.entered = threading.Event()
        self.release = threading.Event()
        self.hold = False

    def heartbeat(self, *args: Any, **kwargs: Any) -> NodeRecord | None:
        if self.hold:
            self.entered.set()
            self.release.wait(timeout=10)
        return super().heartbeat(*args, **kwargs)


def test_timed_work_is_not_done_while_a_heartbeat_is_under_way(cluster: Cluster) -> None:
    # GIVEN a stepped agent whose next heartbeat will hang in the node store until released
    clock = LockstepClock(1000.0, step=HEARTBEAT)
    gate = StepGate()
    nodes = _SlowHeartbeats(cluster)
    agent = _stepped(cluster, clock, gate, nodes, "i-slow")
    wait_until(lambda: _heartbeat_at(cluster, "i-slow") == clock.now(), what="the first heartbeat")
    wait_until(lambda: agent.timed_work_done(clock.now()), what="the first tick to end")

    # WHEN the clock moves on and the keeper's heartbeat is under way (its next due time already moved on)
    nodes.hold = True
    clock.advance()
    agent.state.wake.set()
    assert nodes.entered.wait(timeout=10)

    # THEN the step does not count the agent's timed work as done until the heartbeat has been written
    assert not agent.timed_work_done(clock.now())
    nodes.release.set()
    assert gate.timed_work([agent], clock.now())
    assert _heartbeat_at(cluster, "i-slow") == clock.now()


def test_an_agent_started_this_step_is_waited_for_until_its_keeper_has_heartbeated(cluster: Cluster) -> None:
    # GIVEN a stepped agent whose node has just come up: created, its thread not yet started
    clock = LockstepClock(1000.0, step=HEARTBEAT)
    gate = StepGate()
    agent = _stepped(cluster, clock, gate, cluster.nodes, "i-new", start=False)
    assert agent.keeps_time() and not agent.timed_work_done(clock.now())

    # WHEN the driver waits for the step's timed work, and the agent's thread starts a moment later
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(gate.timed_work([agent], clock.now())))
    waiter.start()
    threading.Event().wait(0.2)  # the wait is under way before the agent starts
    cluster.start(agent)
    waiter.join(timeout=15)

    # THEN the wait ended only once the new agent's first heartbeat was written: the round after it reads it
    assert results == [True]
    assert _heartbeat_at(cluster, "i-new") == clock.now()

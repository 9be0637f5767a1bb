"""Busy nodes first, as the agent does it against moto SQS: an idle node gives a young job back at once for a node
already running jobs to take, takes it itself once the job has waited the hold-off, and a lone worker (the rule
off) takes it at once."""

from __future__ import annotations

import time

from shared.domain.busy_first import HOLD_OFF
from shared.domain.cluster_state import JobStatus
from shared.domain.jobs import Job, Shape
from shared.domain.resources import Resources
from shared.domain.units import GiB, MiB
from shared.worker.agent import Outcome
from tests.worker.conftest import Cluster

ROOMY = Resources(cores=8, memory=16 * GiB, disk=20 * GiB)


def job(job_id: str, command: str = "true") -> Job:
    shape = Shape(resources=Resources(cores=1, memory=256 * MiB, disk=GiB), wall_time=60, preemptible=True)
    return Job(id=job_id, shape=shape, command=command)


def test_an_idle_node_leaves_a_young_job_to_a_busy_one(cluster: Cluster) -> None:
    # GIVEN a node running a long job (taken once it had waited the hold-off) and an idle node
    cluster.submit(job("long", command="sleep 5"))
    busy = cluster.agent("i-busy", capacity=ROOMY, busy_first=True)
    busy.state.clock = lambda: time.time() + HOLD_OFF + 1
    assert busy.step() == [Outcome.STARTED]
    busy.state.clock = time.time
    idle = cluster.agent("i-idle", capacity=ROOMY, busy_first=True)
    # WHEN a job just submitted reaches the idle node first
    cluster.submit(job("small"))
    assert idle.step() == [Outcome.DECLINED]
    # THEN it is visible again at once, untouched in the store, and the busy node starts it beside its job
    record = cluster.jobs.get_job("small")
    assert record is not None and record.status is JobStatus.QUEUED
    assert busy.step() == [Outcome.STARTED]
    record = cluster.jobs.get_job("small")
    assert record is not None and record.node == "i-busy"
    assert busy.wait_idle(timeout=30)


def test_once_the_hold_off_is_over_the_idle_node_takes_it(cluster: Cluster) -> None:
    cluster.submit(job("small"))
    idle = cluster.agent("i-idle", capacity=ROOMY, busy_first=True)
    idle.state.clock = lambda: time.time() + HOLD_OFF + 1
    assert idle.step() == [Outcome.STARTED]
    assert idle.wait_idle(timeout=10)
    assert cluster.jobs.get_job("small").status is JobStatus.SUCCEEDED


def test_a_lone_worker_takes_a_young_job_at_once(cluster: Cluster) -> None:
    # GIVEN an agent without the rule (no cluster node types: shoal local run, a single worker)
    cluster.submit(job("small"))
    lone = cluster.agent("i-lone", capacity=ROOMY)
    assert lone.step() == [Outcome.STARTED]
    assert lone.wait_idle(timeout=10)
    assert cluster.jobs.get_job("small").status is JobStatus.SUCCEEDED

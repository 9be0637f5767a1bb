"""Cheaper nodes first, as the agent does it against moto SQS: a dear node gives a young job back at once for a
cheaper node to take, and takes it itself once the job has waited the hold-off."""

from __future__ import annotations

import time

from shared.domain.cheaper_first import HOLD_OFF, NodeCost
from shared.domain.cluster_state import JobStatus
from shared.domain.jobs import Job, Shape
from shared.domain.node_types import build_offers, parse_node_types
from shared.domain.resources import Resources
from shared.domain.units import GiB, MiB
from shared.worker.agent import Outcome
from tests.worker.conftest import REGION, Cluster

OFFERS = build_offers(parse_node_types("c5.4xlarge:0.30,m5.24xlarge"), region=REGION)
ROOMY = Resources(cores=8, memory=16 * GiB, disk=20 * GiB)


def job(job_id: str, *, preemptible: bool = True) -> Job:
    shape = Shape(resources=Resources(cores=1, memory=256 * MiB, disk=GiB), wall_time=60, preemptible=preemptible)
    return Job(id=job_id, shape=shape, command="true")


def test_a_dear_node_leaves_a_young_job_to_a_spot_node(cluster: Cluster) -> None:
    # GIVEN a one-core job just submitted, an on-demand m5.24xlarge's agent and a spot c5.4xlarge's
    cluster.submit(job("small"))
    dear = cluster.agent("i-dear", capacity=ROOMY, cheaper_first=NodeCost.of(OFFERS, "m5.24xlarge", spot=False))
    cheap = cluster.agent("i-cheap", capacity=ROOMY, cheaper_first=NodeCost.of(OFFERS, "c5.4xlarge", spot=True))
    # WHEN the dear node receives it first
    assert dear.step() == [Outcome.DECLINED]
    # THEN it is visible again at once, untouched in the store, and the spot node starts it
    assert cluster.counts() == (1, 0)
    assert cluster.jobs.get_job("small").status is JobStatus.QUEUED
    assert cheap.step() == [Outcome.STARTED]
    assert cheap.wait_idle(timeout=10)
    assert cluster.jobs.get_job("small").status is JobStatus.SUCCEEDED


def test_once_the_hold_off_is_over_the_dear_node_takes_it(cluster: Cluster) -> None:
    # GIVEN a job no cheaper node took  WHEN the dear node receives it after the hold-off (its clock moved on)
    cluster.submit(job("small"))
    dear = cluster.agent("i-dear", capacity=ROOMY, cheaper_first=NodeCost.of(OFFERS, "m5.24xlarge", spot=False))
    dear.state.clock = lambda: time.time() + HOLD_OFF + 1
    # THEN it starts it
    assert dear.step() == [Outcome.STARTED]
    assert dear.wait_idle(timeout=10)
    assert cluster.jobs.get_job("small").status is JobStatus.SUCCEEDED


def test_a_job_only_the_dear_node_runs_starts_at_once(cluster: Cluster) -> None:
    # GIVEN a job no spot node may run (not preemptible): nothing cheaper runs it than the on-demand m5.24xlarge
    cluster.submit(job("steady", preemptible=False))
    dear = cluster.agent("i-dear", capacity=ROOMY, cheaper_first=NodeCost.of(OFFERS, "m5.24xlarge", spot=False))
    assert dear.step() == [Outcome.STARTED]
    assert dear.wait_idle(timeout=10)

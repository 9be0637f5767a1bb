"""The preemption budget in the job store (both backends): a reclaim counts a preemption, not an attempt;
past the budget the job is marked on-demand only, the scaler finds it among the preempted jobs, and (in
DynamoDB, where node records carry their market) it starts only on an on-demand node."""

from __future__ import annotations

from shared.adapters.job_store import DynamoJobStore
from shared.adapters.memory_state import MemoryJobStore
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.state_table import StateTable
from shared.domain import preemption
from shared.domain.cluster_state import DemandCount, JobStatus, Market, NodeRecord, NodeState
from tests.adapters.conftest import make_job

NOW = 1_700_000_000.0
Store = DynamoJobStore | MemoryJobStore


def test_reclaims_use_no_attempt_count_preemptions_and_past_the_budget_mark_the_job(job_store: Store) -> None:
    # GIVEN a one-attempt preemptible job with the cluster default budget (2)
    job = make_job("a", 2, max_attempts=1)
    job_store.put_jobs([job], NOW)
    # WHEN its spot node is reclaimed twice (and a drain requeues it once, which is not a reclaim)
    seen = []
    for n, preempted in enumerate((True, False, True), start=1):
        assert job_store.start_job(job, f"i-{n}", NOW + n) == n
        assert job_store.requeue_job("a", f"i-{n}", reason="r", now=NOW + n, preempted=preempted, max_preemptions=2)
        record = job_store.get_job("a")
        assert record is not None
        seen.append((record.status, record.attempts, record.preemptions, record.on_demand_only))
    # THEN no attempt was used, two preemptions were counted, and the second one used up the budget
    assert seen == [
        (JobStatus.QUEUED, 0, 1, False),
        (JobStatus.QUEUED, 0, 1, False),
        (JobStatus.QUEUED, 0, 2, True),
    ]
    # AND the counters stayed under the job's shape, and the scaler finds it past its budget
    assert job_store.demand() == {job.shape: DemandCount(queued=1)}
    preempted = job_store.preempted_jobs()
    assert [r.job.id for r in preempted] == ["a"]
    assert preemption.past_budget(preempted, 2) == {job.shape: DemandCount(queued=1)}


def test_a_settled_job_leaves_the_preempted_list(job_store: Store) -> None:
    job = make_job("a", 2)
    job_store.put_jobs([job], NOW)
    job_store.start_job(job, "i-1", NOW)
    job_store.requeue_job("a", "i-1", reason="spot interruption warning", now=NOW, preempted=True)
    assert job_store.start_job(job, "i-2", NOW + 1) == 2
    assert [r.status for r in job_store.preempted_jobs()] == [JobStatus.RUNNING]
    assert job_store.finish_job(job, "i-2", attempt=2, exit_code=0, output_tail="", now=NOW + 2)
    assert job_store.preempted_jobs() == []
    assert job_store.preempted_jobs() == []  # the marker is gone, not only filtered


def test_a_job_past_its_budget_starts_only_on_an_on_demand_node(table: StateTable) -> None:
    jobs, nodes = DynamoJobStore(table), DynamoNodeStore(table)

    def node(instance_id: str, market: Market) -> NodeRecord:
        return NodeRecord(instance_id=instance_id, offer_key="m5.2xlarge", instance_type="m5.2xlarge",
                          market=market, state=NodeState.ACTIVE)  # fmt: skip

    for instance_id, market in (("i-spot", Market.SPOT), ("i-spot2", Market.SPOT), ("i-od", Market.ON_DEMAND)):
        nodes.put_node(node(instance_id, market))
    # GIVEN a job with a budget of one reclaim, reclaimed once
    job = make_job("a", 2, max_preemptions=1)
    jobs.put_jobs([job], NOW)
    assert jobs.start_job(job, "i-spot", NOW) == 1
    assert jobs.requeue_job("a", "i-spot", reason="spot interruption warning", now=NOW, preempted=True)
    # WHEN another spot node's agent tries to start it  THEN the store refuses (nothing changes)
    assert jobs.start_job(job, "i-spot2", NOW + 1) is None
    record = jobs.get_job("a")
    assert record is not None and record.status is JobStatus.QUEUED and record.on_demand_only
    assert jobs.demand() == {job.shape: DemandCount(queued=1)}
    # AND an on-demand node starts it
    assert jobs.start_job(job, "i-od", NOW + 2) == 2

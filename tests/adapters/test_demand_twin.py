"""The in-memory demand source reads what ``DynamoDemandStore`` reads from the same history (each test runs on
moto's DynamoDB and on the twin): the memory-backed control plane (``tests/services/test_round.py``) then
plans as a deployed round does, at learned runtimes, with queue checkpoints and when busy nodes empty."""

from __future__ import annotations

from shared.domain.demand import RunningJob
from tests.adapters.conftest import DemandStores, make_job

NOW = 1_700_000_000.0


def test_counters_per_shape_and_name_count_every_enqueue_and_when_the_last_came(demand_stores: DemandStores) -> None:
    # GIVEN two named jobs and an unnamed one of one shape; one starts, is requeued, a third named one is cancelled
    jobs = demand_stores.jobs
    a, b, c, d = (make_job("a", 0, name="align"), make_job("b", 0, name="align"), make_job("c", 0),
                  make_job("d", 0, name="align"))  # fmt: skip
    jobs.put_jobs([a, b, c, d], NOW)
    assert jobs.start_job(a, "i-1", NOW + 5) == 1
    assert jobs.requeue_job("a", "i-1", reason="interrupted", now=NOW + 9)
    assert jobs.start_job(b, "i-2", NOW + 10) == 1
    jobs.cancel_jobs(["d"], reason="stop", now=NOW + 11)
    # THEN both backends count the same: per name, every enqueue, the last one's time
    counters = demand_stores.demand.counters()
    assert counters.counts == {(a.shape, "align"): (1, 1), (c.shape, None): (1, 0)}
    assert counters.enqueued == {(a.shape, "align"): (4, NOW + 9), (c.shape, None): (1, NOW)}
    # and only b is running, where and since when it started (a's requeue took it off i-1)
    assert demand_stores.demand.running_jobs(["a", "b", "c", "missing"]) == [
        RunningJob(job_id="b", key=(b.shape, "align"), started_at=NOW + 10, node="i-2")
    ]


def test_runtimes_and_checkpoints_round_trip(demand_stores: DemandStores) -> None:
    demand_stores.cluster.record_runtime("align", 600.0, 2)
    demand_stores.cluster.record_runtime("sort", 60.0, 1)
    runtimes = demand_stores.demand.runtimes()
    assert dict(runtimes.by_name) == {"align": (2, 600.0), "sort": (1, 60.0)}
    assert (runtimes.jobs, runtimes.seconds) == (3, 660.0)
    # checkpoints: kept, changed, and those of a key no longer queued deleted
    shape = make_job("x", 0).shape
    first = {(shape, "align"): ((NOW, 2),), (shape, None): ((NOW, 1),)}
    demand_stores.demand.save_marks(first, {})
    assert demand_stores.demand.marks() == first
    second = {(shape, "align"): ((NOW, 2), (NOW + 60, 5))}
    demand_stores.demand.save_marks(second, first)
    assert demand_stores.demand.marks() == second

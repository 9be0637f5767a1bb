"""From demand counters to planned demand (``shared.domain.demand``): the rule the deployed round and the
simulator share."""

from __future__ import annotations

from types import MappingProxyType

from shared.domain.cluster_state import DemandCount
from shared.domain.demand import (
    CONSOLIDATE_JOBS_UP_TO,
    MAX_CHECKPOINTS,
    OVERRUN_FACTOR,
    Checkpoints,
    checkpoint,
    empties_at,
    expected_end,
    planned,
    queue_marks,
    two_digits,
)
from shared.domain.jobs import Shape
from shared.domain.resources import Resources
from shared.domain.runtimes import Runtimes

GiB = 2**30
ASKED = Shape(resources=Resources(cores=2, memory=4 * GiB, disk=10 * GiB), wall_time=600.0, preemptible=True)
LEARNED = Runtimes(by_name=MappingProxyType({"align": (4, 4 * 1234.0)}), jobs=4, seconds=4 * 1234.0)


def as_planned(wall: float) -> Shape:
    return Shape(resources=ASKED.resources, wall_time=wall, preemptible=ASKED.preemptible)


def test_a_queued_job_with_a_learned_runtime_is_planned_with_it() -> None:
    # GIVEN two queued jobs of a name whose finished jobs took 1234 s on average, though they ask for 600 s
    # WHEN the counters are planned
    plan = planned({(ASKED, "align"): (2, 0)}, {}, LEARNED, now=0.0)
    # THEN they are planned at the learned runtime, to two digits
    assert plan.counts == {as_planned(1200.0): DemandCount(queued=2)}
    assert plan.shape_of == {(ASKED, "align"): as_planned(1200.0)}


def test_a_name_nothing_is_known_of_is_planned_as_asked() -> None:
    plan = planned({(ASKED, "new"): (1, 0)}, {}, Runtimes(), now=0.0)
    assert plan.counts == {ASKED: DemandCount(queued=1)}


def test_running_jobs_are_planned_as_what_is_left_of_them() -> None:
    # GIVEN one running job of the name, started 300 s ago (expected 1200 s in all)
    plan = planned({(ASKED, "align"): (0, 1)}, {"align": (1, 500.0)}, LEARNED, now=800.0)
    # THEN it is demand for what is left of it
    running = {shape: count for shape, count in plan.counts.items() if count.running}
    assert running == {as_planned(900.0): DemandCount(running=1)}


def test_queued_since_is_the_earliest_mark_of_the_keys_planned_alike() -> None:
    other = Shape(resources=ASKED.resources, wall_time=900.0, preemptible=True)  # asks otherwise, same name
    counters = {(ASKED, "align"): (1, 0), (other, "align"): (3, 0)}
    plan = planned(counters, {}, LEARNED, now=100.0, since={(ASKED, "align"): 50.0, (other, "align"): 20.0})
    assert plan.queued_since == {as_planned(1200.0): 20.0}


def test_the_oldest_queued_job_is_dated_by_the_first_round_that_counted_it() -> None:
    # GIVEN 3 jobs enqueued before a round at 10 s and 2 more before one at 20 s
    marks = checkpoint((), enqueued=(3, 10.0), queued=3, now=10.0)
    marks = checkpoint(marks, enqueued=(5, 15.0), queued=5, now=20.0)  # the last of the two came at 15 s
    assert marks == ((10.0, 3), (15.0, 5))
    # WHEN 3 have started by the round at 30 s (first in, first out): the oldest queued is the 4th
    marks = checkpoint(marks, enqueued=(5, 15.0), queued=2, now=30.0)
    # THEN it is dated by the first checkpoint that counted it: no earlier than it came
    assert marks == ((15.0, 5),)
    # and a queue seen empty keeps nothing
    assert checkpoint(marks, enqueued=(5, 15.0), queued=0, now=40.0) == ()


def test_checkpoints_are_bounded_by_merging_the_closest_rounds_into_the_later() -> None:
    marks: Checkpoints = ()
    for i in range(MAX_CHECKPOINTS + 1):
        marks = checkpoint(
            marks, enqueued=(i + 1, i * i), queued=i + 1, now=i * i
        )  # enqueues further and further apart
    assert len(marks) == MAX_CHECKPOINTS
    assert marks[0] == (0.0, 1) and (1.0, 2) not in marks and (4.0, 3) in marks  # 0 stays; 1 → 4 was the closest


def test_queue_marks_keep_checkpoints_of_queued_keys_only() -> None:
    counters = {(ASKED, "align"): (2, 0), (ASKED, "sort"): (0, 1)}
    enqueued = {(ASKED, "align"): (2, 8.0), (ASKED, "sort"): (1, 5.0)}
    marks = queue_marks({(ASKED, "sort"): ((5.0, 1),)}, counters, enqueued, 9.0)
    assert marks == {(ASKED, "align"): ((8.0, 2),)}


def test_a_node_empties_when_its_last_job_is_expected_to_end() -> None:
    plan = planned({(ASKED, "align"): (0, 2)}, {}, LEARNED, now=0.0)
    jobs = {"i-1": [((ASKED, "align"), 100.0), ((ASKED, "unplanned"), 900.0)], "i-2": [((ASKED, "align"), -1000.0)]}
    assert expected_end((ASKED, "align"), 100.0, plan.shape_of, now=1000.0) == 1300.0
    # i-2's job was expected at 1,200 s and has run 2,000: overdue, not yet an outlier, so it ends "now"
    assert empties_at(jobs, plan.shape_of, now=1000.0) == {"i-1": 1500.0, "i-2": 1000.0}


def test_a_job_past_twice_its_expected_runtime_is_expected_to_run_as_long_again() -> None:
    # GIVEN align expected at 1,200 s (LEARNED), and a job of it running for 6,000 s (an outlier of its name)
    plan = planned({(ASKED, "align"): (0, 1)}, {}, LEARNED, now=0.0)
    assert OVERRUN_FACTOR * plan.shape_of[(ASKED, "align")].wall_time <= 6000.0
    # THEN its node is expected to empty when it has run as long again, not at once (it was drained as "ending")
    assert expected_end((ASKED, "align"), -5000.0, plan.shape_of, now=1000.0) == 7000.0
    assert empties_at({"i-2": [((ASKED, "align"), -5000.0)]}, plan.shape_of, now=1000.0) == {"i-2": 7000.0}
    # and a minute before it turned an outlier it was still expected at its runtime
    assert expected_end((ASKED, "align"), -1340.0, plan.shape_of, now=1000.0) == -140.0


def test_a_node_running_a_long_job_is_not_expected_to_empty_soon() -> None:
    # GIVEN two nodes whose jobs are all due: one runs align (1,234 s), the other also a job learned to run 9 hours
    learned = Runtimes.of_names({"align": (4, 4 * 1234.0), "assemble": (2, 2 * 9 * 3600.0)})
    plan = planned({(ASKED, "align"): (0, 2), (ASKED, "assemble"): (0, 1)}, {}, learned, now=0.0)
    assert plan.shape_of[(ASKED, "assemble")].wall_time > CONSOLIDATE_JOBS_UP_TO
    jobs = {
        "i-1": [((ASKED, "align"), -1000.0)],
        "i-2": [((ASKED, "align"), -1000.0), ((ASKED, "assemble"), -9 * 3600.0)],
    }
    # THEN only the first is expected to empty (now): the second is not drained on a long job's mean runtime
    assert empties_at(jobs, plan.shape_of, now=1000.0) == {"i-1": 1000.0}


def test_two_digits() -> None:
    assert [two_digits(s) for s in (0.0, 1234.0, 56.7, 0.4)] == [1.0, 1200.0, 57.0, 1.0]


def test_while_a_names_first_jobs_run_its_queued_ones_are_not_planned_below_what_they_asked() -> None:
    # nothing has finished: twice the time so far, but never less than the job's own estimate
    assert Runtimes().expected("new", 3600.0, running=(1, 60.0)) == 3600.0
    assert Runtimes().expected("new", 1.0, running=(1, 60.0)) == 120.0


def test_unnamed_jobs_do_not_share_what_running_ones_have_run() -> None:
    plan = planned({(ASKED, None): (1, 1)}, {None: (1, -7200.0)}, Runtimes(), now=0.0)
    assert plan.shape_of == {(ASKED, None): ASKED}

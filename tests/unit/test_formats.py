"""The formats that cross a seam (shared/formats): each side's view of them agrees.

The end-to-end checks read what the real writers write: a real round read by ``shoal status``
(tests/functions, tests/cli), the LaunchCluster state machine's STATUS item read by the cluster store
(tests/lifecycle). These are the fast checks of the definitions themselves.
"""

from __future__ import annotations

import json

import pytest

from shared.domain.cluster_state import DemandCount
from shared.domain.decision import Decision, Snapshot
from shared.domain.jobs import Shape
from shared.domain.policy import ScalerState
from shared.domain.resources import Resources
from shared.domain.scaling import decide, offers_for
from shared.domain.settings import ClusterSettings
from shared.formats import cluster_status
from shared.formats.decision_record import DecisionRecord, PassSummary
from shared.formats.lifecycle import RESULT_KEYS, LifecycleAction, result_key, result_path

GiB = 2**30


def a_decision() -> Decision:
    """A real decision from zero: 40 queued jobs of two shapes."""
    settings = ClusterSettings(name="t", node_types="c5.4xlarge,m5.2xlarge,r5.2xlarge", region="us-west-2").validate()
    demand = {
        Shape(resources=Resources(cores=4, memory=16 * GiB, disk=2 * GiB), wall_time=1800): DemandCount(queued=30),
        Shape(resources=Resources(cores=2, memory=28 * GiB, disk=2 * GiB), wall_time=1200): DemandCount(queued=10),
    }
    snapshot = Snapshot(demand=demand, nodes=(), instances=())
    return decide(snapshot, settings, offers_for(settings), ScalerState(), set(), now=0.0)


def test_a_pass_summary_is_exactly_what_decision_summary_writes() -> None:
    # GIVEN a real decision with actions and reasons
    decision = a_decision()
    summary = decision.summary()
    assert summary["actions"] and summary["reasons"]
    # WHEN it becomes a PassSummary and back  THEN nothing is lost, renamed or added
    assert PassSummary.of(decision).to_json() == summary


def test_a_decision_record_survives_the_log_json_round_trip() -> None:
    # GIVEN a record as a round builds it
    first = PassSummary.of(a_decision())
    record = DecisionRecord(
        round_id="r-1",
        at=1_795_521_600.5,
        trigger="Scheduled Event",
        passes=2,
        smoothed_at=1_795_521_500.0,
        decision=first,
        later_passes=(PassSummary(reasons=("settled",)),),
        done=({"action": "launch", "reason": "queued jobs"},),
        launch_failures=({"instance_type": "m5.2xlarge", "code": "InsufficientInstanceCapacity"},),
        errors=("terminate i-1: boom",),
        hourly_cost=1.25,
        decide_seconds=0.01,
        round_seconds=0.2,
    )
    # WHEN it goes through JSON as the decision log stores it  THEN it reads back equal
    again = DecisionRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record
    assert again.reasons == first.reasons and again.reasons


def test_an_entry_from_an_older_version_reads_as_empty_parts_not_an_error() -> None:
    # GIVEN entries missing parts, or with parts of the wrong type
    old = DecisionRecord.from_json({"round_id": "r", "at": 5, "decision": {"reasons": ["why"]}})
    odd = DecisionRecord.from_json({"decision": "not an object", "later_passes": 3, "at": "yesterday"})
    # THEN what is there reads, the rest is empty
    assert (old.round_id, old.at, old.reasons, old.later_passes) == ("r", 5.0, ("why",), ())
    assert (odd.reasons, odd.later_passes, odd.at) == ((), (), 0.0)


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2026-11-24T12:00:00.123Z", 1_795_521_600.123),  # Step Functions' $$.State.EnteredTime
        ("2026-11-24T12:00:00Z", 1_795_521_600.0),
        ("2026-11-24T13:00:00+01:00", 1_795_521_600.0),
    ],
)
def test_status_timestamps_read_as_either_writer_writes_them(text: str, epoch: float) -> None:
    assert cluster_status.parse_timestamp(text) == pytest.approx(epoch, abs=1e-6)


def test_the_store_writes_timestamps_the_way_step_functions_does() -> None:
    assert cluster_status.format_timestamp(1_795_521_600.123) == "2026-11-24T12:00:00.123Z"
    assert cluster_status.parse_timestamp(cluster_status.format_timestamp(1_795_521_605.0)) == 1_795_521_605.0


@pytest.mark.parametrize("text", ["yesterday", "2026-11-24T12:00:00"])
def test_a_timestamp_without_a_zone_or_not_a_timestamp_is_refused(text: str) -> None:
    with pytest.raises(cluster_status.TimestampError, match="updated_at"):
        cluster_status.parse_timestamp(text)


def test_every_lifecycle_action_has_its_own_result_key() -> None:
    assert set(RESULT_KEYS) == set(LifecycleAction)
    assert len(set(RESULT_KEYS.values())) == len(RESULT_KEYS)
    assert result_key(LifecycleAction.LAUNCH_STATIC_NODES) == "launched"
    assert result_path(LifecycleAction.DRAIN_ALL) == "$.drained"
    assert result_path(LifecycleAction.CHECK_JOBS, "done") == "$.jobs.done"

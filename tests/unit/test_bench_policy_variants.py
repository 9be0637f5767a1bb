"""``benchmarks/bench_policy_variants.py``: each what-if changes its one rule for the run and leaves Shoal as it
was afterwards; an unknown variant is refused by name."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.bench_policy_variants import DEFAULT_VARIANTS, run, variant
from shared.domain import cheaper_first, demand, packing_tail, scaling, scaling_changes
from shared.domain.cluster_state import DemandCount, NodeState
from shared.domain.decision import Snapshot, Undrain
from shared.domain.policy import ScalerState
from shared.domain.runtimes import Runtimes
from shared.domain.scaling import decide, offers_for
from shared.domain.scaling_changes import CONSOLIDATE_WITHIN
from shared.domain.settings import ClusterSettings
from shared.sim import jobs
from shared.sim.engine import SimOptions, Simulation
from shared.sim.fleet import Fleet
from shared.sim.jobs import JobFlow
from shared.sim.trace import TraceJob, read_trace
from tests.unit.test_cheaper_first import two_nodes
from tests.unit.test_policy_waits import NOW, SMALL, _decide_with, _node
from tests.unit.test_simulate import bursty, settings, trace_line, write_trace

ROOT = Path(__file__).resolve().parents[2]
M5_24 = ClusterSettings(name="t", node_types="m5.24xlarge").validate()


def test_the_oracle_knows_each_names_true_mean_inside_the_run_only(tmp_path: Path) -> None:
    trace = read_trace(write_trace(tmp_path / "t.jsonl", bursty()))
    step0 = [job.wall_time for job in trace if job.job.name == "step0"]
    patch, _ = variant("oracle")
    with patch(trace):
        assert Runtimes().expected("step0", 60.0) == pytest.approx(sum(step0) / len(step0))
    assert Runtimes().expected("step0", 60.0) == 60.0  # nothing learned, as it was


def _patched() -> tuple[object, ...]:
    """Everything a variant patches."""
    return (demand.OVERRUN_FACTOR, Runtimes.expected, scaling.remaining_target, JobFlow._dispatch,
            scaling_changes.Changes._stragglers, cheaper_first.HOLD_OFF, jobs.HOLD_OFF, JobFlow._job_ended,
            JobFlow._requeue_jobs, Fleet._records, scaling_changes.Changes.resize, Simulation._empties_at)  # fmt: skip


def test_every_variant_runs_and_restores_what_it_patched(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl", bursty())
    before = _patched()
    for name in DEFAULT_VARIANTS.split(","):
        report = run(path, name, seed=0)
        # (cap-N offers spot c5 alone: the trace's six 60 GiB on-demand jobs fit nothing there)
        assert report["completed"] == report["jobs"] - (6 if name.startswith("cap-") else 0), name
        assert report["run_twice"] == report["killed_by_scale_in"] == 0, name
        assert _patched() == before, name


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "benchmarks/bench_policy_variants.py", *args],
        cwd=ROOT, capture_output=True, text=True, check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_an_unknown_variant_is_named_with_the_choices_and_exit_2() -> None:
    with pytest.raises(ValueError, match="'capp-3'"):
        variant("capp-3")
    done = _bench("--variants", "as-is,capp-3")
    assert done.returncode == 2
    assert "variant 'capp-3'" in done.stderr


def test_an_overrun_variant_sets_the_factor_the_round_and_the_simulator_read(tmp_path: Path) -> None:
    trace = read_trace(write_trace(tmp_path / "t.jsonl", bursty()))
    patch, _ = variant("overrun-1.5")
    key = (trace[0].job.shape, trace[0].job.name)
    with patch(trace):  # the one rule the round and the simulator read
        assert demand.OVERRUN_FACTOR == 1.5
        assert demand.outlier_from(key, 0.0, {}) == 1.5 * key[0].wall_time
    assert demand.OVERRUN_FACTOR == 2.0


def _burst_waits(trace: Sequence[TraceJob], name: str) -> dict[str, float]:
    """The long job's wait and the first short one's, among the jobs submitted together at the end."""
    patch, _ = variant(name)
    with patch(trace):  # one 8-core node at most: the agents' order is the only thing that moves the waits
        sim = Simulation(trace, SimOptions(settings=settings(node_types="m5.2xlarge", max_nodes=(1,)), seed=0))
        assert sim.run().report["completed"] == len(trace)
    burst = [job for job in sim.jobs if job.trace.submit == BURST]
    return {
        "long": next(job.wait for job in burst if job.name == "long"),
        "first short": min(job.wait for job in burst if job.name == "short"),
    }


BURST = 800.0


def test_longest_first_agents_start_the_longest_queued_job_before_older_short_ones(tmp_path: Path) -> None:
    # GIVEN a one-minute and a ten-minute job that teach their names' runtimes, then three one-minute jobs queued
    # with a ten-minute one, all at once, each taking a whole node of which there is one
    lines = [trace_line(0, 0.0, cores=8, wall=60, name="short"), trace_line(1, 1.0, cores=8, wall=600, name="long")]
    lines += [trace_line(2 + i, BURST, cores=8, wall=60, name="short") for i in range(3)]
    lines += [trace_line(5, BURST, cores=8, wall=600, name="long")]
    trace = read_trace(write_trace(tmp_path / "t.jsonl", lines))
    # WHEN replayed with the agents as they are, longest first, and late-first with every job already late
    oldest, longest = _burst_waits(trace, "as-is"), _burst_waits(trace, "longest-first")
    late = _burst_waits(trace, "late-first-0")
    # THEN as they are the long job waits for the three short ones; longest first it starts first
    assert oldest["long"] >= oldest["first short"] + 3 * 60
    assert longest["long"] < longest["first short"]
    assert late == oldest  # every job overdue: oldest first again


@pytest.mark.parametrize(("name", "where"), [("as-is", "spot"), ("any-node", "big"), ("hold-off-30", "spot")])
def test_the_placement_variants_switch_the_cheaper_first_rule(tmp_path: Path, name: str, where: str) -> None:
    # GIVEN a free m5.24xlarge first in the agents' order and a free spot node  WHEN a small job is queued
    patch, _ = variant(name)
    sim, big, spot = two_nodes(tmp_path, True)
    with patch(()):
        sim._enqueue(0)
        sim._dispatch()
    # THEN as-is (and holding off longer) it starts on the spot node; any-node on the first node with room
    assert sim.jobs[0].node == {"spot": spot, "big": big}[where]


def _idle_and_busy(tmp_path: Path) -> tuple[Simulation, str, str]:
    """Two ready m5.24xlarge: an idle one first in the agents' random order, and one running an 8-core job."""
    lines = [trace_line(0, 0.0, cores=8, memory_gib=8, wall=3600), trace_line(1, 0.0, cores=8, memory_gib=8, wall=600)]
    sim = Simulation(read_trace(write_trace(tmp_path / "t.jsonl", lines)), SimOptions(settings=M5_24, seed=0))
    idle, busy = sim.create_nodes(offers_for(M5_24)[0], "m5.24xlarge", 2)
    sim.nodes[idle].priority, sim.nodes[busy].priority = 0.0, 1.0
    sim.nodes[busy].state = NodeState.ACTIVE
    sim._enqueue(0)
    sim.now = 100.0
    sim._dispatch()
    assert sim.jobs[0].node == busy
    sim.nodes[idle].state = NodeState.ACTIVE
    return sim, idle, busy


@pytest.mark.parametrize(
    ("name", "where"),
    [("as-is", "idle"), ("busy-first-at-once", "busy"), ("fullest-first", "busy"), ("latest-first", "busy"),
     ("emptiest-busy-first", "busy")],
)  # fmt: skip
def test_the_node_order_variants_start_a_job_on_the_first_node_of_their_order(
    tmp_path: Path, name: str, where: str
) -> None:
    # GIVEN an idle node first in the agents' random order and a node with room beside its job  WHEN a job is queued
    patch, _ = variant(name)
    sim, idle, busy = _idle_and_busy(tmp_path)
    with patch(()):
        sim._enqueue(1)
        sim._dispatch()
    # THEN as-is it starts on the idle node (the random order); each variant's order puts the busy node first
    assert sim.jobs[1].node == {"busy": busy, "idle": idle}[where]
    assert [n.priority for n in sim.nodes.values()] == [0.0, 1.0]  # the random order is back after the dispatch


def test_a_consolidate_variant_drains_on_demand_nodes_that_empty_later_inside_the_run_only() -> None:
    # GIVEN three busy surplus on-demand nodes, one expected to empty just after the 10-minute window
    soon = {"i-0": NOW + 60, "i-1": NOW + CONSOLIDATE_WITHIN + 1, "i-2": NOW + 120}
    patch, overrides = variant("consolidate-inf")
    # WHEN the variant's window is "whenever"  THEN all three are drained
    with patch(()):
        assert sorted(i for d in _decide_with(soon, queued=0) for i in d.instance_ids) == ["i-0", "i-1", "i-2"]
        # AND a busy node with no expected end (a long job: ``demand.CONSOLIDATE_JOBS_UP_TO``) is not one of them
        del soon["i-1"]
        assert sorted(i for d in _decide_with(soon, queued=0) for i in d.instance_ids) == ["i-0", "i-2"]
    # AND afterwards the window is Shoal's again
    assert sorted(i for d in _decide_with(soon, queued=0) for i in d.instance_ids) == ["i-0", "i-2"]
    assert overrides == {}


def test_consolidate_fewest_drains_busy_surplus_on_demand_nodes_whenever_they_end_inside_the_run_only() -> None:
    soon = {"i-0": NOW + 60, "i-1": NOW + CONSOLIDATE_WITHIN + 1, "i-2": NOW + 120}
    patch, _ = variant("consolidate-fewest")
    with patch(()):
        assert sorted(i for d in _decide_with(soon, queued=0) for i in d.instance_ids) == ["i-0", "i-1", "i-2"]
        assert sorted(i for d in _decide_with({}, queued=0) for i in d.instance_ids) == ["i-0", "i-1", "i-2"]
    assert sorted(i for d in _decide_with(soon, queued=0) for i in d.instance_ids) == ["i-0", "i-2"]


def _undrains(empties_at: dict[str, float]) -> list[str]:
    """Which of two busy draining r5.4xlarge (i-0, i-1) a round takes back, nothing queued."""
    settings = ClusterSettings(name="t", node_types="m5.2xlarge,r5.4xlarge", beta_inertia=0.0).validate()
    pairs = [_node(f"i-{n}", "r5.4xlarge", busy=True) for n in range(2)]
    nodes = [replace(record, state=NodeState.DRAINING, draining_since=NOW - 3600) for record, _ in pairs]
    snapshot = Snapshot(
        demand={SMALL: DemandCount(running=2)}, nodes=nodes, instances=[i for _, i in pairs], empties_at=empties_at
    )
    decision = decide(snapshot, settings, offers_for(settings), ScalerState(), (), now=NOW)
    return sorted(i for a in decision.actions if isinstance(a, Undrain) for i in a.instance_ids)


def test_undrain_overrun_takes_back_a_drained_node_whose_jobs_run_on_inside_the_run_only() -> None:
    # GIVEN two busy drained on-demand nodes: one still expected to empty within the window, one not
    ends = {"i-0": NOW + 60, "i-1": NOW + CONSOLIDATE_WITHIN + 600}
    patch, _ = variant("undrain-overrun")
    # WHEN the variant decides  THEN the one whose jobs run on takes work again
    with patch(()):
        assert _undrains(ends) == ["i-1"]
    # AND Shoal as it is keeps both drained
    assert _undrains(ends) == []


def test_a_beta_variant_sets_the_clusters_beta_inertia(tmp_path: Path) -> None:
    _, overrides = variant("beta-0.5")
    assert overrides == {"beta_inertia": 0.5}
    report = run(write_trace(tmp_path / "t.jsonl", bursty()), "beta-0.5", seed=0)
    assert report["completed"] == report["jobs"] and report["run_twice"] == report["killed_by_scale_in"] == 0


def _busy_in_records(sim: Simulation) -> bool:
    (record,) = sim._records()
    return record.busy


def _one_node_up_since_0(tmp_path: Path, lines: list[dict[str, object]]) -> tuple[Simulation, str]:
    """A simulation of ``lines`` with one m5.24xlarge taking work since 0 s (its heartbeats at 0, 30, 60 s...)."""
    sim = Simulation(read_trace(write_trace(tmp_path / "t.jsonl", lines)), SimOptions(settings=M5_24, seed=0))
    (node_id,) = sim.create_nodes(offers_for(M5_24)[0], "m5.24xlarge", 1)
    node = sim.nodes[node_id]
    node.ready_at, node.state = 0.0, NodeState.ACTIVE
    return sim, node_id


def test_the_record_variants_show_a_nodes_jobs_as_of_its_last_heartbeat(tmp_path: Path) -> None:
    # GIVEN a node up since 0 s (heartbeats at 0, 30, 60 s) that starts a job at 10 s and sees it end at 50 s
    lines = [trace_line(0, 10.0, cores=8, memory_gib=8, wall=40)]
    seen: dict[str, list[bool]] = {}
    for name in ("as-is", "records-at-heartbeat", "deployed-records"):
        patch, _ = variant(name)
        with patch(()):
            sim, node_id = _one_node_up_since_0(tmp_path, lines)
            sim.now = 10.0
            sim._enqueue(0)
            sim._dispatch()
            seen[name] = []
            for now in (20.0, 40.0):  # before the next heartbeat, after it
                sim.now = now
                seen[name].append(_busy_in_records(sim))
            sim.now = 50.0
            sim._job_ended(0, sim.jobs[0].attempt, node_id)
            sim.now = 55.0
            seen[name].append(_busy_in_records(sim))
    # THEN as-is the scaler sees the start and the end at once; at heartbeats it sees the job from 30 s and still
    # at 55 s; with an agent that reports its node idle at once, the end of the node's last job at once
    assert seen == {
        "as-is": [True, True, False],
        "records-at-heartbeat": [False, True, True],
        "deployed-records": [False, True, False],
    }


def test_the_marker_variants_see_a_job_started_since_the_last_heartbeat_before_draining(tmp_path: Path) -> None:
    # GIVEN a node up since 0 s (heartbeats at 0, 30, 60 s) that starts a 5-minute job at 10 s and a 2-hour one at 40 s
    lines = [
        trace_line(0, 10.0, cores=8, memory_gib=8, wall=300, name="short"),
        trace_line(1, 40.0, cores=8, memory_gib=8, wall=7200, name="long"),
    ]
    empties: dict[str, float] = {}
    for name in ("as-is", "records-at-heartbeat", "records-with-markers", "deployed-with-markers"):
        patch, _ = variant(name)
        with patch(()):
            sim, node_id = _one_node_up_since_0(tmp_path, lines)
            # as a round planned them: the names learned to run 5 minutes and 2 hours
            sim._shape_of = {job.key: replace(job.key[0], wall_time=job.wall) for job in sim.jobs}
            for index, now in enumerate((10.0, 40.0)):
                sim.now = now
                sim._enqueue(index)
                sim._dispatch()
            sim.now = 45.0
            empties[name] = sim._empties_at()[node_id]
    # THEN from its record alone the node empties at 310 s, within the consolidation window; its start markers show
    # the 2-hour job, as the simulator's scaler sees it
    assert empties == {
        "as-is": 7240.0,
        "records-at-heartbeat": 310.0,
        "records-with-markers": 7240.0,
        "deployed-with-markers": 7240.0,
    }


def test_a_node_running_a_long_job_is_not_consolidated_unless_the_variant_says_so(tmp_path: Path) -> None:
    # GIVEN a node running a job its name's runtimes say takes 9 hours, 10 minutes from its expected end
    lines = [trace_line(0, 0.0, cores=8, memory_gib=8, wall=9 * 3600, name="assemble")]
    empties: dict[str, dict[str, float]] = {}
    for name in ("as-is", "jobs-up-to-inf", "jobs-up-to-36000"):
        patch, _ = variant(name)
        with patch(()):
            sim, node_id = _one_node_up_since_0(tmp_path, lines)
            sim._shape_of = {job.key: replace(job.key[0], wall_time=job.wall) for job in sim.jobs}
            sim._enqueue(0)
            sim._dispatch()
            sim.now = 9 * 3600 - 600.0
            empties[name] = sim._empties_at()
    # THEN as Shoal is, it is not expected to empty (not drained for that); as before session 13, or with a longer
    # limit, it is
    assert empties == {"as-is": {}, "jobs-up-to-inf": {node_id: 9 * 3600.0}, "jobs-up-to-36000": {node_id: 9 * 3600.0}}


@pytest.mark.parametrize(
    ("name", "node_type", "first"),
    [("as-is", "m5.2xlarge", "small"), ("fill-first-inf", "m5.2xlarge", "big"), ("fill-first-0", "m5.2xlarge", "small"),
     ("fill-first-inf-k1", "m5.2xlarge", "small"), ("fill-first-inf-k2", "m5.2xlarge", "big"),
     ("fill-first-inf-c2", "m5.2xlarge", "big"), ("fill-first-inf-s", "m5.2xlarge", "small"),
     ("fill-first-inf-s", "m5.2xlarge:0.2", "big")],
)  # fmt: skip
def test_fill_first_agents_start_the_job_that_fills_the_node_most_unless_told_otherwise(
    tmp_path: Path, name: str, node_type: str, first: str
) -> None:
    # GIVEN one free 8-core node, and queued on it a 3-core job and, after it, a 6-core one: not both fit
    lines = [trace_line(0, 0.0, cores=3, memory_gib=2, wall=600), trace_line(1, 1.0, cores=6, memory_gib=2, wall=600)]
    m5 = settings(node_types=node_type)
    sim = Simulation(read_trace(write_trace(tmp_path / "t.jsonl", lines)), SimOptions(settings=m5, seed=0))
    (node,) = sim.create_nodes(offers_for(m5)[0], "m5.2xlarge", 1)
    sim.nodes[node].state = NodeState.ACTIVE
    sim.now = 100.0
    patch, _ = variant(name)
    # WHEN the agents take work
    with patch(()):
        sim._enqueue(0)
        sim._enqueue(1)
        sim._dispatch()
    # THEN as-is the oldest starts; fill-first the one that fills the node, unless every job is overdue (F = 0),
    # the agent sees only the oldest (k1), or by size classes (c2: the 6-core job is in the larger half); with -s
    # only a spot node fills itself, an on-demand one takes the oldest
    started = {i for i, job in enumerate(sim.jobs) if job.node == node}
    assert started == {{"small": 0, "big": 1}[first]}


def test_a_fill_first_variant_with_a_bad_option_is_named_with_the_form() -> None:
    with pytest.raises(ValueError, match=r"'fill-first-0\.6-x3'.*fill-first-0\.6-k10"):
        variant("fill-first-0.6-x3")
    with pytest.raises(ValueError, match="'fill-first-soon'"):
        variant("fill-first-soon")


def test_the_toil_flag_runs_toils_scaler_under_the_same_variant(tmp_path: Path) -> None:
    # GIVEN a small trace  WHEN the harness runs a variant with --toil
    write_trace(tmp_path / "t.jsonl", bursty(60))
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_policy_variants.py", "--traces", str(tmp_path), "--seeds", "0",
         "--variants", "fill-first-0.6", "--toil"],
        cwd=ROOT, capture_output=True, text=True, check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    # THEN Shoal's row is followed by Toil's and by the ratio of the two costs (of the costs before they are printed
    # to the cent: $1.40 against $1.61 may be a ratio of 0.8736)
    assert done.returncode == 0, done.stderr
    shoal, toil, ratio = done.stdout.splitlines()[1:4]
    assert shoal.split()[1] == "fill-first-0.6"
    assert toil.split()[1:4] == ["Toil,", "same", "agents"]
    assert float(ratio.split()[-1]) == pytest.approx(float(shoal.split()[2]) / float(toil.split()[4]), abs=1e-2)


def test_a_tail_variant_sets_the_share_the_packing_reads_and_restores_it(tmp_path: Path) -> None:
    trace = read_trace(write_trace(tmp_path / "t.jsonl", bursty()))
    patch, _ = variant("tail-0")
    with patch(trace):
        assert packing_tail.tail_factor(9) == 1.0  # at its price per job, as before session 18
    assert packing_tail.tail_factor(9) > 1.5


def test_the_node_storage_reaches_every_run_and_a_small_one_is_refused(tmp_path: Path) -> None:
    # GIVEN 16 one-core jobs of 10 GiB disk at once  THEN a 200 GiB root volume runs them on fewer nodes than 50 GiB
    path = write_trace(tmp_path / "t.jsonl", [trace_line(i, 0.0, cores=1, wall=3600) for i in range(16)])
    kept = [run(path, "as-is", 0, node_storage=gib * 2**30, max_node_storage=gib * 2**30) for gib in (50, 200)]
    assert kept[0]["peak_nodes"] > kept[1]["peak_nodes"]
    # AND Shoal's rounds grow a 50 GiB volume when --max-node-storage lets them (Toil's nodes keep it)
    assert run(path, "as-is", 0, node_storage=50 * 2**30)["peak_nodes"] == kept[1]["peak_nodes"]
    toil = [run(path, "as-is", 0, toil=True, max_node_storage=gib * 2**30) for gib in (50, 1024)]
    assert toil[0]["cost"] == toil[1]["cost"] and toil[0]["peak_nodes"] == toil[1]["peak_nodes"]
    done = _bench("--node-storage", "5")
    assert done.returncode == 2
    assert "'5' is too small; the root volume needs at least 10 GiB" in done.stderr

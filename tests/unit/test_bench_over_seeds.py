"""``benchmarks/bench_simulate.py --seeds``: the median row and the per-seed cost ratio are worked out from the
simulator's own reports, seed by seed (a policy change is judged over seeds, not on one seed's figures)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from benchmarks import bench_simulate
from benchmarks.bench_simulate import WAITS, median, over_seeds, parse_seeds, parse_targets, waits_no_worse
from shared.domain.catalog import DEFAULT_NODE_STORAGE
from shared.sim.engine import SimOptions, simulate
from shared.sim.trace import read_trace
from tests.unit.test_simulate import bursty, settings, write_trace


def _reports(path: Path, seeds: list[int], **overrides: object) -> list[dict[str, object]]:
    overrides.setdefault("max_node_storage", DEFAULT_NODE_STORAGE)  # volumes kept at 50 GiB: the ladder below is theirs
    trace = read_trace(path)
    return [dict(simulate(trace, SimOptions(settings=settings(**overrides), seed=seed)).report) for seed in seeds]


def test_the_median_row_and_the_ratio_come_from_the_reports_seed_by_seed(tmp_path: Path) -> None:
    # GIVEN real reports of two settings (standing for two policies) over three seeds
    path = write_trace(tmp_path / "t.jsonl", bursty())
    seeds = [0, 1, 2]
    tight = _reports(path, seeds, target_time=600.0)
    loose = _reports(path, seeds, target_time=3600.0)
    # WHEN summarised
    summary = over_seeds(tight, loose)
    # THEN each figure is the median over seeds, and the ratio pairs runs of the same seed
    costs = sorted(float(r["cost"]) for r in tight)  # type: ignore[arg-type]
    assert summary["shoal"]["cost"] == costs[1]
    assert summary["toil"]["wait_p95_seconds"] == sorted(float(r["wait_p95_seconds"]) for r in loose)[1]  # type: ignore[arg-type]
    ratios = sorted(float(a["cost"]) / float(b["cost"]) for a, b in zip(tight, loose, strict=True))  # type: ignore[arg-type]
    assert summary["shoal"]["cost_over_toil"] == ratios[1]
    assert summary["shoal"]["cheaper_seeds"] == sum(r < 1.0 for r in ratios)
    assert 0 <= summary["shoal"]["p95_within_toil_seeds"] <= len(seeds)


def test_a_seed_missing_on_one_side_is_refused() -> None:
    with pytest.raises(ValueError, match="one report per seed"):
        over_seeds([{"cost": 1.0}], [])


def test_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert median([5.0, 1.0, 3.0]) == 3.0


@pytest.mark.parametrize("text", ["0,x", ",", ""])
def test_bad_seeds_are_named_in_the_error(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
        parse_seeds(text)


def test_toil_at_equal_waits_is_the_cheapest_target_that_waits_no_longer(tmp_path: Path) -> None:
    # GIVEN real medians of one policy at three targets (a ladder) and of a reference at a middle target
    path = write_trace(tmp_path / "t.jsonl", bursty())
    seeds = [0, 1, 2]
    reference = over_seeds(_reports(path, seeds, target_time=1200.0), _reports(path, seeds, target_time=1200.0))
    ladder = {t: over_seeds(_reports(path, seeds, target_time=t), _reports(path, seeds))["shoal"]
              for t in (300.0, 1200.0, 3600.0)}  # fmt: skip
    # WHEN the cheapest entry that waits no longer is looked for
    match = waits_no_worse(reference["shoal"], ladder)
    # THEN it waits no longer (p50 and p95), and every cheaper entry waits longer somewhere
    assert match is not None
    target, figures = match
    mine = reference["shoal"]
    assert figures["wait_p50_seconds"] <= mine["wait_p50_seconds"]
    assert figures["wait_p95_seconds"] <= mine["wait_p95_seconds"]
    for other in ladder.values():
        if other["cost"] < figures["cost"]:
            assert other["wait_p50_seconds"] > mine["wait_p50_seconds"] or other["wait_p95_seconds"] > mine[
                "wait_p95_seconds"]  # fmt: skip
    assert ladder[3600.0]["cost"] < figures["cost"]  # the loosest is cheaper, and waits longer: not the match
    assert target == 1200.0


def test_no_target_waits_no_longer_gives_none() -> None:
    ladder = {1800.0: {"cost": 1.0, "wait_p50_seconds": 10.0, "wait_p95_seconds": 30.0}}
    assert waits_no_worse({"cost": 2.0, "wait_p50_seconds": 9.0, "wait_p95_seconds": 30.0}, ladder) is None
    assert waits_no_worse({"cost": 2.0, "wait_p50_seconds": 9.0, "wait_p95_seconds": 30.0}, ladder, WAITS["p95"])
    assert waits_no_worse({"cost": 2.0, "wait_p50_seconds": 10.0, "wait_p95_seconds": 29.0}, ladder) is None
    assert waits_no_worse({"cost": 2.0, "wait_p50_seconds": 10.0, "wait_p95_seconds": 30.0}, ladder) == (
        1800.0, ladder[1800.0])  # fmt: skip


@pytest.mark.parametrize("text", ["x", "0", "1200,-5", ""])
def test_bad_toil_targets_are_named_in_the_error(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
        parse_targets(text)


def _without_timings(rows: object) -> object:
    """The reports as written, less what a run's own seconds are."""
    if isinstance(rows, dict):
        return {k: _without_timings(v) for k, v in rows.items() if k not in ("elapsed_seconds", "cpu_seconds")}
    if isinstance(rows, list):
        return [_without_timings(v) for v in rows]
    return rows


def test_runs_side_by_side_give_the_same_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a small trace  WHEN both policies run over two seeds one after another, and two at a time
    traces = tmp_path / "traces"
    traces.mkdir()
    write_trace(traces / "small.jsonl", bursty(60))
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    args = ["--traces", str(traces), "--seeds", "0,1", "--toil-targets", "900"]
    assert bench_simulate.main([*args, "--json", str(one)]) == 0
    assert bench_simulate.main([*args, "--json", str(two), "--jobs", "2"]) == 0
    # (and the process's logging is back as it was: the handlers' log tests run after it in one worker)
    assert logging.root.manager.disable == logging.NOTSET
    # THEN every report is the same, in the same order, and both printed a row per run
    assert _without_timings(json.loads(two.read_text())) == _without_timings(json.loads(one.read_text()))
    printed = capsys.readouterr().out
    assert printed.count("toil@900") == 4 and printed.count("small.jsonl           shoal") == 4


def test_a_bad_jobs_count_is_named() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="'0'"):
        bench_simulate._jobs("0")


# Learned average runtimes as the harness gave them to Toil in one round of nf-chipseq at 200 GiB, seed 0 (a minimal
# subset: 38 jobs of four shapes), and the bar's node types there.
_AVERAGES = [(130.9851008822402, 7838105600, 1.0, 34), (44.34782608695652, 5582618624, 1.0, 2),
             (309.55813953488376, 5690621952, 2.0, 1), (130.9851008822402, 4831838208, 1.0, 1)]  # fmt: skip


def test_a_round_toils_packing_cannot_finish_is_packed_again_in_whole_seconds(tmp_path: Path) -> None:
    from toil.provisioners.clusterScaler import binPacking

    from shared.domain.settings import ClusterSettings
    from shared.domain.units import GiB

    # GIVEN Toil's scaler in the harness with the bar's node types and 200 GiB root volumes, and that round's jobs
    settings_ = ClusterSettings(name="bench", node_types=bench_simulate.NODE_TYPES, node_storage=200 * GiB).validate()
    trace = read_trace(write_trace(tmp_path / "t.jsonl", bursty(3)))
    sim = bench_simulate.ToilSimulation(trace, SimOptions(settings=settings_))
    toil, scaler = sim.toil, sim.scaler
    jobs = [toil.Shape(w, memory, cores, 10 * GiB, True) for w, memory, cores, n in _AVERAGES for _ in range(n)]
    # (Toil 9.6's own packing of them, as they are, fails its assertion)
    with pytest.raises(AssertionError):
        binPacking(scaler.node_shapes_after_overhead, jobs, scaler.targetTime)
    # WHEN the harness estimates the round
    estimates = sim._estimate(jobs, dict.fromkeys(scaler.nodeShapeToType, 0))
    # THEN it is packed in whole seconds, counted, and wants nodes; a round that packs as it is is not counted
    assert sim.rounds_in_whole_seconds == 1 and sum(estimates.values()) > 0
    assert bench_simulate.whole_seconds(toil, jobs[0]).wallTime == 131
    sim._estimate(jobs[:1], dict.fromkeys(scaler.nodeShapeToType, 0))
    assert sim.rounds_in_whole_seconds == 1

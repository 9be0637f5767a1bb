"""``benchmarks/bench_simulate.py --seeds``: the median row and the per-seed cost ratio are worked out from the
simulator's own reports, seed by seed (a policy change is judged over seeds, not on one seed's figures)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from benchmarks.bench_simulate import median, over_seeds, parse_seeds
from shared.sim.engine import SimOptions, simulate
from shared.sim.trace import read_trace
from tests.unit.test_simulate import bursty, settings, write_trace


def _reports(path: Path, seeds: list[int], **overrides: object) -> list[dict[str, object]]:
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

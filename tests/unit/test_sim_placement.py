"""The simulator shows Spot Placement Scores acting (issue 15): the scores go into the real ``decide``, which
launches spot nodes in the zone they rank best, and the report says where nodes went and why. Through the
real CLI too, where a bad score is a one-line error with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.domain.scaling import offers_for
from shared.domain.settings import ClusterSettings
from shared.sim.engine import SimOptions, simulate
from shared.sim.placement import parse_scores, zones_named
from shared.sim.trace import read_trace
from tests.unit.test_simulate import ROOT, trace_line, write_trace

NODE_TYPES = "c5.4xlarge/c5a.4xlarge:0.30,m5.2xlarge"


def burst(path: Path) -> Path:
    # 20 half-hour 4-core spot-able jobs at once: a few c5.4xlarge spot nodes
    return write_trace(path, [trace_line(i, 0.0, cores=4, memory_gib=4, wall=1800, spot=True) for i in range(20)])


def run(tmp_path: Path, scores: str, capacity_errors: dict[str, float] | None = None) -> dict[str, object]:
    settings = ClusterSettings(name="sim", node_types=NODE_TYPES).validate()
    parsed = parse_scores(scores, offers_for(settings), settings.region)
    errors = capacity_errors or {}
    options = SimOptions(
        settings=settings, placement_scores=parsed, capacity_errors=errors, zones=zones_named(parsed, errors)
    )
    return simulate(read_trace(burst(tmp_path / "t.jsonl")), options).report


@pytest.mark.parametrize(
    ("scores", "best"),
    [("c5.4xlarge@us-west-2a=2,c5.4xlarge@us-west-2b=9", "us-west-2b"),
     ("c5.4xlarge@us-west-2a=9,c5.4xlarge@us-west-2b=2", "us-west-2a")],
)  # fmt: skip
def test_spot_nodes_launch_in_the_zone_with_the_best_score(tmp_path: Path, scores: str, best: str) -> None:
    report = run(tmp_path, scores)
    # THEN every spot node went to the best-scored zone, and the decision said why
    assert report["completed"] == report["jobs"] == 20 and report["run_twice"] == 0
    launches = report["launches_by_zone"]
    assert isinstance(launches, dict) and set(launches) == {best} and launches[best] > 0
    reason = str(report["placement_reason"])
    assert "Spot Placement Score" in reason and reason.index(best) < reason.index("then price")


def test_a_scaler_following_the_scores_avoids_the_zone_without_capacity(tmp_path: Path) -> None:
    # GIVEN zone a has no spot capacity for the class at all
    outage = {"c5.4xlarge@us-west-2a": 1.0, "c5a.4xlarge@us-west-2a": 1.0}
    right = run(tmp_path, "c5a.4xlarge@us-west-2a=1,c5a.4xlarge@us-west-2b=9", outage)
    wrong = run(tmp_path, "c5a.4xlarge@us-west-2a=9,c5a.4xlarge@us-west-2b=1", outage)
    # THEN scores that point at zone b are never refused; scores that point at a are, and the round falls back
    assert right["capacity_refusals"] == 0 and int(str(wrong["capacity_refusals"])) > 0
    for report in (right, wrong):
        assert report["launches_by_zone"] == {"us-west-2b": report["launches_by_zone"]["us-west-2b"]}  # type: ignore[index]
        assert report["completed"] == 20 and report["lost"] == 0


def test_without_zones_the_report_is_as_before(tmp_path: Path) -> None:
    report = run(tmp_path, "")
    assert "launches_by_zone" not in report and "placement_reason" not in report


def test_the_cli_simulates_scores_and_refuses_a_bad_one_in_one_line(tmp_path: Path) -> None:
    trace = burst(tmp_path / "t.jsonl")
    base = [sys.executable, "-m", "shared.cli.main", "simulate", "--trace", str(trace), "--node-types", NODE_TYPES]
    scores = "c5.4xlarge@us-west-2a=3,c5.4xlarge@us-west-2b=8"
    ok = subprocess.run(
        [*base, "--placement-scores", scores, "--json"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0, ok.stderr
    assert set(json.loads(ok.stdout)["launches_by_zone"]) == {"us-west-2b"}
    out = tmp_path / "report.json"
    for bad, needle in (
        ("c5.4xlarge=3", "TYPE@ZONE=SCORE"),
        ("c5.4xlarge@us-west-2a=11", "1 to 10"),
        ("m5.2xlarge@us-west-2a=5", "not a spot node type"),
        ("c5.4xlarge@eu-west-1a=5", "not a zone of us-west-2"),
    ):
        result = subprocess.run(
            [*base, "--placement-scores", bad, "--report", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and needle in result.stderr, result.stderr
        assert "--placement-scores" in result.stderr and not out.exists()

"""``shoal plan`` as users and scripts run it: a real subprocess, its exit status, stdout and files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.resources import Resources
from shared.domain.units import GiB
from tests.unit.plan_checker import check_feasible

ROOT = Path(__file__).resolve().parents[2]
NODE_TYPES = "c5.4xlarge/c5a.4xlarge:0.42,m5.2xlarge,m5.4xlarge,r5.2xlarge,g4dn.xlarge"


def shoal(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def write_jobs(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


JOB = '{"id": "j%d", "cores": 2, "memory": 4294967296, "disk": "10GiB", "preemptible": true, "wall_time": 600}'


def test_json_contract_and_feasible_assignments(tmp_path: Path) -> None:
    # GIVEN the example queue shipped in examples/
    out = tmp_path / "assignments.jsonl"
    # WHEN planned with --json and --assignments
    result = shoal("plan", "--jobs", "examples/jobs.jsonl", "--node-types", NODE_TYPES, "--json", "--assignments", out)
    # THEN one JSON object with the documented keys
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"nodes", "hourly_cost", "unplaceable", "jobs", "shapes", "elapsed_seconds"} <= report.keys()
    assert report["jobs"] == 301
    for node in report["nodes"]:
        assert {"node_type", "spot", "count", "hourly_price", "usable"} <= node.keys()
        assert set(node["usable"]) == {"cores", "memory", "disk", "accelerators"}
    assert report["hourly_cost"] == pytest.approx(sum(n["count"] * n["hourly_price"] for n in report["nodes"]))
    # AND the one job too big for any node is named with its reason
    assert report["unplaceable"] == [
        {
            "id": "assembly-huge",
            "reason": "needs 64 cores; the largest offered node on demand (the job is not preemptible), "
            "m5.4xlarge, has 16 cores",
        }
    ]
    # AND the assignments replay as feasible: every placed job once, in time, within capacity
    jobs = {j["id"]: j for j in map(json.loads, (ROOT / "examples/jobs.jsonl").read_text().splitlines())}
    offers = {
        (n["node_type"], n["spot"]): Offer(
            name=n["node_type"],
            instance_types=tuple(n["instance_types"]),
            spot=n["spot"],
            usable=Resources(**n["usable"]),
            hourly_price=n["hourly_price"],
        )
        for n in report["nodes"]
    }
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 300 and len({a["id"] for a in lines}) == 300

    def placed() -> object:
        from shared.domain.jobs import parse_job

        for a in lines:
            job = parse_job(jobs[a["id"]])
            yield job.shape, offers[(a["node_type"], a["spot"])], a["node"], a["start"]

    counts = {o.key: n["count"] for n in report["nodes"] for o in [offers[(n["node_type"], n["spot"])]]}
    assert check_feasible(placed(), counts, 1800) == 300  # type: ignore[arg-type]


def test_readable_table_has_reasons() -> None:
    result = shoal("plan", "--jobs", "examples/jobs.jsonl", "--node-types", NODE_TYPES)
    assert result.returncode == 0
    assert "per hour" in result.stdout and "why:" in result.stdout
    assert "assembly-huge: needs 64 cores" in result.stdout


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ((JOB % 1, "{not json"), "jobs.jsonl:2: malformed JSON"),
        ((JOB % 1, JOB.replace('"memory": 4294967296, ', "") % 2), "jobs.jsonl:2: missing field 'memory'"),
        ((JOB.replace("4294967296", "-4") % 1,), "jobs.jsonl:1: field 'memory' must not be negative"),
        ((JOB.replace('"10GiB"', '"10 GiBs"') % 1,), "jobs.jsonl:1: field 'disk': unknown unit 'gibs'"),
        ((JOB % 1, JOB % 1), "jobs.jsonl:2: job id 'j1' was already used on line 1"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path: Path, lines: tuple[str, ...], message: str) -> None:
    # GIVEN a bad jobs file and an assignments file from an earlier run
    jobs = write_jobs(tmp_path / "jobs.jsonl", *lines)
    out = tmp_path / "assignments.jsonl"
    out.write_text("earlier\n")
    # WHEN planned
    result = shoal("plan", "--jobs", jobs, "--node-types", "m5.2xlarge", "--assignments", out)
    # THEN exit 2, one line naming the line and field, and the earlier file untouched
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert out.read_text() == "earlier\n"
    assert result.stdout == ""


def test_unknown_instance_type_suggests_close_matches(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", JOB % 1)
    result = shoal("plan", "--jobs", jobs, "--node-types", "m5.2xlarg")
    assert result.returncode == 2
    assert "unknown instance type 'm5.2xlarg'; did you mean m5.2xlarge" in result.stderr


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--target-time", "soon", "--target-time"),
        ("--node-storage", "5", "too small"),
        ("--max-nodes", "a", "--max-nodes"),
    ],
)
def test_bad_flags(tmp_path: Path, flag: str, value: str, message: str) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", JOB % 1)
    result = shoal("plan", "--jobs", jobs, "--node-types", "m5.2xlarge", flag, value)
    assert result.returncode == 2 and message in result.stderr


def test_a_plan_grows_root_volumes_as_a_round_does(tmp_path: Path) -> None:
    # GIVEN 64 one-core jobs of 10 GiB disk each: at 50 GiB a c5.4xlarge holds four, by its cores sixteen
    # (an hour each, longer than the target: one job after another would start too late)
    small = '{"id": "s%d", "cores": 1, "memory": "1GiB", "disk": "10GiB", "preemptible": true, "wall_time": 3600}'
    jobs = write_jobs(tmp_path / "jobs.jsonl", *(small % i for i in range(64)))

    def planned(*flags: str) -> dict[str, Any]:
        result = shoal("plan", "--jobs", jobs, "--node-types", "c5.4xlarge:0.42", "--json", *flags)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    # WHEN planned as a round plans it, and with every volume kept at --node-storage
    grown, kept = planned(), planned("--max-node-storage", "50")
    # THEN the round's volume holds sixteen jobs (16 x 10 GiB + the system's 8, in 10 GiB steps), and four nodes
    # with it cost less than the sixteen with 50 GiB ones
    [node] = grown["nodes"]
    assert (node["count"], node["node_storage"], node["usable"]["disk"]) == (4, 170 * GiB, 162 * GiB)
    assert [(n["count"], n["node_storage"]) for n in kept["nodes"]] == [(16, 50 * GiB)]
    assert grown["hourly_cost"] < kept["hourly_cost"]


def test_missing_jobs_file(tmp_path: Path) -> None:
    result = shoal("plan", "--jobs", tmp_path / "nope.jsonl", "--node-types", "m5.2xlarge")
    assert result.returncode == 2 and "cannot read the jobs file" in result.stderr


def test_shape_count_is_distinct_shapes(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", *(JOB % i for i in range(50)))
    report = json.loads(shoal("plan", "--jobs", jobs, "--node-types", "m5.2xlarge", "--json").stdout)
    assert (report["jobs"], report["shapes"]) == (50, 1)


_ = Shape  # the checker's vocabulary, imported for readers of this file


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    # GIVEN a reader that goes away before shoal plan writes (as `shoal plan ... | head -0` does)
    jobs = write_jobs(tmp_path / "jobs.jsonl", *(JOB % i for i in range(50)))
    child = subprocess.Popen(
        [sys.executable, "-m", "shared.cli.main", "plan", "--jobs", str(jobs), "--node-types", "m5.2xlarge"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    # WHEN it writes its table THEN it ends as `cat` does on a closed pipe (141), with no traceback
    stderr = child.stderr.read().decode()
    assert child.wait() == 141
    assert stderr == ""


def _continuous_queue(path: Path, count: int) -> Path:
    """Jobs whose memory and disk vary continuously, a tenth of them too big for any node."""
    lines = []
    for i in range(count):
        too_big = i % 10 == 0
        job = {
            "id": f"c{i}",
            "cores": 128 if too_big else 1 + i % 4,
            "memory": (1 + i % 97) * 2**26 + i,
            "disk": (1 + i % 29) * 2**30 + 7 * i,
            "preemptible": i % 2 == 0,
            "wall_time": 60 * (1 + i % 120),
        }
        lines.append(json.dumps(job))
    return write_jobs(path, *lines)


def test_a_continuous_queue_keeps_the_json_contract_and_a_readable_table(tmp_path: Path) -> None:
    # GIVEN 2,000 jobs in 2,000 shapes, 200 of them needing 128 cores
    jobs = _continuous_queue(tmp_path / "jobs.jsonl", 2000)
    out = tmp_path / "assignments.jsonl"
    types = "c5.large,c5.4xlarge/c5a.4xlarge:0.30,r5.2xlarge,m5.24xlarge"
    # WHEN planned as JSON, with assignments
    result = shoal("plan", "--jobs", jobs, "--node-types", types, "--json", "--assignments", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # THEN the contract holds: every too-big job named with its one-line reason, every other one assigned
    assert (report["jobs"], report["shapes"]) == (2000, 2000)
    assert len(report["unplaceable"]) == 200
    assert all("needs 128 cores" in u["reason"] for u in report["unplaceable"])
    assigned = [json.loads(line) for line in out.read_text().splitlines()]
    assert len({a["id"] for a in assigned}) == len(assigned) == 1800
    assert report["hourly_cost"] == pytest.approx(sum(n["count"] * n["hourly_price"] for n in report["nodes"]))
    # AND the table explains in a few lines, not one per shape
    table = shoal("plan", "--jobs", jobs, "--node-types", types).stdout
    why = table.split("why:")[1].split("jobs cannot run")[0]
    assert 0 < why.count("\n  - ") <= 24
    assert "200 jobs cannot run on any offered node:" in table
    assert "200 jobs in 200 shapes (128 cores" in table and "needs more cores than the largest offered node" in table

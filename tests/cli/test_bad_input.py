"""Issue 13: every bad input the hostile-user pass found answers with one line, exit status 2, nothing written.

Each case ended in a traceback (or a wrong answer) before. The commands run in-process through ``main``, the
same entry point as the ``shoal`` script; the few properties only a real process shows (a closed pipe,
argparse's own errors) run ``python -m shared.cli.main``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"id": "ok", "cores": 1, "memory": "1GiB", "disk": "1GiB", "wall_time": 60}
NODE_TYPES = "m5.large,c5.large"


def job_line(**change: object) -> str:
    return json.dumps({**GOOD, **change})


def run_cli(argv: list[str], cwd: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    before = _files(cwd)
    code = run_main(argv)
    captured = capsys.readouterr()
    assert _files(cwd) == before, "a refused command wrote files"
    return code, captured.out, captured.err


def run_main(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exit_:  # argparse's own errors exit from parse_args
        return int(str(exit_.code))


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def assert_one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


# ---- the job format (shoal plan reads it; submit and demo share the reader) ------------------------------


JOB_FILES = {
    "cores-400-digits": ('{"id":"a","cores":1' + "0" * 400 + ',"memory":1,"disk":1,"wall_time":60}', "'cores'"),
    "memory-400-digits": ('{"id":"a","cores":1,"memory":1' + "0" * 400 + ',"disk":1,"wall_time":60}', "'memory'"),
    "memory-1e308TiB": (job_line(memory="1e308TiB"), "'memory'"),
    "cores-subnormal": (job_line(cores=1e-320), "'cores'"),
    "id-lone-surrogate": ('{"id":"\\ud800","cores":1000,"memory":1,"disk":1,"wall_time":60}', "'id'"),
    "id-3000-chars": (job_line(id="x" * 3000), "at most 512"),
    "id-with-newline": (job_line(id="a\nb"), "control character"),
    "timeout-0": (job_line(timeout=0), "'timeout'"),
    "wall-time-1e308d": (job_line(wall_time="1e308d"), "'wall_time'"),
    "max-attempts-huge": (job_line(max_attempts=10**30), "'max_attempts'"),
    "digits-beyond-4300": ('{"id":"a","cores":1' + "0" * 5000 + ',"memory":1,"disk":1,"wall_time":60}', ":1:"),
    # One object over lines 1-2, then two on line 3: three lines, three objects, accepted as three jobs before.
    "split-then-two-on-a-line": (
        '{"id":"a","cores":1,"memory":1\n"disk":1,"wall_time":60}\n' + job_line(id="b") + "," + job_line(id="c"),
        ":1: malformed JSON",
    ),
    "two-objects-on-a-line": (job_line(id="a") + "\n" + job_line(id="b") + "," + job_line(id="c"), ":2: malformed"),
    "unterminated-string": ('{"id": "a', "starting at column 8"),
}


@pytest.mark.parametrize("case", JOB_FILES, ids=list(JOB_FILES))
def test_a_bad_job_is_one_line_naming_the_file_and_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a jobs file with one hostile line, and an --assignments path
    text, needle = JOB_FILES[case]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(text + "\n")
    # WHEN planned
    code, out, err = run_cli(
        ["plan", "--jobs", str(jobs), "--node-types", NODE_TYPES, "--assignments", str(tmp_path / "a.jsonl")],
        tmp_path,
        capsys,
    )
    # THEN one line naming the file and what to fix, exit 2, and no assignments file
    assert_one_line(code, err, f"{jobs}:", needle)
    assert "at at" not in err and out == ""


def test_a_binary_jobs_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(b'{"id": "a"}\n\x7fELF\x02\x01\x01\x00\xd0\xff\xfe')
    code, _, err = run_cli(["plan", "--jobs", str(jobs), "--node-types", NODE_TYPES], tmp_path, capsys)
    assert_one_line(code, err, f"{jobs}:2", "not UTF-8")


def test_the_line_an_error_names_is_the_line_it_is_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an object split over lines 1-2, then on line 3 a bad job and a good one (the joined decode accepted
    # the split object and named the bad job's line as 2)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        '{"id":"a","cores":1,"memory":1\n"disk":1,"wall_time":60}\n' + job_line(id="b", cores=-1) + "," + job_line()
    )
    code, _, err = run_cli(["plan", "--jobs", str(jobs), "--node-types", NODE_TYPES], tmp_path, capsys)
    assert_one_line(code, err, f"{jobs}:1: malformed JSON")
    assert f"{jobs}:2" not in err


# ---- flags ------------------------------------------------------------------------------------------------


PLAN_FLAGS = {
    "target-time-1e308d": (["--target-time", "1e308d"], "--target-time"),
    "node-storage-nan": (["--node-storage", "nan"], "--node-storage"),
    "node-storage-inf": (["--node-storage", "inf"], "--node-storage"),
    "node-storage-1e400": (["--node-storage", "1e400"], "--node-storage"),
    "max-node-storage-nan": (["--max-node-storage", "nan"], "--max-node-storage"),
    "max-node-storage-past-gp3": (["--max-node-storage", "16385"], "--max-node-storage"),
    "min-nodes-leading-comma": (["--min-nodes", ",3"], "--min-nodes"),
    "max-nodes-leading-comma": (["--max-nodes", ",0"], "--max-nodes"),
    "min-nodes-negative": (["--min-nodes", "-1"], "--min-nodes"),
    "min-nodes-fraction": (["--min-nodes", "1.7"], "--min-nodes"),
    "region-unknown": (["--region", "mars-1"], "--region"),
}


@pytest.mark.parametrize("case", PLAN_FLAGS, ids=list(PLAN_FLAGS))
def test_a_bad_plan_flag_is_one_line_naming_it(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags, needle = PLAN_FLAGS[case]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(job_line() + "\n")
    code, _, err = run_cli(["plan", "--jobs", str(jobs), "--node-types", NODE_TYPES, *flags], tmp_path, capsys)
    assert_one_line(code, err, needle)
    assert "2147483648" not in err  # "--min-nodes -1" used to show maxNodes as 2**31


def test_min_nodes_are_not_shifted_onto_another_node_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN --min-nodes ,3 (meant: 0 m5.large, 3 c5.large); the empty entry used to be dropped, buying 3 m5.large
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(job_line() + "\n")
    code, out, err = run_cli(
        ["plan", "--jobs", str(jobs), "--node-types", NODE_TYPES, "--min-nodes", ",3", "--json"], tmp_path, capsys
    )
    # THEN it is refused rather than guessed
    assert_one_line(code, err, "empty entry")
    assert out == ""


def test_assignments_under_a_file_says_which_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(job_line() + "\n")
    code, _, err = run_cli(
        ["plan", "--jobs", str(jobs), "--node-types", NODE_TYPES, "--assignments", f"{jobs}/x"], tmp_path, capsys
    )
    assert_one_line(code, err, f"{jobs} is a file, not a directory")
    assert "File exists" not in err


def test_graph_out_where_nothing_can_be_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a template with one state machine, and --out under /proc (no directory can be made there)
    template = tmp_path / "t.json"
    definition = {"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}
    template.write_text(
        json.dumps(
            {
                "Resources": {
                    "M": {
                        "Type": "AWS::StepFunctions::StateMachine",
                        "Properties": {"DefinitionString": json.dumps(definition)},
                    }
                }
            }
        )
    )
    code, _, err = run_cli(["graph", "--template", str(template), "--out", "/proc/nope"], tmp_path, capsys)
    assert_one_line(code, err, "--out /proc/nope")


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials that work nowhere: a launch-cluster that got as far as AWS would fail with exit 1, not 2."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")


LAUNCH_FLAGS = {
    "node-storage-inf": (["--nodeTypes", "m5.large", "--nodeStorage", "inf"], "--nodeStorage"),
    "node-storage-inf-no-types": (["--nodeStorage", "inf"], "--nodeStorage"),
    "poll-1e308d": (["--nodeTypes", "m5.large", "--poll", "1e308d"], "--poll"),
    "zone-outside-region": (["--nodeTypes", "m5.large", "--zone", "eu-west-1a"], "--zone"),
    "workers-leading-comma": (["--nodeTypes", "m5.large,c5.large", "--workers", ",3"], "--workers"),
    "name-with-newline": (["--nodeTypes", "m5.large"], "NAME"),
}


@pytest.mark.parametrize("case", LAUNCH_FLAGS, ids=list(LAUNCH_FLAGS))
@pytest.mark.usefixtures("no_aws")
def test_a_bad_launch_flag_is_refused_before_aws_is_asked(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags, needle = LAUNCH_FLAGS[case]
    name = "demo\n" if case == "name-with-newline" else "demo"
    code, _, err = run_cli(["launch-cluster", name, "--region", "us-west-2", *flags], tmp_path, capsys)
    assert_one_line(code, err, needle)


DEMO_FLAGS = {
    "jobs-beyond-the-workload": (["--jobs", "2000"], "--jobs 2000 is more than the 2 jobs"),
    "bursts-1000000": (["--bursts", "1000000"], "--bursts"),
    "max-nodes-all-zero": (["--max-nodes", "0,0,0"], "no job could ever run"),
    "max-nodes-leading-comma": (["--max-nodes", ",8"], "--max-nodes"),
    "min-nodes-leading-comma": (["--min-nodes", ",2"], "--min-nodes"),
    "speed-nan": (["--speed", "nan"], "--speed"),
    "time-limit-inf": (["--time-limit", "inf"], "--time-limit"),
    "jobs-not-a-number": (["--jobs", "many"], "--jobs"),
}


@pytest.mark.parametrize("case", DEMO_FLAGS, ids=list(DEMO_FLAGS))
def test_a_bad_demo_flag_is_refused_before_anything_is_deployed(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags, needle = DEMO_FLAGS[case]
    workload = tmp_path / "w.jsonl"
    workload.write_text(job_line(id="a") + "\n" + job_line(id="b") + "\n")
    code = run_main(["demo", "--workload", str(workload), "--out", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err
    assert_one_line(code, err, needle)
    assert not (tmp_path / "out").exists()


def test_a_binary_demo_workload_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workload = tmp_path / "w.jsonl"
    workload.write_bytes(bytes(range(256)))
    code = cli.main(["demo", "--workload", str(workload), "--out", str(tmp_path / "out")])
    assert_one_line(code, capsys.readouterr().err, str(workload), "not UTF-8")


# ---- what only a real process shows --------------------------------------------------------------------


def shoal(*args: str, stdout: int = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "shared.cli.main", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )


def test_a_closed_pipe_ends_quietly() -> None:
    # GIVEN `shoal node-types | head -1`: the reader goes away after one line
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        f"{sys.executable} -m shared.cli.main node-types | head -1 >/dev/null",
        shell=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    # THEN no BrokenPipeError traceback
    assert result.stderr == ""


def test_argparse_errors_are_one_line_too() -> None:
    result = shoal("plan", "--jobs", "x.jsonl", "--node-types", "m5.large", "--bogus")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--bogus" in result.stderr

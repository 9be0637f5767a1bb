"""Issue 13 item 10, end to end: a demo whose every job fails says so and exits 1.

Before, the demo exited 0 with "0 completed, 0 lost" and a p95 of "0.0 min" when every job had exited
with status 3. This runs the real demo (local cloud, real agents running the commands) and reads what the
demo itself printed and wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.cli import main as cli

JOBS = 4


@pytest.mark.slow
def test_a_demo_whose_every_job_fails_reports_them_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN four one-attempt jobs whose command exits 3
    workload = tmp_path / "fail.jsonl"
    workload.write_text(
        "".join(
            json.dumps({"id": f"fail-{i}", "cores": 1, "memory": "1GiB", "disk": "1GiB", "wall_time": "1m",
                        "max_attempts": 1, "command": "exit 3"}) + "\n"
            for i in range(JOBS)
        )
    )  # fmt: skip
    # WHEN the demo runs them for real
    code = cli.main(
        ["demo", "--workload", str(workload), "--real", "--bursts", "1", "--speed", "120", "--quiet",
         "--node-types", "c5.large", "--out", str(tmp_path / "out"), "--time-limit", "240"]
    )  # fmt: skip
    out, err = capsys.readouterr()

    # THEN it fails, and the summary and the report count the failures instead of hiding them
    assert code == 1, err
    assert f"{JOBS} submitted, 0 completed, {JOBS} failed, 0 lost" in out
    assert "queue wait: none measured (no job completed)" in out
    assert f"{JOBS} jobs failed" in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["jobs_failed"] == JOBS
    assert report["jobs_completed"] == 0
    assert report["resources_left_after_teardown"] == 0

"""Issue 13 item 6: ``--assignments`` writes through a symlink, honours the umask, and stays all-or-nothing."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli.output_file import OutputFileError, write_atomically

ROOT = Path(__file__).resolve().parents[2]
JOB = '{"id": "j1", "cores": 1, "memory": "1GiB", "disk": "1GiB", "wall_time": 60}\n'


def plan(tmp_path: Path, assignments: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(JOB)
    code = (
        f"import os, sys; os.umask({umask:#o}); from shared.cli.main import main; "
        f"sys.exit(main(['plan', '--jobs', {str(jobs)!r}, '--node-types', 'm5.large', '--assignments', "
        f"{assignments!r}]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def test_a_symlink_stays_a_link_and_its_target_gets_the_lines(tmp_path: Path) -> None:
    # GIVEN --assignments names a symlink to a file elsewhere
    target = tmp_path / "elsewhere" / "real.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    # WHEN planned
    result = plan(tmp_path, str(link))
    # THEN the link is still a link (it was replaced by a regular file before) and the target holds the plan
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["id"] == "j1"
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_new_file_gets_the_umask_not_0600(tmp_path: Path) -> None:
    result = plan(tmp_path, str(tmp_path / "a.jsonl"), umask=0o027)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "a.jsonl").stat().st_mode) == 0o640


def test_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    existing = tmp_path / "a.jsonl"
    existing.write_text("old\n")
    existing.chmod(0o604)
    assert plan(tmp_path, str(existing)).returncode == 0
    assert stat.S_IMODE(existing.stat().st_mode) == 0o604 and "j1" in existing.read_text()


def test_a_device_behind_a_link_is_written_in_place_not_replaced(tmp_path: Path) -> None:
    # GIVEN a FIFO behind a link (as /dev/stdout is a link to a pipe or a tty); replacing it was the bug
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "out.jsonl"
    link.symlink_to(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    # WHEN written
    write_atomically("--assignments", link, ['{"id":"j1"}'])
    # THEN the reader got the line, and the FIFO is still a FIFO
    out, _ = reader.communicate(timeout=10)
    assert out == '{"id":"j1"}\n'
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and link.is_symlink()


def test_nothing_is_written_when_a_line_cannot_be_encoded(tmp_path: Path) -> None:
    target = tmp_path / "a.jsonl"
    target.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomically("--assignments", target, ["fine", "\ud800"])
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl"]


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputFileError, match="it is a directory"):
        write_atomically("--assignments", tmp_path, ["x"])

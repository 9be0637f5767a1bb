"""A job's whole session ends with it: work it moved into a process group of its own (as Toil's
``_toil_contained_executor`` does) is stopped too, not only the job's own process group."""

from __future__ import annotations

import os
import shlex
import sys
import threading
import time
from pathlib import Path

from shared.domain.jobs import parse_job
from shared.worker.runner import JobProcess


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(path: Path, seconds: float = 20.0) -> str:
    deadline = time.monotonic() + seconds
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text().strip()


def test_cancel_ends_work_the_job_moved_to_another_process_group(tmp_path: Path) -> None:
    # GIVEN a job that starts a long-running child which moves itself into a process group of its own
    pid_file = tmp_path / "moved.pid"
    child = f"import os, time; os.setpgid(0, 0); open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(300)"
    command = f"{sys.executable} -c {shlex.quote(child)} & wait"
    job = parse_job({"id": "mover", "cores": 1, "memory": 0, "disk": 0, "wall_time": 1, "command": command})
    process = JobProcess(job, attempt=1, work_root=tmp_path / "work", enforce_memory=False, kill_grace=0.5)
    results = []
    runner = threading.Thread(target=lambda: results.append(process.run()))
    runner.start()
    moved = int(_wait_for(pid_file))
    assert os.getpgid(moved) == moved != os.getsid(moved)  # its own group, still in the job's session

    # WHEN the agent cancels the job
    process.cancel()
    runner.join(timeout=20)

    # THEN the job ended as cancelled, and the moved sleep is gone too
    assert results and results[0].cancelled
    deadline = time.monotonic() + 5
    while _alive(moved) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(moved)

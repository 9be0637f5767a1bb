"""The COMMAND of the kill and restart test, run by ``shoal local run`` against the local cluster.

1. Start ``holders.py`` on ``--batchSystem shoal``; once two of its jobs have started, kill the
   workflow as a user would (SIGTERM to the leader), and wait for the leader to exit.
2. Watch the killed jobs' processes (their pids are in the start markers) until none is alive.
3. Release the holders and run the workflow again with ``--restart``: it must finish.

What happened goes to ``WORKDIR/driver.json`` for the test to judge; the exit status is the restart's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

WAIT_FOR_STARTS = 300.0  # real seconds
WAIT_FOR_STOP = 60.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def started_pids(markers: Path) -> list[int]:
    return [int(p.name.rsplit("-", 1)[1]) for p in markers.glob("started-*")]


def main() -> int:
    workdir = Path(sys.argv[1])
    markers = workdir / "markers"
    markers.mkdir(parents=True, exist_ok=True)
    workflow = [sys.executable, str(Path(__file__).with_name("holders.py")), f"file:{workdir / 'store'}",
                "--batchSystem", "shoal", "--markers", str(markers), "--out", str(workdir / "out.txt"),
                "--logLevel", "WARNING"]  # fmt: skip
    leader = subprocess.Popen(workflow)
    deadline = time.monotonic() + WAIT_FOR_STARTS
    while len(started_pids(markers)) < 2 and time.monotonic() < deadline and leader.poll() is None:
        time.sleep(0.2)
    killed_pids = started_pids(markers)
    leader.send_signal(signal.SIGTERM)
    killed_status = leader.wait(timeout=120)
    stop_started = time.monotonic()
    while any(alive(pid) for pid in killed_pids) and time.monotonic() - stop_started < WAIT_FOR_STOP:
        time.sleep(0.2)
    report = {
        "killed_pids": killed_pids,
        "killed_status": killed_status,
        "left_running": [pid for pid in killed_pids if alive(pid)],
        "seconds_to_stop": round(time.monotonic() - stop_started, 1),
    }
    (markers / "release").touch()
    restart = subprocess.run([*workflow, "--restart"], check=False)
    report["restart_status"] = restart.returncode
    report["done_by_killed"] = [p.name for p in markers.glob("done-*") if int(p.name.rsplit("-", 1)[1]) in killed_pids]
    (workdir / "driver.json").write_text(json.dumps(report), encoding="utf-8")
    return restart.returncode


if __name__ == "__main__":
    sys.exit(main())

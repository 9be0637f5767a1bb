"""Finding and ending every process of a job, even those that left its session: a token in the environment.

Every process a job starts carries ``SHOAL_JOB_TOKEN=OWNER/NAME`` in its environment: the agent sets it
on the job's first process, and children inherit it through ``fork``/``exec``, ``setsid``, ``nohup`` and
daemonizing alike. ``OWNER`` names the agent's node and work root (``owner_of``), ``NAME`` the one run.
Scanning ``/proc/*/environ`` then finds a job's whole tree (to end it with the job) and everything an
earlier agent of the same node left behind (to end it before its jobs run again).

Why this and not the alternatives:

- A process group or session is not enough: ``setsid`` leaves both, and the daemon outlives the job.
- A cgroup (v2) would hold every descendant, but creating one needs a writable, delegated cgroup tree.
  The appliance's agent runs as an unprivileged user (uid 10001) in a container whose ``/sys/fs/cgroup``
  is read-only, and the development machines have a cgroup v1 hybrid; neither can use it.
- ``PR_SET_CHILD_SUBREAPER`` keeps orphans as the agent's children, but only while that agent lives:
  after a ``kill -9`` the orphans go to init and a restarted agent cannot tell them apart. And every
  reparented child must then be reaped by the agent, which ``subprocess`` does not do.

The token works unprivileged (a process may read the environment of its own user's processes), survives
the agent's death, and costs one read per process on the machine per scan (a few milliseconds for a few
hundred processes); scans happen when a job ends, is cancelled, or an agent starts, never in a loop per
job. Its limit: a process that replaces its whole environment (``env -i``) leaves the tree. Signals go
through a pidfd opened before the token is checked again, so a recycled pid is never signalled.

Jobs that name an image run as sibling containers, outside this container's ``/proc``: those carry
``shoal.owner``/``shoal.token`` labels instead (``container_labels``) and are found with ``docker ps``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "SHOAL_JOB_TOKEN"
OWNER_LABEL = "shoal.owner"
TOKEN_LABEL = "shoal.token"
PROC = Path("/proc")
_NEEDLE = f"{TOKEN_VARIABLE}=".encode()
_POLL = 0.02  # seconds between scans while waiting for a tree to go
_PAUSE = threading.Event()  # never set: its wait() is an interruptible sleep

Match = Callable[[str], bool]


def owner_of(node_id: str, work_root: Path) -> str:
    """The token prefix shared by every job an agent of this node and work root starts."""
    digest = hashlib.sha256(f"{node_id}\0{work_root.resolve()}".encode()).hexdigest()
    return digest[:20]


def make_token(owner: str, name: str) -> str:
    return f"{owner}/{name}"


def exactly(token: str) -> Match:
    return lambda found: found == token


def owned_by(owner: str) -> Match:
    prefix = f"{owner}/"
    return lambda found: found.startswith(prefix)


def container_labels(token: str) -> dict[str, str]:
    return {OWNER_LABEL: token.split("/", 1)[0], TOKEN_LABEL: token}


def token_of(pid: int, proc: Path = PROC) -> str | None:
    """The job token in a process's environment; None when it has none or is gone (a zombie has none)."""
    try:
        data = (proc / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    for variable in data.split(b"\0"):
        if variable.startswith(_NEEDLE):
            return variable[len(_NEEDLE) :].decode("utf-8", errors="replace")
    return None


def scan(match: Match, proc: Path = PROC) -> dict[int, str]:
    """Every live process whose token matches: pid → token."""
    found: dict[int, str] = {}
    try:
        entries = list(os.scandir(proc))
    except OSError:  # pragma: no cover (no /proc: not Linux)
        return found
    for entry in entries:
        if entry.name.isdigit():
            token = token_of(int(entry.name), proc)
            if token is not None and match(token):
                found[int(entry.name)] = token
    return found


def signal_matching(match: Match, signum: signal.Signals, proc: Path = PROC) -> int:
    """Send ``signum`` to every live process whose token matches; how many were signalled."""
    sent = 0
    for pid in scan(match, proc):
        if _send(pid, match, signum, proc):
            sent += 1
    return sent


def end_matching(
    match: Match,
    *,
    grace: float,
    settle: float = 5.0,
    proc: Path = PROC,
    monotonic: Callable[[], float] = time.monotonic,
    pause: Callable[[float], object] = _PAUSE.wait,
) -> int:
    """SIGTERM every matching process, SIGKILL what is left after ``grace`` seconds, until none is left.

    Returns how many are still alive after ``settle`` more seconds of SIGKILL (0: the tree is gone).
    A process forked between a scan and the signals is found by the next scan.
    """
    if not signal_matching(match, signal.SIGTERM, proc):
        return 0
    deadline = monotonic() + grace
    while monotonic() < deadline:
        pause(_POLL)
        if not scan(match, proc):
            return 0
    deadline = monotonic() + settle
    while True:
        left = signal_matching(match, signal.SIGKILL, proc)
        if not left or monotonic() >= deadline:
            return left
        pause(_POLL)


def remove_containers(owner_or_token: str, *, label: str, docker: str, timeout: float = 30.0) -> int:
    """``docker rm -f`` every container with that label value; how many. Silent when docker is unusable."""
    try:
        listed = subprocess.run(
            [docker, "ps", "--all", "--quiet", "--filter", f"label={label}={owner_or_token}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return 0
    ids = listed.stdout.split() if listed.returncode == 0 else []
    if ids:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([docker, "rm", "--force", *ids], capture_output=True, timeout=timeout, check=False)
    return len(ids)


def _send(pid: int, match: Match, signum: signal.Signals, proc: Path) -> bool:
    # Open the process first, then check it is still the one we found: a pid recycled in between is
    # then either refused by pidfd_open (gone) or fails the token check, never signalled by mistake.
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:  # pragma: no cover (a kernel without pidfd): plain kill, with the small reuse race
        token = token_of(pid, proc)
        if token is None or not match(token):
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
            return True
        return False
    try:
        token = token_of(pid, proc)
        if token is None or not match(token):
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            signal.pidfd_send_signal(pidfd, signum)
            return True
        return False
    finally:
        os.close(pidfd)

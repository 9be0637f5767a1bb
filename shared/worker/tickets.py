"""The two small files a run leaves beside its working directory while it lives (``runner.JobProcess``):
``NAME.ticket`` (job id, attempt, process token), written before the process starts, and ``NAME.exit``,
written by a wrapper shell with the exit status when the command ends. An agent restarted after a crash
reads them to settle what its predecessor was running (``recovery``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

OUTPUT_TAIL_BYTES = 4096  # the last bytes of a job's output its record keeps
TICKET_SUFFIX = ".ticket"
EXIT_SUFFIX = ".exit"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticket:
    """What a run leaves beside its working directory while it lives, for an agent restarted after a crash."""

    job_id: str
    attempt: int
    token: str
    name: str

    def to_json(self) -> str:
        return json.dumps({"job_id": self.job_id, "attempt": self.attempt, "token": self.token})

    def exit_status(self, work_root: Path) -> int | None:
        """The status its command ended with, if it ended by itself (the wrapper wrote it); else None."""
        try:
            return int((work_root / f"{self.name}{EXIT_SUFFIX}").read_text().strip())
        except (OSError, ValueError):
            return None

    def output_tail(self, work_root: Path) -> str:
        return tail(work_root / f"{self.name}.out")

    def forget(self, work_root: Path) -> None:
        """Remove everything the run left in the work root."""
        shutil.rmtree(work_root / self.name, ignore_errors=True)
        for suffix in (".out", EXIT_SUFFIX, f"{EXIT_SUFFIX}.tmp", TICKET_SUFFIX):
            with contextlib.suppress(OSError):
                (work_root / f"{self.name}{suffix}").unlink()


def read_tickets(work_root: Path) -> list[Ticket]:
    """The tickets runs left in ``work_root`` (an unreadable one is skipped, with a warning)."""
    tickets = []
    for path in sorted(work_root.glob(f"*{TICKET_SUFFIX}")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            tickets.append(
                Ticket(
                    job_id=str(data["job_id"]),
                    attempt=int(data["attempt"]),
                    token=str(data["token"]),
                    name=path.name.removesuffix(TICKET_SUFFIX),
                )
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("ignoring unreadable run ticket %s: %s", path, error)
    return tickets


def tail(path: Path) -> str:
    try:
        with path.open("rb") as output:
            size = output.seek(0, os.SEEK_END)
            output.seek(max(0, size - OUTPUT_TAIL_BYTES))
            return output.read(OUTPUT_TAIL_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return ""

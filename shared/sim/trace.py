"""Read a trace: the job format plus ``submit`` (seconds from the start), one job a line, sorted by submit.

Every error names the file and the line, and says what to fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from shared.domain.jobs import Job, JobSpecError, parse_job


class TraceError(ValueError):
    """A trace that cannot be replayed; the message names the file, the line and what to fix."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceJob:
    job: Job  # its shape's wall_time is the job's real runtime: the simulator runs it, the scaler never sees it
    submit: float  # seconds from the start of the trace

    @property
    def wall_time(self) -> float:
        return self.job.shape.wall_time


def read_trace(path: Path) -> list[TraceJob]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise TraceError(f"{path}: cannot read the trace ({error.strerror or error})") from None
    out: list[TraceJob] = []
    seen: dict[str, int] = {}
    last = 0.0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            raise TraceError(f"{where}: malformed JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(obj, dict) or "submit" not in obj:
            raise TraceError(f"{where}: each line needs a 'submit' time in seconds from the start of the trace")
        submit = obj.pop("submit")
        if isinstance(submit, bool) or not isinstance(submit, int | float) or not submit >= 0:
            raise TraceError(f"{where}: 'submit' must be a number of seconds >= 0, got {submit!r}")
        if submit < last:
            raise TraceError(f"{where}: submit {submit} is earlier than the line before ({last}); sort by submit")
        try:
            job = parse_job(obj)
        except JobSpecError as error:
            raise TraceError(f"{where}: {error}") from None
        if job.id in seen:
            raise TraceError(f"{where}: job id {job.id!r} was already used on line {seen[job.id]}")
        seen[job.id] = number
        last = float(submit)
        out.append(TraceJob(job=job, submit=last))
    if not out:
        raise TraceError(f"{path}: the trace has no jobs; give one JSON job a line with a 'submit' time")
    return out

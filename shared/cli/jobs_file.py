"""Read a JOBS.jsonl file: one job a line, every error naming the file, the line and the field."""

from __future__ import annotations

import json
from pathlib import Path

from shared.domain.jobs import Job, JobSpecError, parse_job


class JobsFileError(ValueError):
    """A jobs file that cannot be read; the message names the file, the line and what to fix."""


def read_jobs(path: Path) -> list[Job]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise JobsFileError(f"{path}: cannot read the jobs file ({error.strerror or error})") from None
    numbered = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    objects = _decode_all(path, numbered)
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    for (number, _), obj in zip(numbered, objects, strict=True):
        try:
            job = parse_job(obj)
        except JobSpecError as error:
            raise JobsFileError(f"{path}:{number}: {error}") from None
        if job.id in seen:
            raise JobsFileError(f"{path}:{number}: job id {job.id!r} was already used on line {seen[job.id]}")
        seen[job.id] = number
        jobs.append(job)
    return jobs


def _decode_all(path: Path, numbered: list[tuple[int, str]]) -> list[object]:
    """Decode every line in one call (fast), or line by line to name the first bad one."""
    try:
        decoded = json.loads("[" + ",".join(line for _, line in numbered) + "]")
        if isinstance(decoded, list) and len(decoded) == len(numbered):
            return decoded
    except json.JSONDecodeError:
        pass
    objects = []
    for number, line in numbered:
        try:
            objects.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise JobsFileError(f"{path}:{number}: malformed JSON ({error.msg} at column {error.colno})") from None
    return objects

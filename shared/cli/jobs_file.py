"""Read a JOBS.jsonl file: one job a line, every error naming the file, the line and the field."""

from __future__ import annotations

import json
from pathlib import Path

from shared.domain.jobs import Job, JobSpecError, describe_json_error, parse_job


class JobsFileError(ValueError):
    """A jobs file that cannot be read; the message names the file, the line and what to fix."""


def read_jobs(path: Path) -> list[Job]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise JobsFileError(f"{path}: cannot read the jobs file ({error.strerror or error})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        where = data.count(b"\n", 0, error.start) + 1
        raise JobsFileError(
            f"{path}:{where}: not UTF-8 text (byte {error.start}); a jobs file is JSON lines, one job each"
        ) from None
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            job = parse_job(_decode_line(stripped))
        except JobSpecError as error:
            raise JobsFileError(f"{path}:{number}: {error}") from None
        if job.id in seen:
            raise JobsFileError(f"{path}:{number}: job id {job.id!r} was already used on line {seen[job.id]}")
        seen[job.id] = number
        jobs.append(job)
    return jobs


def _decode_line(line: str) -> object:
    """Exactly one JSON value: an object split over lines, or two on one line, is an error naming the line."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise JobSpecError(
            f"malformed JSON ({describe_json_error(error)}); each line must be one JSON object"
        ) from None
    except ValueError as error:  # an integer of more than 4300 digits: Python refuses to read it
        raise JobSpecError(f"malformed JSON ({error})") from None

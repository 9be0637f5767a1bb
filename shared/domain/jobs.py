"""Jobs and their shapes, and the one parser every edge uses for the job format.

The same JSON object describes a job for ``shoal plan`` (JOBS.jsonl), ``shoal submit``, the queue
message and ``shoal demo --workload``: resources are required, what a worker needs to run it is optional.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from shared.domain.resources import Resources
from shared.domain.units import UnitError, format_duration, parse_duration, parse_size

DEFAULT_MAX_ATTEMPTS = 3
# A job id is a DynamoDB key (at most 2048 bytes with its prefix), a log line and a file name's part: bounded
# and printable, checked here so every edge (files, the queue message, Toil) refuses the same ids.
MAX_JOB_ID_BYTES = 512
MIN_CORES = 0.001  # a smaller positive number only overflows the packing's arithmetic
MAX_CORES = 100_000.0
MAX_ACCELERATORS = 1024  # far beyond any machine; bounded so no reason or sum meets a 300-digit integer
MAX_ATTEMPTS = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class JobSpecError(ValueError):
    """A job description that cannot be used; the message names the field and how to fix it."""


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Shape:
    """What the scaler packs: a resource vector, how long it runs, and whether it may run on spot."""

    resources: Resources
    wall_time: float  # seconds, the submitted estimate (or a learned average)
    preemptible: bool = False

    def describe(self) -> str:
        market = "preemptible" if self.preemptible else "on-demand only"
        return f"{self.resources.describe()}, {format_duration(self.wall_time)}, {market}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    id: str
    shape: Shape
    command: str | None = None
    image: str | None = None
    name: str | None = None  # jobs with one name share a learned runtime, as in Toil
    env: Mapping[str, str] = field(default_factory=dict)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout: float | None = None  # seconds; None: no limit
    # Where the job's start and end are announced (a Toil leader's completion feed); None: nowhere.
    feed: str | None = None
    # Spot reclaims the job may suffer before it runs only on on-demand nodes; None: the cluster's setting.
    max_preemptions: int | None = None

    def to_dict(self) -> dict[str, object]:
        """The canonical job object (sizes in bytes, times in seconds); ``parse_job`` reads it back."""
        r = self.shape.resources
        # Numbers in the types parse_job gives them, so equal jobs always have equal dicts (and JSON).
        out: dict[str, object] = {
            "id": self.id,
            "cores": float(r.cores),
            "memory": int(r.memory),
            "disk": int(r.disk),
            "accelerators": int(r.accelerators),
            "preemptible": self.shape.preemptible,
            "wall_time": float(self.shape.wall_time),
        }
        optional: dict[str, object | None] = {
            "command": self.command,
            "image": self.image,
            "name": self.name,
            "env": dict(self.env) or None,
            "timeout": None if self.timeout is None else float(self.timeout),
            "feed": self.feed,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        if self.max_attempts != DEFAULT_MAX_ATTEMPTS:
            out["max_attempts"] = self.max_attempts
        if self.max_preemptions is not None:
            out["max_preemptions"] = self.max_preemptions
        return out


REQUIRED_FIELDS = ("id", "cores", "memory", "disk", "wall_time")
OPTIONAL_FIELDS = (
    "preemptible",
    "accelerators",
    "command",
    "image",
    "name",
    "env",
    "max_attempts",
    "timeout",
    "feed",
    "max_preemptions",
)
_KNOWN_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS


def parse_job(obj: object) -> Job:
    """A ``Job`` from a decoded JSON object, or ``JobSpecError`` naming the first bad field."""
    if not isinstance(obj, dict):
        raise JobSpecError(f"a job must be a JSON object, got {type(obj).__name__}")
    _check_fields(obj)
    job_id = _job_id(obj["id"])
    shape = _parse_shape(obj)
    command = _optional_str(obj, "command")
    image = _optional_str(obj, "image")
    name = _optional_str(obj, "name")
    feed = _optional_str(obj, "feed")
    env = _parse_env(obj)
    max_attempts, max_preemptions = _parse_attempts(obj)
    timeout = _duration(obj, "timeout") if obj.get("timeout") is not None else None
    if timeout is not None and timeout <= 0:
        raise JobSpecError(
            f"field 'timeout' must be a positive number of seconds (leave it out for no limit), got {obj['timeout']!r}"
        )
    return Job(
        id=job_id,
        shape=shape,
        command=command,
        image=image,
        name=name,
        env=env,
        max_attempts=max_attempts,
        timeout=timeout,
        feed=feed,
        max_preemptions=max_preemptions,
    )


def _check_fields(obj: Mapping[str, object]) -> None:
    """No unknown field (with the closest known one as a hint), and every required one."""
    for key in obj:
        if key not in _KNOWN_FIELDS:
            close = difflib.get_close_matches(str(key), _KNOWN_FIELDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(_KNOWN_FIELDS)}"
            raise JobSpecError(f"unknown field {key!r}{hint}")
    for key in REQUIRED_FIELDS:
        if key not in obj:
            raise JobSpecError(f"missing field {key!r}; every job needs {', '.join(REQUIRED_FIELDS)}")


def _parse_shape(obj: Mapping[str, object]) -> Shape:
    """What the job needs: its resources, wall time and whether it may run on spot."""
    cores = _number(obj, "cores")
    if cores <= 0:
        raise JobSpecError(f"field 'cores' must be positive, got {_cut(obj['cores'])}")
    if not MIN_CORES <= cores <= MAX_CORES:
        raise JobSpecError(f"field 'cores' must be from {MIN_CORES:g} to {MAX_CORES:g}, got {_cut(obj['cores'])}")
    memory = _size(obj, "memory")
    disk = _size(obj, "disk")
    accelerators = obj.get("accelerators", 0)
    if isinstance(accelerators, bool) or not isinstance(accelerators, int) or not 0 <= accelerators <= MAX_ACCELERATORS:
        raise JobSpecError(
            f"field 'accelerators' must be a whole number from 0 to {MAX_ACCELERATORS}, got {_cut(accelerators)}"
        )
    wall_time = _duration(obj, "wall_time")
    if wall_time <= 0:
        raise JobSpecError(f"field 'wall_time' must be a positive number of seconds, got {obj['wall_time']!r}")
    preemptible = obj.get("preemptible", False)
    if not isinstance(preemptible, bool):
        raise JobSpecError(f"field 'preemptible' must be true or false, got {preemptible!r}")
    return _shape(cores, memory, disk, accelerators, wall_time, preemptible)


def _parse_env(obj: Mapping[str, object]) -> dict[str, str]:
    """The job's own environment variables: strings with no control characters."""
    env = obj.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise JobSpecError("field 'env' must be an object of string values")
    for key, value in env.items():
        _text(f"env {_cut(key)}", key)
        _text(f"env {_cut(key)}", value)
    return env


def _parse_attempts(obj: Mapping[str, object]) -> tuple[int, int | None]:
    """How many times the job may be tried, and how many spot reclaims it may suffer (None: the cluster's)."""
    max_attempts = obj.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or not 1 <= max_attempts <= MAX_ATTEMPTS:
        raise JobSpecError(
            f"field 'max_attempts' must be a whole number from 1 to {MAX_ATTEMPTS}, got {max_attempts!r}"
        )
    max_preemptions = obj.get("max_preemptions")
    if max_preemptions is None:
        return max_attempts, None
    if (
        isinstance(max_preemptions, bool)
        or not isinstance(max_preemptions, int)
        or not 1 <= max_preemptions <= MAX_ATTEMPTS
    ):
        raise JobSpecError(
            f"field 'max_preemptions' must be a whole number from 1 to {MAX_ATTEMPTS} (leave it out for the "
            f"cluster's setting), got {_cut(max_preemptions)}"
        )
    return max_attempts, max_preemptions


@lru_cache(maxsize=65536)
def _shape(  # noqa: PLR0917 - positional for the cache key's sake
    cores: float, memory: int, disk: int, accelerators: int, wall_time: float, preemptible: bool
) -> Shape:
    """One shared ``Shape`` per distinct shape: queues hold many jobs of few shapes."""
    return Shape(
        resources=Resources(cores=cores, memory=memory, disk=disk, accelerators=accelerators),
        wall_time=wall_time,
        preemptible=preemptible,
    )


def describe_json_error(error: json.JSONDecodeError) -> str:
    """``json``'s message with its column: "Expecting ',' delimiter at column 12", "... starting at column 3"."""
    joint = " " if error.msg.endswith(" at") else " at "
    return f"{error.msg}{joint}column {error.colno}"


def histogram(jobs: Iterable[Job]) -> dict[Shape, int]:
    """Demand as the scaler sees it: how many jobs of each shape."""
    shapes = [job.shape for job in jobs]
    # Parsed jobs share one Shape object per shape (``_shape``): when they are few, count identities (cheap)
    # and hash each distinct shape once; when nearly every job is its own shape, hashing each is cheaper than
    # counting twice. The first jobs tell which (either way gives the same counts, in the same order).
    sample = shapes[:_SAMPLE]
    if 2 * len(set(map(id, sample))) > len(sample) >= _SAMPLE:
        return dict(Counter(shapes))
    identities = Counter(map(id, shapes))
    if 2 * len(identities) > len(shapes):
        return dict(Counter(shapes))
    shape_of = dict(zip(map(id, shapes), shapes, strict=True))
    counts: dict[Shape, int] = {}
    for identity, count in identities.items():
        shape = shape_of[identity]
        counts[shape] = counts.get(shape, 0) + count
    return counts


_SAMPLE = 1024  # jobs whose shapes are counted by identity first, to see if most are their own shape


def _job_id(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise JobSpecError(f"field 'id' must be a non-empty string, got {_cut(value)}")
    _text("id", value)
    size = len(value) if value.isascii() else len(value.encode("utf-8"))
    if size > MAX_JOB_ID_BYTES:
        raise JobSpecError(f"field 'id' is {size} bytes long; a job id may have at most {MAX_JOB_ID_BYTES} (UTF-8)")
    if _CONTROL.search(value):
        raise JobSpecError(f"field 'id' {_cut(value)} has a control character (a newline, a tab...); remove it")
    return value


def _text(key: str, value: str) -> None:
    """A string that can cross the wire as UTF-8 (JSON's ``\\ud800`` escapes decode to unpaired surrogates)."""
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise JobSpecError(
            f"field {key!r} {_cut(value)} has an unpaired surrogate escape (\\ud800-\\udfff); write real text"
        ) from None


def _cut(value: object, limit: int = 40) -> str:
    text = ascii(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _number(obj: Mapping[str, object], key: str) -> float:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JobSpecError(f"field {key!r} must be a number, got {_cut(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise JobSpecError(f"field {key!r} is a number of more than 300 digits; too large") from None
    if not math.isfinite(number):
        raise JobSpecError(f"field {key!r} must be a finite number, got {_cut(value)}")
    return number


def _size(obj: Mapping[str, object], key: str) -> int:
    value = obj[key]
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise JobSpecError(f"field {key!r} must not be negative, got {_cut(value)}")
    try:
        return parse_size(value)
    except UnitError as error:
        raise JobSpecError(f"field {key!r}: {error}") from None


def _duration(obj: Mapping[str, object], key: str) -> float:
    try:
        return parse_duration(obj[key])
    except UnitError as error:
        raise JobSpecError(f"field {key!r}: {error}") from None


def _optional_str(obj: Mapping[str, object], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise JobSpecError(f"field {key!r} must be a string, got {_cut(value)}")
    if value is not None:
        _text(key, value)
    return value

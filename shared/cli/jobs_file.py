"""Read a JOBS.jsonl file: one job a line, every error naming the file, the line and the field."""

from __future__ import annotations

import gc
import json
import json.scanner
from collections import Counter
from collections.abc import ItemsView, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

from shared.domain.jobs import (
    MAX_ACCELERATORS,
    MAX_CORES,
    MAX_JOB_ID_BYTES,
    MIN_CORES,
    Job,
    JobSpecError,
    Shape,
    describe_json_error,
    parse_job,
)
from shared.domain.resources import Resources
from shared.domain.units import MAX_DURATION, parse_size


class JobsFileError(ValueError):
    """A jobs file that cannot be read; the message names the file, the line and what to fix."""


def read_jobs(path: Path) -> list[Job]:
    return _read_jobs_text(path, _read_text(path))


def _read_text(path: Path) -> str:
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
    return text


def _read_jobs_text(path: Path, text: str) -> list[Job]:
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


class ShapeCounts(Mapping[Shape, int]):
    """How many jobs of each shape: a mapping made of (shape, count) pairs with distinct shapes.

    Iterating it, or its items, hashes no ``Shape`` (a frozen dataclass's hash runs Python code twice per
    shape: a fifth of reading 100,000 distinct shapes); only a lookup builds the dict, once.
    """

    __slots__ = ("_by_shape", "_pairs")

    def __init__(self, pairs: list[tuple[Shape, int]]) -> None:
        self._pairs = pairs
        self._by_shape: dict[Shape, int] | None = None

    def __getitem__(self, shape: Shape) -> int:
        if self._by_shape is None:
            self._by_shape = dict(self._pairs)
        return self._by_shape[shape]

    def __iter__(self) -> Iterator[Shape]:
        return (shape for shape, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def items(self) -> ItemsView[Shape, int]:
        return _Pairs(self, self._pairs)


class _Pairs(ItemsView[Shape, int]):
    __slots__ = ("_pairs",)

    def __init__(self, mapping: ShapeCounts, pairs: list[tuple[Shape, int]]) -> None:
        super().__init__(mapping)
        self._pairs = pairs

    def __iter__(self) -> Iterator[tuple[Shape, int]]:
        return iter(self._pairs)


class PlanJobs(NamedTuple):
    """What ``shoal plan`` needs of a jobs file: ids and shapes in file order, and how many of each shape."""

    ids: list[str]
    shapes: list[Shape]
    demand: ShapeCounts


def read_plan_jobs(path: Path) -> PlanJobs:
    """``read_jobs`` for ``shoal plan``: the same checks and errors, without building a ``Job`` per line.

    A line of only the fields a plan uses (and a name), in plain JSON types or sizes with units, is checked
    inline; any other line (commands, env, a bad value) goes through ``parse_job``, so what is accepted and
    every error message are exactly ``read_jobs``'s. 100,000 lines take a third of the time.
    """
    # Reading makes hundreds of thousands of objects and frees none until the end: the cyclic collector
    # would scan them again and again for nothing (as in ``shared.domain.packing.plan``).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _read_plan_jobs(path)
    finally:
        if collecting:
            gc.enable()


def _read_plan_jobs(path: Path) -> PlanJobs:
    text = _read_text(path)
    ids: list[str] = []
    keys: list[_Key] = []
    seen: dict[str, int] = {}
    made: dict[_Key, Shape] = {}  # shapes parse_job made, for the lines that took the slow way
    scan, plain = _SCAN, _plain
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] == "#":
            continue
        try:
            obj, end = scan(stripped, 0)
            key = plain(obj) if end == len(stripped) and type(obj) is dict else None
        except Exception:  # anything odd is decoded again the slow way, which names the error
            key = None
        if key is not None:
            job_id = obj["id"]
        else:
            try:
                job = parse_job(_decode_line(stripped))
            except JobSpecError as error:
                raise JobsFileError(f"{path}:{number}: {error}") from None
            job_id, key = job.id, _key(job.shape)
            made.setdefault(key, job.shape)
        if job_id in seen:
            raise JobsFileError(f"{path}:{number}: job id {job_id!r} was already used on line {seen[job_id]}")
        seen[job_id] = number
        ids.append(job_id)
        keys.append(key)
    counts = Counter(keys)  # counted by plain tuples: hashing a Shape dataclass costs ten times as much
    if made:  # some lines took the slow way: their shapes are parse_job's
        made.update((key, _shape(key)) for key in counts if key not in made)
    else:  # one comprehension, not a loop of stores (nor a second dict of them all, as ``|=`` would make)
        made = {key: _shape(key) for key in counts}
    pairs = [(made[k], n) for k, n in counts.items()]
    return PlanJobs(ids=ids, shapes=list(map(made.__getitem__, keys)), demand=ShapeCounts(pairs))


_Key = tuple[float, int, int, int, float, bool]
# What json.loads runs, without its per-call overhead.
_SCAN = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_PLAIN_FIELDS = frozenset(("id", "cores", "memory", "disk", "wall_time", "preemptible", "accelerators", "name"))
_EXACT_INT = 2**53  # sizes up to here are read exactly as parse_size reads them


def _plain(obj: dict[str, object]) -> _Key | None:
    """The shape of ``obj`` if ``parse_job`` would accept it and read each field as plain float/int/bool;
    None for anything else (a missing field raises KeyError: the caller takes the slow way then)."""
    if not obj.keys() <= _PLAIN_FIELDS:
        return None
    job_id, cores, memory, disk, wall = obj["id"], obj["cores"], obj["memory"], obj["disk"], obj["wall_time"]
    preemptible, accelerators, name = obj.get("preemptible", False), obj.get("accelerators", 0), obj.get("name")
    if name is not None and not (type(name) is str and name.isascii()):
        return None
    if type(memory) is str:
        memory = parse_size(memory)  # what parse_job does with a string (cached); UnitError: the slow way
    if type(disk) is str:
        disk = parse_size(disk)
    if (
        type(job_id) is str
        and 0 < len(job_id) <= MAX_JOB_ID_BYTES
        and job_id.isascii()
        and job_id.isprintable()  # for ASCII text: no control character (\x00-\x1f, \x7f)
        and type(cores) in _NUMBERS
        and MIN_CORES <= cores <= MAX_CORES  # type: ignore[operator]
        and type(memory) is int
        and 0 <= memory <= _EXACT_INT
        and type(disk) is int
        and 0 <= disk <= _EXACT_INT
        and type(wall) in _NUMBERS
        and 0 < wall <= MAX_DURATION  # type: ignore[operator]
        and type(preemptible) is bool
        and type(accelerators) is int
        and 0 <= accelerators <= MAX_ACCELERATORS
    ):
        return (float(cores), memory, disk, accelerators, float(wall), preemptible)  # type: ignore[arg-type]
    return None


_NUMBERS = (int, float)


def _shape(key: _Key) -> Shape:
    """``Shape(resources=Resources(...), ...)`` for a checked key, four times faster: a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__``; this sets the slots directly."""
    resources = _new(Resources)
    _CORES(resources, key[0])
    _MEMORY(resources, key[1])
    _DISK(resources, key[2])
    _ACCELERATORS(resources, key[3])
    shape = _new(Shape)
    _RESOURCES(shape, resources)
    _WALL_TIME(shape, key[4])
    _PREEMPTIBLE(shape, key[5])
    return shape


_new = object.__new__
_CORES, _MEMORY, _DISK, _ACCELERATORS = (
    Resources.__dict__[f].__set__ for f in ("cores", "memory", "disk", "accelerators")
)
_RESOURCES, _WALL_TIME, _PREEMPTIBLE = (Shape.__dict__[f].__set__ for f in ("resources", "wall_time", "preemptible"))


def _key(shape: Shape) -> _Key:
    r = shape.resources
    return (float(r.cores), r.memory, r.disk, r.accelerators, float(shape.wall_time), shape.preemptible)

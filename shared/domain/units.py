"""Human units at the edges, bytes and seconds inside.

Sizes accept plain numbers (bytes) or a number with a unit: binary (KiB, MiB, GiB, TiB) or decimal
(K/KB, M/MB, G/GB, T/TB), as Toil's ``--nodeStorage``/``--defaultMemory`` users write them. Durations
accept seconds or ``30s``, ``10m``, ``2h``, ``1d``.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
}
_DURATION_UNITS: dict[str, int] = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_NUMBER_WITH_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")

GiB = 2**30
MiB = 2**20
# Bounds that keep every later sum, product and float conversion finite; no real job or node comes near them.
MAX_SIZE = 2**60  # 1 EiB
MAX_DURATION = 10 * 366 * 86400.0  # ten years, in seconds
MAX_COUNT = 100_000  # nodes of one type


class UnitError(ValueError):
    """A size or duration that cannot be read; the message says what is accepted."""


def parse_size(value: object) -> int:
    """Bytes from an int, a float or a string with a unit (``"4GiB"``, ``"500MiB"``, ``"10G"``)."""
    if isinstance(value, str):
        return _parse_size_text(value)  # job files repeat a few sizes many times: read each once
    return _parse_size(value)


@lru_cache(maxsize=4096)
def _parse_size_text(value: str) -> int:
    return _parse_size(value)


def _parse_size(value: object) -> int:
    if isinstance(value, bool):
        raise UnitError(f"expected a size, got {value!r}")
    if isinstance(value, int | float):
        number, unit = _finite(value, "size"), ""
    elif isinstance(value, str):
        match = _NUMBER_WITH_UNIT.match(value)
        if not match:
            raise UnitError(f"{_shown(value)} is not a size; write bytes or a number with a unit like 4GiB or 500MiB")
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise UnitError(f"expected a size, got {type(value).__name__}")
    if unit not in _SIZE_UNITS:
        raise UnitError(f"unknown unit {unit!r} in {_shown(value)}; use B, KiB, MiB, GiB, TiB, K, M, G or T")
    if not math.isfinite(number) or number < 0:
        raise UnitError(f"{_shown(value)} must be a non-negative size")
    if number * _SIZE_UNITS[unit] > MAX_SIZE:
        raise UnitError(f"{_shown(value)} is larger than the largest size Shoal accepts (1 EiB)")
    return math.ceil(number * _SIZE_UNITS[unit])


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``"30m"``."""
    if isinstance(value, bool):
        raise UnitError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        number, unit = _finite(value, "duration"), ""
    elif isinstance(value, str):
        match = _NUMBER_WITH_UNIT.match(value)
        if not match:
            raise UnitError(f"{_shown(value)} is not a duration; write seconds or a number with s, m, h or d")
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise UnitError(f"expected a duration, got {type(value).__name__}")
    if unit not in _DURATION_UNITS:
        raise UnitError(f"unknown unit {unit!r} in {_shown(value)}; use s, m, h or d")
    if not math.isfinite(number) or number < 0:
        raise UnitError(f"{_shown(value)} must be a non-negative duration")
    seconds = number * _DURATION_UNITS[unit]
    if seconds > MAX_DURATION:
        raise UnitError(f"{_shown(value)} is longer than the longest duration Shoal accepts (3660d, ten years)")
    return seconds


def parse_gib(value: object) -> int:
    """Bytes from Toil's ``--nodeStorage``: a bare number is GiB; a string with a unit is taken as written."""
    if isinstance(value, str):
        match = _NUMBER_WITH_UNIT.match(value)
        if not match:
            raise UnitError(f"{_shown(value)} is not a size; write a number of GiB (50) or a size with a unit (50GiB)")
        if not match.group(2):
            value = float(match.group(1))  # "1e400" reads as inf, refused below
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = _finite(value, "size")
        if not math.isfinite(number) or number < 0:
            raise UnitError(f"{_shown(value)} must be a finite, non-negative number of GiB")
        if number * GiB > MAX_SIZE:
            raise UnitError(f"{_shown(value)} GiB is larger than the largest size Shoal accepts (1 EiB)")
        return math.ceil(number * GiB)
    return parse_size(value)


def parse_count(value: object) -> int:
    """A whole number of nodes (``2``, ``"2"``, ``2.0``), from 0 to ``MAX_COUNT``; never truncated."""
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise UnitError(f"{_shown(value)} is not a whole number")
        number = int(text) if len(text) <= 12 else MAX_COUNT + 1
        if text.startswith("-") and number > 0:
            number = -number
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise UnitError(f"expected a whole number, got {_shown(value)}")
    elif isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise UnitError(f"{_shown(value)} is not a whole number")
    else:
        number = int(value) if abs(value) <= MAX_COUNT * 10 else (MAX_COUNT + 1 if value > 0 else -1)
    if number < 0:
        raise UnitError(f"{_shown(value)} is negative; give a number from 0 to {MAX_COUNT}")
    if number > MAX_COUNT:
        raise UnitError(f"{_shown(value)} is more than {MAX_COUNT}")
    return number


def parse_counts(value: object) -> tuple[int, ...]:
    """Toil's ``--minNodes``/``--maxNodes``: ``"0,2"`` or ``[0, 2]``; an empty entry is an error, not skipped."""
    if isinstance(value, str):
        if not value.strip():
            return ()
        parts: list[object] = list(value.split(","))
    elif isinstance(value, list | tuple):
        parts = list(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        parts = [value]
    else:
        raise UnitError(f"expected whole numbers separated by commas, like 0,2, got {_shown(value)}")
    counts = []
    for position, part in enumerate(parts, start=1):
        if isinstance(part, str) and not part.strip():
            raise UnitError(f"{_shown(value)} has an empty entry at position {position}; give one number per node type")
        try:
            counts.append(parse_count(part))
        except UnitError as error:
            raise UnitError(f"entry {position} of {_shown(value)}: {error}") from None
    return tuple(counts)


def _finite(value: int | float, what: str) -> float:
    try:
        return float(value)
    except OverflowError:  # a many-digit integer from JSON or TOML
        raise UnitError(f"a {what} of more than 300 digits is too large") from None


def _shown(value: object, limit: int = 40) -> str:
    """``repr`` cut short, so an error message stays one readable line whatever was typed."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def format_size(num_bytes: float) -> str:
    """The largest binary unit that keeps the number at or above 1: ``16 GiB``, ``512 MiB``."""
    for unit, factor in (("TiB", 2**40), ("GiB", GiB), ("MiB", MiB), ("KiB", 2**10)):
        if num_bytes >= factor:
            return f"{num_bytes / factor:.4g} {unit}"
    return f"{int(num_bytes)} B"


def format_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"

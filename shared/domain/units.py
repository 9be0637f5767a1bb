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
        number, unit = float(value), ""
    elif isinstance(value, str):
        match = _NUMBER_WITH_UNIT.match(value)
        if not match:
            raise UnitError(f"{value!r} is not a size; write bytes or a number with a unit like 4GiB or 500MiB")
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise UnitError(f"expected a size, got {type(value).__name__}")
    if unit not in _SIZE_UNITS:
        raise UnitError(f"unknown unit {unit!r} in {value!r}; use B, KiB, MiB, GiB, TiB, K, M, G or T")
    if not math.isfinite(number) or number < 0:
        raise UnitError(f"{value!r} must be a non-negative size")
    return math.ceil(number * _SIZE_UNITS[unit])


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``"30m"``."""
    if isinstance(value, bool):
        raise UnitError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        number, unit = float(value), ""
    elif isinstance(value, str):
        match = _NUMBER_WITH_UNIT.match(value)
        if not match:
            raise UnitError(f"{value!r} is not a duration; write seconds or a number with s, m, h or d")
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise UnitError(f"expected a duration, got {type(value).__name__}")
    if unit not in _DURATION_UNITS:
        raise UnitError(f"unknown unit {unit!r} in {value!r}; use s, m, h or d")
    if not math.isfinite(number) or number < 0:
        raise UnitError(f"{value!r} must be a non-negative duration")
    return number * _DURATION_UNITS[unit]


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

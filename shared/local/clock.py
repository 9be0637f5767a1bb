"""The local cloud's clocks: what "now" is for the handlers, the agents and the router.

``SimClock`` (``shoal local run``, ``shoal demo --real``): simulated seconds = ``speed`` × real seconds.
Simulated time starts at the real epoch time of ``start`` (so timestamps moto writes in real time, such as
an instance's LaunchTime, are never in the simulated future) and then runs ``speed`` times faster, whether
or not the control plane keeps up: on a busy machine a scaling round or an agent's poll takes more
simulated time than on a quiet one.

``LockstepClock`` (``shoal demo``): simulated time moves only when the demo's driver calls ``advance``,
one step at a time, after everything due at the step has been done (``shared/local/lockstep.py``); it
never runs faster than ``speed`` × real time. The same demo then gives the same report on any machine.

Only moto's SQS visibility timeouts, HTTP timeouts and Step Functions Wait states stay in real time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    """What the local cloud reads: simulated epoch seconds, and how the simulated run maps to real time."""

    start: float
    speed: float

    def now(self) -> float: ...

    def elapsed(self) -> float: ...

    def real_seconds(self, simulated: float) -> float: ...


def _check_speed(speed: float) -> float:
    if speed < 1:
        raise ValueError(f"speed must be at least 1 (simulated seconds per real second), got {speed:g}")
    return float(speed)


class SimClock:
    """Thread-safe: ``now()`` is a pure function of the monotonic clock."""

    def __init__(
        self,
        speed: float,
        *,
        epoch: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.speed = _check_speed(speed)
        self._epoch = epoch
        self._monotonic = monotonic
        self.start = epoch()
        self._started = monotonic()

    def restart(self) -> None:
        """Start simulated time again from the real time now (before anything has read it: set-up is over)."""
        self.start = self._epoch()
        self._started = self._monotonic()

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self.start + self.elapsed()

    def elapsed(self) -> float:
        """Simulated seconds since the clock started."""
        return (self._monotonic() - self._started) * self.speed

    def real_seconds(self, simulated: float) -> float:
        """How long ``simulated`` seconds take in real time."""
        return max(0.0, simulated) / self.speed

    def sleep(self, simulated: float, *, stop: threading.Event | None = None) -> bool:
        """Sleep ``simulated`` seconds (returns early, True, if ``stop`` is set)."""
        seconds = self.real_seconds(simulated)
        if stop is None:
            time.sleep(seconds)
            return False
        return stop.wait(seconds)


class LockstepClock:
    """Simulated time that stands still between ``advance`` calls (thread-safe: readers see one step)."""

    def __init__(
        self,
        speed: float,
        *,
        step: float,
        epoch: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``speed``: the most simulated seconds per real second; ``step``: simulated seconds per ``advance``."""
        if not step > 0:
            raise ValueError(f"step must be above 0 simulated seconds, got {step:g}")
        self.speed = _check_speed(speed)
        self.step = float(step)
        self._epoch, self._monotonic, self._sleep = epoch, monotonic, sleep
        self.start = epoch()
        self._elapsed = 0.0
        self._last_advance = monotonic()
        self.steps = 0

    def restart(self) -> None:
        """Start simulated time again at the real time now (set-up is over)."""
        self.start = self._epoch()
        self._elapsed = 0.0
        self._last_advance = self._monotonic()
        self.steps = 0

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self.start + self._elapsed

    def elapsed(self) -> float:
        """Simulated seconds since the clock started."""
        return self._elapsed

    def real_seconds(self, simulated: float) -> float:
        """The least real time ``simulated`` seconds take (more when the control plane is slower)."""
        return max(0.0, simulated) / self.speed

    def advance(self) -> None:
        """Move simulated time on by one step, but no sooner than ``step / speed`` real seconds after the last."""
        ahead = self._last_advance + self.step / self.speed - self._monotonic()
        if ahead > 0:
            self._sleep(ahead)
        self._last_advance = self._monotonic()
        self._elapsed += self.step
        self.steps += 1

    def align(self, period: float) -> None:
        """Jump to the next multiple of ``period`` simulated seconds (at once: nothing is due in between)."""
        self._elapsed = -(-self._elapsed // period) * period

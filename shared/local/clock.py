"""The local cloud's accelerated clock: simulated seconds = ``speed`` × real seconds.

Simulated time starts at the real epoch time of ``start`` (so timestamps moto writes in real time, such as
an instance's LaunchTime, are never in the simulated future) and then runs ``speed`` times faster. The
handlers, the agents and the router all read "now" from one ``SimClock``; only moto's SQS visibility
timeouts and HTTP timeouts stay in real time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class SimClock:
    """Thread-safe: ``now()`` is a pure function of the monotonic clock."""

    def __init__(
        self,
        speed: float,
        *,
        epoch: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed < 1:
            raise ValueError(f"speed must be at least 1 (simulated seconds per real second), got {speed:g}")
        self.speed = float(speed)
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

"""Finished jobs' wall times, summed per job name until the next heartbeat sends them in one write each.

One write per job name per heartbeat instead of one per job: at many short jobs a second, the per-job
write would cost as much as the job's own record. The scaler sees new runtimes a heartbeat later.
"""

from __future__ import annotations

import threading

from shared.services.worker_ports import RuntimeRecorder


class RuntimeTally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, tuple[int, float]] = {}  # name -> (jobs, seconds in all)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            count, total = self._totals.get(name, (0, 0.0))
            self._totals[name] = (count + 1, total + seconds)

    def send(self, recorder: RuntimeRecorder) -> None:
        """Hand every sum to ``recorder``; a sum whose write fails is kept for the next send."""
        with self._lock:
            totals, self._totals = self._totals, {}
        failed: dict[str, tuple[int, float]] = {}
        why = ""
        for name, (count, seconds) in totals.items():
            try:
                recorder.record_runtime(name, seconds, count)
            except Exception as error:  # any store error: the sums must survive it
                failed[name] = (count, seconds)
                why = str(error)
        if failed:
            with self._lock:
                for name, (count, seconds) in failed.items():
                    have_count, have_seconds = self._totals.get(name, (0, 0.0))
                    self._totals[name] = (have_count + count, have_seconds + seconds)
            raise RuntimeSendError(
                f"could not record the runtimes of {sorted(failed)}; keeping them for next time: {why}"
            )


class RuntimeSendError(RuntimeError):
    """Some runtime sums were not written; they stay in the tally."""

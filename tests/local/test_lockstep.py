"""The demo's lockstep clock: time moves only when the driver steps it, and a job ends at its simulated end."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shared.domain.jobs import Job, Shape
from shared.domain.resources import Resources
from shared.local.clock import LockstepClock
from shared.local.lockstep import JobTimer


class _FakeTime:
    def __init__(self) -> None:
        self.real = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.real

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.real += seconds


def _clock(fake: _FakeTime, *, speed: float = 100.0, step: float = 20.0) -> LockstepClock:
    return LockstepClock(speed, step=step, epoch=lambda: 5000.0, monotonic=fake.monotonic, sleep=fake.sleep)


def test_simulated_time_stands_still_however_long_the_control_plane_takes() -> None:
    # GIVEN a lockstep clock
    fake = _FakeTime()
    clock = _clock(fake)

    # WHEN a minute of real time passes without a step
    fake.real += 60

    # THEN no simulated time has passed; one step moves it by exactly one step
    assert clock.now() == 5000.0
    clock.advance()
    assert clock.elapsed() == 20.0
    assert clock.now() == 5020.0


def test_a_step_never_runs_faster_than_speed() -> None:
    # GIVEN a clock of 20 s steps at most 100x: a step takes at least 0.2 real seconds
    fake = _FakeTime()
    clock = _clock(fake)

    # WHEN the driver steps at once, then after 0.05 s, then after 1 s
    clock.advance()
    fake.real += 0.05
    clock.advance()
    fake.real += 1.0
    clock.advance()

    # THEN the clock waited the rest of each step's 0.2 s, and not after a slow step
    assert fake.slept == pytest.approx([0.2, 0.15])
    assert clock.steps == 3


def test_align_jumps_to_the_next_multiple_of_a_period() -> None:
    fake = _FakeTime()
    clock = _clock(fake)
    for _ in range(4):
        clock.advance()  # 80 s
    clock.align(60)
    assert clock.elapsed() == 120.0
    clock.align(60)
    assert clock.elapsed() == 120.0


def test_bad_clock_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="step"):
        LockstepClock(10, step=0)
    with pytest.raises(ValueError, match="speed"):
        LockstepClock(0.5, step=10)


def _job(wall_time: float, timeout: float | None = None) -> Job:
    return Job(
        id="job-1",
        name="align",
        shape=Shape(resources=Resources(cores=1, memory=2**30, disk=2**30), wall_time=wall_time),
        command="true",
        timeout=timeout,
    )


def _start(command: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sh", "-c", command])


@pytest.mark.parametrize(("timeout", "status"), [(None, 0), (40.0, 124)])
def test_a_timed_job_ends_at_its_simulated_end_and_not_before(
    tmp_path: Path, timeout: float | None, status: int
) -> None:
    # GIVEN a job of 60 simulated seconds whose process waits on the job timer
    fake = _FakeTime()
    clock = _clock(fake)
    timer = JobTimer(clock, tmp_path / "fifos")
    process = _start(timer.command(_job(60.0, timeout), "node-a"))
    running = {"node-a": ["job-1"]}
    try:
        # WHEN the clock is stepped to the last step before its end (or its timeout)
        end = 60.0 if timeout is None else timeout
        before = []
        while clock.elapsed() + clock.step < end:
            clock.advance()
            before += timer.end_due(lambda node: running.get(node, []))

        # THEN nothing ended before its end, and the process is still running
        assert clock.elapsed() == end - clock.step
        assert before == []
        assert process.poll() is None

        # WHEN the step at its end comes
        clock.advance()
        ended = timer.end_due(lambda node: running.get(node, []))

        # THEN it ends then, with the job's status (124: its timeout came first)
        assert ended == [("node-a", "job-1")]
        assert process.wait(timeout=10) == status
        assert list((tmp_path / "fifos").iterdir()) == []
    finally:
        process.kill()
        process.wait()


def test_a_job_whose_process_is_gone_is_forgotten(tmp_path: Path) -> None:
    # GIVEN a timed job whose process was killed (an evacuation) and no longer runs on its node
    fake = _FakeTime()
    clock = _clock(fake)
    timer = JobTimer(clock, tmp_path / "fifos")
    process = _start(timer.command(_job(20.0), "node-a"))
    process.kill()
    process.wait()

    # WHEN its end comes
    clock.advance()
    ended = timer.end_due(lambda node: [])

    # THEN nothing is ended, and its FIFO is gone
    assert ended == []
    assert list((tmp_path / "fifos").iterdir()) == []

"""A reclaimed job, end to end through the real agent: the reclaim counts a preemption (no attempt), and the
retry starts in a fresh, empty work directory (nothing the interrupted run left behind)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.domain.cluster_state import JobStatus
from shared.domain.jobs import Job, Shape
from shared.domain.resources import Resources
from shared.domain.units import GiB, MiB
from shared.worker.imds import ImdsClient, SpotInterruptionWatch
from tests.worker.conftest import Cluster, wait_until
from tests.worker.fake_imds import FakeImds


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    server = FakeImds(instance_id="i-spot").start()
    yield server
    server.stop()


def test_a_reclaimed_job_counts_a_preemption_and_retries_in_a_fresh_work_directory(
    cluster: Cluster, imds: FakeImds, tmp_path: Path
) -> None:
    # GIVEN a job that fails if its work directory holds anything, leaves a file there, and logs where it ran
    runs, done = tmp_path / "runs", tmp_path / "done"
    command = (
        f'test -z "$(ls -A)" || exit 3; touch leftover; pwd >> {runs}; '
        f'[ "$SHOAL_JOB_ATTEMPT" = 1 ] && sleep 30; echo ok >> {done}'
    )
    spot_shape = Shape(resources=Resources(cores=1, memory=256 * MiB, disk=GiB), wall_time=60, preemptible=True)
    cluster.submit(Job(id="reclaimed", shape=spot_shape, command=command, max_attempts=1))
    spot = cluster.agent(
        "i-spot", interruption_check=SpotInterruptionWatch(ImdsClient(imds.url)), interruption_poll_interval=0.05
    )
    cluster.start(spot)
    wait_until(runs.exists, what="the first run to start")
    # WHEN EC2 reclaims the spot node mid-run
    imds.announce()
    wait_until(lambda: cluster.jobs.get_job("reclaimed").status is JobStatus.QUEUED, timeout=5, what="the requeue")
    record = cluster.jobs.get_job("reclaimed")
    # THEN the reclaim used no attempt and counted one preemption
    assert (record.attempts, record.preemptions, record.on_demand_only) == (0, 1, False)
    # AND the retry elsewhere runs in a new, empty directory (its one attempt is not used up by the reclaim)
    cluster.start(cluster.agent("i-ondemand"))
    wait_until(lambda: cluster.jobs.get_job("reclaimed").status is JobStatus.SUCCEEDED, timeout=15, what="the retry")
    first, second = runs.read_text().split()
    assert first != second and done.read_text() == "ok\n"
    record = cluster.jobs.get_job("reclaimed")
    assert (record.attempts, record.starts, record.preemptions) == (1, 2, 1)

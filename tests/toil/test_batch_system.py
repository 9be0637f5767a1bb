"""``ShoalBatchSystem`` on a local cluster, beyond Toil's own tests: what a Shoal job looks like, kills that
really end the job, refusals at issue time, ids across restarts, local jobs on the leader."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from toil.batchSystems.abstractBatchSystem import BatchJobExitReason, InsufficientSystemResources
from toil.common import Config
from toil.job import JobDescription

import toil_batch_system_shoal
from shared.domain.cluster_state import JobStatus
from shared.domain.units import GiB
from tests.toil.local_shoal import LocalShoal, local_shoal

pytestmark = pytest.mark.slow

SMALL = {"memory": int(100e6), "cores": 1, "disk": 1000, "preemptible": False, "accelerators": [], "walltime": 0}


@pytest.fixture(scope="module")
def shoal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalShoal]:
    with local_shoal() as cluster:
        cluster.start_agent("i-plugintest01", cores=2, work_root=tmp_path_factory.mktemp("nodes"))
        yield cluster


def _config(workflow_id: str | None = None) -> Config:
    config = Config()
    config.workflowID = workflow_id or str(uuid.uuid4())
    config.cleanWorkDir = "always"
    return config


def _batch_system(config: Config | None = None, *, max_cores: float = 1000) -> Any:
    return toil_batch_system_shoal.ShoalBatchSystem(
        config=config or _config(), maxCores=max_cores, maxMemory=1e12, maxDisk=int(1e12)
    )


def _job(name: str, **requirements: Any) -> JobDescription:
    return JobDescription(requirements={**SMALL, **requirements}, jobName=name, unitName=None)


def _wait(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_an_issued_job_is_a_shoal_job_named_and_sized_as_toil_asked(shoal: LocalShoal) -> None:
    # GIVEN the batch system with an environment variable set for every job
    batch = _batch_system()
    batch.setEnv("SHARED", "1")
    try:
        # WHEN a job with a walltime, a GPU-free 2-core shape and its own variable is issued
        batch_id = batch.issueBatchJob(
            "exit 7", _job("align", cores=2, memory=GiB, disk=2 * GiB, walltime=90), job_environment={"OWN": "x"}
        )
        update = batch.getUpdatedBatchJob(maxWait=60)
        # THEN Toil hears of its end: the exit code, FAILED, and a wall time
        assert update is not None
        assert (update.jobID, update.exitStatus, update.exitReason) == (batch_id, 7, BatchJobExitReason.FAILED)
        assert update.wallTime is not None and update.wallTime > 0
        # THEN the Shoal record holds Toil's name and resources, one attempt, the walltime as timeout, the env
        record = shoal.jobs.get_job(update.backing_id)
        assert record is not None and record.status is JobStatus.FAILED and record.attempts == 1
        job = record.job
        assert (job.name, job.max_attempts, job.timeout, job.shape.wall_time) == ("align", 1, 90.0, 90.0)
        assert (job.shape.resources.cores, job.shape.resources.memory, job.shape.resources.disk) == (2, GiB, 2 * GiB)
        assert job.shape.preemptible is False
        assert {"SHARED": "1", "OWN": "x"}.items() <= job.env.items()
        assert job.command is not None and job.command.startswith("_toil_contained_executor ")
        assert job.feed == batch.feed
    finally:
        batch.shutdown()


def test_killing_a_running_job_withdraws_it_before_returning(shoal: LocalShoal, tmp_path: Path) -> None:
    # GIVEN a running job that records its process id (the process Toil's executor starts for it)
    pid_file = tmp_path / "pid"
    batch = _batch_system()
    pid = 0
    try:
        batch_id = batch.issueBatchJob(f"echo $$ > {pid_file}; exec sleep 1000", _job("sleeper"))
        _wait(lambda: batch_id in batch.getRunningBatchJobIDs() and pid_file.exists() and pid_file.read_text())
        pid = int(pid_file.read_text())
        # WHEN Toil kills it
        batch.killBatchJobs([batch_id])
        # THEN it is no longer issued nor running, its record says it stopped, and it is never reported
        assert batch_id not in batch.getIssuedBatchJobIDs()
        assert batch.getRunningBatchJobIDs() == {}
        statuses = shoal.jobs.statuses([f"{batch._id_prefix}{batch_id}"])
        assert statuses == {f"{batch._id_prefix}{batch_id}": (JobStatus.CANCELLED, None)}
        assert batch.getUpdatedBatchJob(maxWait=2) is None
    finally:
        batch.shutdown()
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_killing_a_running_job_ends_its_process(shoal: LocalShoal, tmp_path: Path) -> None:
    # GIVEN a running job that records its process id (Toil's executor runs it in a process group of its own)
    pid_file = tmp_path / "pid"
    batch = _batch_system()
    pid = 0
    try:
        batch_id = batch.issueBatchJob(f"echo $$ > {pid_file}; exec sleep 1000", _job("sleeper"))
        _wait(lambda: batch_id in batch.getRunningBatchJobIDs() and pid_file.exists() and pid_file.read_text())
        pid = int(pid_file.read_text())
        # WHEN Toil kills it
        batch.killBatchJobs([batch_id])
        # THEN the job's own process is gone too
        _wait(lambda: not _alive(pid), timeout=10)
    finally:
        batch.shutdown()
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_job_no_node_type_can_hold_is_refused_at_issue_time(shoal: LocalShoal) -> None:
    # GIVEN a cluster of c5.xlarge (4 vCPUs, 8 GiB) and a batch system allowed any size
    batch = _batch_system()
    try:
        # WHEN jobs too big for every node type, or wanting a non-GPU accelerator, are issued
        # THEN each is refused with Toil's InsufficientSystemResources, naming the resource
        for requirements, resource in (
            ({"cores": 16}, "cores"),
            ({"memory": 64 * GiB}, "memory"),
            ({"accelerators": [{"kind": "gpu", "count": 1}]}, "accelerators"),
            ({"accelerators": [{"kind": "fpga", "count": 1}]}, "accelerators"),
        ):
            with pytest.raises(InsufficientSystemResources) as refused:
                batch.issueBatchJob("true", _job("huge", **requirements))
            assert refused.value.resource == resource
        # AND nothing was issued
        assert batch.getIssuedBatchJobIDs() == []
    finally:
        batch.shutdown()


def test_a_restarted_leader_never_reuses_a_shoal_job_id(shoal: LocalShoal) -> None:
    # GIVEN two batch systems of one workflow, as a leader and its --restart would make
    workflow = str(uuid.uuid4())
    first, second = _batch_system(_config(workflow)), _batch_system(_config(workflow))
    try:
        # WHEN each issues its first job (both get batch id 0 from Toil's numbering)
        ids = [b.issueBatchJob("true", _job("first")) for b in (first, second)]
        updates = [b.getUpdatedBatchJob(maxWait=60) for b in (first, second)]
        # THEN both ran as distinct Shoal jobs and each leader heard of its own only
        assert all(u is not None and u.exitStatus == 0 for u in updates)
        backing = [u.backing_id for u in updates if u is not None]
        assert ids[0] == ids[1] and backing[0] != backing[1]
        assert all(b.getUpdatedBatchJob(maxWait=0) is None for b in (first, second))
    finally:
        first.shutdown()
        second.shutdown()


def test_a_local_job_runs_on_the_leader_not_on_the_cluster(shoal: LocalShoal, tmp_path: Path) -> None:
    # GIVEN a job marked local (as CWL's glue jobs are)
    batch = _batch_system()
    marker = tmp_path / "leader-ran"
    try:
        description = _job("glue")
        description.local = True
        # WHEN it is issued
        batch_id = batch.issueBatchJob(f"touch {marker}", description)
        update = batch.getUpdatedBatchJob(maxWait=60)
        # THEN it ran here, and no Shoal job was made for it
        assert update is not None and (update.jobID, update.exitStatus) == (batch_id, 0)
        assert marker.exists()
        assert update.backing_id is None or not update.backing_id.startswith("toil-")
    finally:
        batch.shutdown()


def test_shutdown_withdraws_the_jobs_still_issued(shoal: LocalShoal) -> None:
    # GIVEN a job that would run for a long time
    batch = _batch_system()
    batch_id = batch.issueBatchJob("sleep 1000", _job("long"))
    _wait(lambda: batch_id in batch.getRunningBatchJobIDs())
    job_id = f"{batch._id_prefix}{batch_id}"
    # WHEN the leader shuts the batch system down
    batch.shutdown()
    # THEN the job is cancelled and its agent ends it
    _wait(lambda: shoal.jobs.statuses([job_id]) == {job_id: (JobStatus.CANCELLED, None)}, timeout=30)


def test_without_a_cluster_the_error_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SHOAL_CLUSTER_NAME", "SHOAL_TABLE_NAME", "SHOAL_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match="--shoalCluster"):
        _batch_system()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False

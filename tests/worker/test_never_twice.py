"""A job never runs twice at once, and a finished job leaves nothing running (issue 13, items 1-3).

The witnesses are independent of the agent and of the job records: each job appends to files itself
("start ATTEMPT" on start, "done" on completion, the pid of its daemon), and holds an ``flock`` on a
lock file in every process of its tree, so a second copy that starts while any process of the first
still lives finds the lock taken and writes "OVERLAP". A killed tree releases the lock.

Items 2 and 3 run the agent in a thread against in-process moto; item 1 kills a real ``shoal-worker``
process with SIGKILL and starts another with the same node id, both against a moto server on loopback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from shared.adapters.job_store import DynamoJobStore
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.state_table import StateTable, make_table
from shared.domain.cluster_state import JobStatus, Market, NodeRecord, NodeState
from shared.local import moto_patches
from shared.local.moto_server import LocalCloud
from shared.services.job_message import encode_job_message
from shared.worker import process_tree
from shared.worker.runner import JobProcess
from tests.worker.conftest import Cluster, make_job, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for a reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def witnessed(tmp_path: Path, body: str) -> str:
    """A job command that records its starts, takes the tree-wide lock (or reports an overlap), then runs body."""
    return (
        f"exec 9>>{tmp_path / 'lock'}; flock -n 9 || echo OVERLAP >> {tmp_path / 'witness'}; "
        f'echo "start $SHOAL_JOB_ATTEMPT" >> {tmp_path / "witness"}; {body}'
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# ── item 3: a daemon ends with its job ────────────────────────────────────────────────────────────────


def test_a_job_that_daemonizes_leaves_no_process_behind(tmp_path: Path) -> None:
    # GIVEN a job that starts a daemon in a session of its own (setsid) and exits 0 a moment later
    pid_file = tmp_path / "daemon.pid"
    job = make_job("job", f"setsid sh -c 'echo $$ > {pid_file}; while :; do sleep 0.1; done' & sleep 1")
    # WHEN it runs to its end
    result = JobProcess(job, attempt=1, work_root=tmp_path / "work", kill_grace=0.5).run()
    # THEN it succeeded, and by the time run() returned its daemon was gone (no waiting here)
    assert result.succeeded
    daemon = int(pid_file.read_text())
    assert not _alive(daemon), "the job's daemon outlived the job"


def test_the_agent_records_a_daemonizing_job_with_its_daemon_gone(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN a job that daemonizes, run by an agent
    pid_file = tmp_path / "daemon.pid"
    cluster.submit(make_job("daemon", f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 300' & sleep 1"))
    agent = cluster.agent()
    agent.step()
    # WHEN the job is settled
    wait_until(lambda: cluster.jobs.get_job("daemon").status is JobStatus.SUCCEEDED, what="the job to succeed")
    # THEN its daemon no longer runs
    assert not _alive(int(pid_file.read_text()))


# ── item 2: a drain waits for the whole tree; each start has its own number ────────────────────────────


def test_a_drained_job_that_ignores_term_goes_back_only_once_its_tree_is_gone(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN a job whose first run ignores SIGTERM (and so does its child) and whose later runs finish at once
    first = tmp_path / "first"
    body = f"if [ ! -e {first} ]; then touch {first}; trap '' TERM; sleep 30; fi; echo done >> {tmp_path / 'done'}"
    cluster.submit(make_job("stubborn", witnessed(tmp_path, body)))
    draining = cluster.agent("i-draining", kill_grace=1.5)
    cluster.start(draining)
    wait_until(lambda: lines(tmp_path / "witness") == ["start 1"], what="the first run to start")
    # AND another node waiting for work
    cluster.start(cluster.agent("i-other"))

    # WHEN the first node is stopped (SIGTERM: evacuate)
    draining.request_interrupt("SIGTERM")

    # THEN the job completes once, on the other node, and its second copy never overlapped the first
    wait_until(lambda: cluster.jobs.get_job("stubborn").status is JobStatus.SUCCEEDED, timeout=20, what="the rerun")
    assert lines(tmp_path / "witness") == ["start 1", "start 2"]
    assert lines(tmp_path / "done") == ["done"]
    record = cluster.jobs.get_job("stubborn")
    assert (record.node, record.attempts, record.starts) == ("i-other", 1, 2)


# ── item 1: an agent killed with SIGKILL and restarted with the same node id ───────────────────────────


@dataclass
class Served:
    """Queues and the state table on a moto server; real ``shoal-worker`` processes use it."""

    cloud: LocalCloud
    sqs: Any
    queue_url: str
    dlq_url: str
    jobs: DynamoJobStore
    work: Path

    def worker(self, node_id: str, log: Path) -> subprocess.Popen[bytes]:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")},
            **self.cloud.environ,
            "SHOAL_QUEUE_URL": self.queue_url,
            "SHOAL_DLQ_URL": self.dlq_url,
            "SHOAL_TABLE_NAME": "shoal-state",
            "SHOAL_WORK_DIR": str(self.work),
            "SHOAL_IMDS_URL": "off",
            "SHOAL_NODE_ID": node_id,
            "SHOAL_POLL_WAIT": "0",
            "SHOAL_VISIBILITY_TIMEOUT": "3",
            "SHOAL_HEARTBEAT_INTERVAL": "0.5",
            "SHOAL_CORES": "2",
            "SHOAL_MEMORY": "1GiB",
            "PYTHONPATH": str(ROOT),
        }
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "shared.worker.main"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def submit(self, job_id: str, command: str) -> None:
        job = make_job(job_id, command)
        self.jobs.put_jobs([job], 0.0)
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=encode_job_message(job))

    def counts(self) -> tuple[int, int]:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _ignore_event(rule: str, target: dict[str, Any], event: dict[str, Any]) -> None:
    del rule, target, event


def _no_lambda(name: str, payload: bytes) -> tuple[bytes, str | None]:
    del payload
    return f'{{"errorMessage": "no function {name} here"}}'.encode(), "Unhandled"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    cloud = LocalCloud(
        region="us-east-1",
        speed=1.0,
        hooks=moto_patches.Hooks(invoke_lambda=_no_lambda, deliver_event=_ignore_event, speed=1.0),
    )
    cloud.start()
    workers_work = tmp_path / "work"
    try:
        sqs = boto3.client("sqs", region_name="us-east-1")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dlq_url = sqs.create_queue(QueueName="shoal-dlq")["QueueUrl"]
        queue_url = sqs.create_queue(QueueName="shoal-jobs")["QueueUrl"]
        make_table(dynamodb, "shoal-state")
        table = StateTable("shoal-state", client=dynamodb)
        DynamoNodeStore(table).put_node(
            NodeRecord(
                instance_id="i-crash",
                offer_key="c5.large",
                instance_type="c5.large",
                market=Market.SPOT,
                state=NodeState.ACTIVE,
            )
        )
        yield Served(cloud, sqs, queue_url, dlq_url, DynamoJobStore(table), workers_work)
    finally:
        # Whatever a test's workers left running ends here, whatever the test's outcome.
        process_tree.end_matching(process_tree.owned_by(process_tree.owner_of("i-crash", workers_work)), grace=0)
        cloud.stop()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_an_agent_killed_mid_job_is_followed_by_one_that_ends_the_orphan_before_rerunning(
    served: Served, tmp_path: Path
) -> None:
    # GIVEN a worker running a job whose first run takes 30 s and whose later runs finish at once
    first = tmp_path / "first"
    body = f"if [ ! -e {first} ]; then touch {first}; sleep 30; fi; echo done >> {tmp_path / 'done'}"
    served.submit("long", witnessed(tmp_path, body))
    log = tmp_path / "worker.log"
    killed = served.worker("i-crash", log)
    try:
        wait_until(lambda: lines(tmp_path / "witness") == ["start 1"], timeout=30, what="the first run to start")
        # WHEN the worker is killed with SIGKILL mid-job (its job's processes live on) and another starts
        killed.kill()
        killed.wait()
        restarted = served.worker("i-crash", log)
        try:
            wait_until(
                lambda: (r := served.jobs.get_job("long")) is not None and r.status is JobStatus.SUCCEEDED,
                timeout=40,
                what="the job to succeed",
            )
        finally:
            _stop(restarted)
    finally:
        _stop(killed)
    # THEN the orphaned run was ended before the rerun started: no overlap, one completion, two starts counted
    assert lines(tmp_path / "witness") == ["start 1", "start 2"], log.read_text()
    assert lines(tmp_path / "done") == ["done"]
    record = served.jobs.get_job("long")
    assert record is not None and (record.starts, record.attempts) == (2, 1)
    assert "was running when the agent stopped" in log.read_text()


def test_a_run_that_finished_while_no_agent_watched_is_adopted_not_run_again(served: Served, tmp_path: Path) -> None:
    # GIVEN a worker running a 1-second job
    served.submit("quick", witnessed(tmp_path, f"sleep 1; echo done >> {tmp_path / 'done'}"))
    log = tmp_path / "worker.log"
    killed = served.worker("i-crash", log)
    try:
        wait_until(lambda: lines(tmp_path / "witness") == ["start 1"], timeout=30, what="the run to start")
        # WHEN the worker is killed, the job finishes by itself, and then a new worker starts on the node
        killed.kill()
        killed.wait()
        wait_until(lambda: lines(tmp_path / "done") == ["done"], what="the orphaned run to finish")
        restarted = served.worker("i-crash", log)
        try:
            wait_until(
                lambda: (r := served.jobs.get_job("quick")) is not None and r.status is JobStatus.SUCCEEDED,
                timeout=40,
                what="the job to be settled",
            )
            wait_until(lambda: served.counts() == (0, 0), timeout=20, what="its message to be deleted")
        finally:
            _stop(restarted)
    finally:
        _stop(killed)
    # THEN its success was adopted: it ran once, and its record says so
    assert lines(tmp_path / "witness") == ["start 1"]
    assert lines(tmp_path / "done") == ["done"]
    record = served.jobs.get_job("quick")
    assert record is not None and (record.starts, record.attempts, record.exit_code) == (1, 1, 0)


def test_a_restarted_agent_removes_the_containers_its_predecessor_left(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN a docker client (a script that logs its calls) that lists two containers with this node's label
    calls = tmp_path / "docker-calls"
    docker = tmp_path / "docker"
    docker.write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\nif [ "$1" = ps ]; then echo c1; echo c2; fi\n', encoding="utf-8"
    )
    docker.chmod(0o755)
    agent = cluster.agent("i-node1")
    agent.state.docker = str(docker)
    # WHEN the agent recovers before taking work
    agent.recover()
    # THEN it asked for the containers of its node's agents by label, and removed them
    owner = process_tree.owner_of("i-node1", agent.settings.work_root)
    assert lines(calls) == [
        f"ps --all --quiet --filter label=shoal.owner={owner}",
        "rm --force c1 c2",
    ]


# ── the end of a finished job is never dropped: a failed write or a crash before it is not a second run ──


class _RecordingOutage:
    """The job store's transactions (how a job's end is recorded) fail with a 500 while ``on``, from a
    botocore hook on the real client; counts the calls it refused."""

    def __init__(self, client: Any) -> None:
        self.on = False
        self.refused = 0
        client.meta.events.register("before-call.dynamodb.TransactWriteItems", self._refuse)

    def _refuse(self, **_: Any) -> None:
        if self.on:
            self.refused += 1
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "TransactWriteItems")


def _outage_during_the_end_of(cluster: Cluster, tmp_path: Path) -> _RecordingOutage:
    """A job that runs 0.3 s on node i-node1, whose end cannot be recorded for a while once it has started."""
    outage = _RecordingOutage(cluster.dynamodb)
    cluster.submit(make_job("quick", witnessed(tmp_path, f"sleep 0.3; echo done >> {tmp_path / 'done'}")))
    return outage


def test_a_job_whose_end_could_not_be_recorded_at_first_is_not_run_again(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN a running job whose end the store refuses to record for a while (messages reappear after 2 s)
    outage = _outage_during_the_end_of(cluster, tmp_path)
    cluster.start(cluster.agent("i-node1", visibility_timeout=2))
    wait_until(lambda: lines(tmp_path / "witness") == ["start 1"], what="the run to start")
    outage.on = True
    # WHEN the job ends, its end is refused twice (past its message's visibility), then the store is back
    wait_until(lambda: outage.refused >= 2, timeout=20, what="two refused writes of its end")
    assert lines(tmp_path / "done") == ["done"]
    outage.on = False
    # THEN its end is recorded, and it ran once
    wait_until(lambda: cluster.jobs.get_job("quick").status is JobStatus.SUCCEEDED, timeout=20, what="its end")
    wait_until(lambda: cluster.counts() == (0, 0), timeout=20, what="its message to be deleted")
    assert lines(tmp_path / "witness") == ["start 1"]
    assert cluster.jobs.get_job("quick").starts == 1


def test_an_agent_that_crashes_before_recording_a_finished_job_leaves_it_for_the_next_to_adopt(
    cluster: Cluster, tmp_path: Path
) -> None:
    # GIVEN a job that finished while the store refused to record its end
    outage = _outage_during_the_end_of(cluster, tmp_path)
    crashed = cluster.agent("i-node1", visibility_timeout=2)
    thread = cluster.start(crashed)
    wait_until(lambda: lines(tmp_path / "witness") == ["start 1"], what="the run to start")
    outage.on = True
    wait_until(lambda: outage.refused >= 1, timeout=20, what="a refused write of its end")
    # WHEN its agent dies (kill -9), the store comes back, and a new agent starts on the node
    crashed.abandon()
    thread.join(timeout=10)
    outage.on = False
    cluster.start(cluster.agent("i-node1", visibility_timeout=2))
    # THEN the new agent adopts the success its predecessor could not record: the job ran once
    wait_until(lambda: cluster.jobs.get_job("quick").status is JobStatus.SUCCEEDED, timeout=20, what="its adoption")
    wait_until(lambda: cluster.counts() == (0, 0), timeout=20, what="its message to be deleted")
    assert lines(tmp_path / "witness") == ["start 1"]
    assert lines(tmp_path / "done") == ["done"]
    record = cluster.jobs.get_job("quick")
    assert (record.starts, record.attempts, record.exit_code) == (1, 1, 0)

"""Spot interruption, end to end: a fake IMDS on loopback announces it mid-job; nothing is lost or run twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.domain.cluster_state import JobStatus, NodeState
from shared.worker.imds import ImdsClient, ImdsError, SpotInterruptionWatch
from tests.worker.conftest import Cluster, make_job, wait_until
from tests.worker.fake_imds import FakeImds


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    server = FakeImds(instance_id="i-spot").start()
    yield server
    server.stop()


def test_imds_client_uses_a_session_token_and_reads_404_as_no_notice(imds: FakeImds) -> None:
    # GIVEN the fake IMDS  WHEN the client asks
    client = ImdsClient(imds.url)
    # THEN it reads the instance id and region, and no notice yet
    assert client.instance_id() == "i-spot"
    assert client.region() == "us-east-1"
    assert client.spot_notice() is None
    # AND it took one token and reused it
    assert [r for r in imds.requests if r[0] == "PUT"] == [("PUT", "/latest/api/token")]
    # WHEN an interruption is announced  THEN the client sees it
    imds.announce("stop", "2026-01-01T00:02:00Z")
    notice = client.spot_notice()
    assert notice is not None and (notice.action, notice.time) == ("stop", "2026-01-01T00:02:00Z")


def test_imds_base_url_comes_from_the_environment(imds: FakeImds) -> None:
    assert ImdsClient(environ={"SHOAL_IMDS_URL": imds.url}).instance_id() == "i-spot"
    assert ImdsClient(environ={}).base_url == "http://169.254.169.254"


def test_an_unreachable_imds_is_an_error_and_the_watch_treats_it_as_no_notice() -> None:
    # GIVEN nothing listening on the IMDS address
    client = ImdsClient("http://127.0.0.1:9", timeout=0.5)
    # THEN the client raises, and the watch says "no notice" instead of stopping the agent
    with pytest.raises(ImdsError, match="IMDSv2 token"):
        client.instance_id()
    watch = SpotInterruptionWatch(client)
    assert watch() is None
    assert watch() is None


def test_an_interruption_mid_job_sends_it_elsewhere_and_it_completes_once(
    cluster: Cluster, imds: FakeImds, tmp_path: Path
) -> None:
    # GIVEN a spot agent watching the fake IMDS, running a job that records each completion
    completions, started = tmp_path / "completions", tmp_path / "started"
    command = f"echo $SHOAL_JOB_ATTEMPT >> {started}; sleep 2; echo done >> {completions}"
    cluster.submit(make_job("survivor", command), make_job("bystander", f"echo b >> {tmp_path / 'b'}"))
    spot = cluster.agent(
        "i-spot", interruption_check=SpotInterruptionWatch(ImdsClient(imds.url)), interruption_poll_interval=0.05
    )
    spot_thread = cluster.start(spot)
    wait_until(lambda: cluster.jobs.get_job("survivor").status is JobStatus.RUNNING, what="the job to start")
    wait_until(started.exists, what="the job's process to start")

    # WHEN EC2 announces the interruption mid-job
    imds.announce()

    # THEN within seconds the job is back in the queue, the spot agent has stopped, its node is INTERRUPTED
    wait_until(lambda: cluster.jobs.get_job("survivor").status is JobStatus.QUEUED, timeout=3, what="the requeue")
    spot_thread.join(timeout=5)
    assert not spot_thread.is_alive() and spot.evacuated
    assert cluster.nodes.get_node("i-spot").state == NodeState.INTERRUPTED
    assert not completions.exists()
    record = cluster.jobs.get_job("survivor")
    assert record.reason is not None and record.reason.startswith("spot interruption notice: terminate")

    # AND another agent completes it (and the job nobody had finished yet)
    other = cluster.agent("i-ondemand")
    cluster.start(other)
    wait_until(
        lambda: {cluster.jobs.get_job(j).status for j in ("survivor", "bystander")} == {JobStatus.SUCCEEDED},
        timeout=15,
        what="the other agent to finish both jobs",
    )
    wait_until(lambda: cluster.counts() == (0, 0), what="the messages to be deleted")

    # AND nothing ran twice to completion: one completion, two starts numbered apart, the attempt given back
    assert completions.read_text() == "done\n"
    assert started.read_text().split() == ["1", "2"]
    record = cluster.jobs.get_job("survivor")
    assert record.node == "i-ondemand" and (record.attempts, record.starts) == (1, 2)
    assert cluster.dead_letters() == []

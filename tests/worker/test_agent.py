"""The agent against moto SQS and the job/node stores, running real ``sh -c`` jobs.

Most tests drive the loop by hand (``step`` receives one batch, ``wait_idle`` waits for the job threads,
``tick`` does the timed work at a given time), so nothing sleeps on the wall clock; the visibility
heartbeat test runs the real loop for a couple of seconds because SQS visibility is real time.
"""

from __future__ import annotations

import threading
from pathlib import Path

from shared.domain.cluster_state import JobStatus, NodeState
from shared.domain.resources import Resources
from shared.domain.units import GiB
from shared.services.job_message import encode_job_message
from shared.worker.agent import RECYCLE_AFTER_RECEIVES, Outcome
from tests.worker.conftest import Cluster, make_job, wait_until


def test_a_job_that_succeeds_is_recorded_then_its_message_deleted(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN a named job that writes a file and prints
    out = tmp_path / "ran"
    cluster.submit(make_job("j1", f"echo hello; touch {out}", name="align"))
    agent = cluster.agent()
    # WHEN the agent takes it and it ends
    assert agent.step() == [Outcome.STARTED]
    assert agent.wait_idle(timeout=10)
    agent.tick()
    # THEN it ran, the record says SUCCEEDED with its output, the message is gone, the runtime is learned
    assert out.exists()
    record = cluster.jobs.get_job("j1")
    assert record.status is JobStatus.SUCCEEDED and record.exit_code == 0 and record.attempts == 1
    assert record.output_tail == "hello\n" and record.finished_at is not None
    assert cluster.counts() == (0, 0)
    assert 0 < cluster.runtimes.average_runtimes()["align"] < 5
    assert agent.free() == Resources(cores=2, memory=4 * GiB, disk=20 * GiB)


def test_a_failing_job_is_retried_up_to_its_limit_then_dead_lettered(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN a job that always exits 2, allowed 3 attempts
    attempts = tmp_path / "attempts"
    cluster.submit(make_job("flaky", f"echo try >> {attempts}; echo boom; exit 2", max_attempts=3))
    agent = cluster.agent()
    # WHEN the agent takes it three times (each failure makes it visible again at once: retry_delay 0)
    for attempt in (1, 2, 3):
        assert agent.step() == [Outcome.STARTED], f"attempt {attempt}"
        assert agent.wait_idle(timeout=10)
        expected = JobStatus.QUEUED if attempt < 3 else JobStatus.FAILED
        assert cluster.jobs.get_job("flaky").status is expected
    # THEN it ran three times, the record is FAILED with the reason, and the DLQ has it with the reason
    assert attempts.read_text().count("try") == 3
    record = cluster.jobs.get_job("flaky")
    assert record.attempts == 3 and record.exit_code == 2 and record.reason == "exit code 2"
    assert record.output_tail == "boom\n"
    [dead] = cluster.dead_letters()
    assert dead["job_id"] == "flaky" and "failed 3 time(s)" in dead["reason"] and "exit code 2" in dead["reason"]
    assert dead["body"] == encode_job_message(
        make_job("flaky", f"echo try >> {attempts}; echo boom; exit 2", max_attempts=3)
    )
    # AND nothing is left on the job queue, and it is not taken again
    assert cluster.counts() == (0, 0)
    assert agent.step() == []


def test_a_retry_waits_out_its_backoff(cluster: Cluster) -> None:
    # GIVEN a job that fails, and a retry delay of 60 s
    cluster.submit(make_job("slow-retry", "exit 1"))
    agent = cluster.agent(retry_delay=60)
    # WHEN it fails once
    assert agent.step() == [Outcome.STARTED]
    assert agent.wait_idle(timeout=10)
    # THEN it is queued again but hidden for the backoff, not visible at once
    assert cluster.jobs.get_job("slow-retry").status is JobStatus.QUEUED
    assert cluster.counts() == (0, 1)
    assert agent.step() == []


def test_a_job_over_its_timeout_is_killed_and_fails(cluster: Cluster) -> None:
    # GIVEN a job of one attempt that sleeps past its 0.3 s timeout
    cluster.submit(make_job("stuck", "echo started; sleep 30", timeout=0.3, max_attempts=1))
    agent = cluster.agent()
    # WHEN it runs
    assert agent.step() == [Outcome.STARTED]
    assert agent.wait_idle(timeout=10)
    # THEN it was killed, recorded FAILED with the timeout as the reason, and dead-lettered
    record = cluster.jobs.get_job("stuck")
    assert record.status is JobStatus.FAILED
    assert record.reason.startswith("timed out after") and record.output_tail == "started\n"
    [dead] = cluster.dead_letters()
    assert "timed out" in dead["reason"]
    assert cluster.counts() == (0, 0)


def test_a_malformed_message_goes_to_the_dead_letter_queue_with_the_error(cluster: Cluster) -> None:
    # GIVEN a message that is not JSON, and one that is JSON but misses a required field
    cluster.send_raw("this is not a job")
    cluster.send_raw('{"v": 1, "job": {"id": "x", "cores": 1, "memory": 1, "disk": 1}}')
    agent = cluster.agent()
    # WHEN the agent receives them
    assert agent.step() == [Outcome.INVALID, Outcome.INVALID]
    # THEN both are dead-lettered with their validation error, and deleted from the job queue
    dead = {d["body"]: d["reason"] for d in cluster.dead_letters()}
    missing_field = '{"v": 1, "job": {"id": "x", "cores": 1, "memory": 1, "disk": 1}}'
    assert set(dead) == {"this is not a job", missing_field}
    assert all(reason.startswith("not a valid job message: ") for reason in dead.values())
    assert "wall_time" in dead[missing_field]
    assert cluster.counts() == (0, 0)


def test_a_message_that_disagrees_with_its_job_record_is_dead_lettered_not_run(
    cluster: Cluster, tmp_path: Path
) -> None:
    # GIVEN a recorded job, and a hand-written message under the same id with another command
    ran = tmp_path / "impostor-ran"
    cluster.jobs.put_jobs([make_job("j1", "true")], 0.0)
    impostor = encode_job_message(make_job("j1", f"touch {ran}"))
    cluster.send_raw(impostor)
    agent = cluster.agent()
    # WHEN the agent receives it
    assert agent.step() == [Outcome.DUPLICATE]
    # THEN it did not run, the record is untouched, and the message is in the DLQ saying why
    assert not ran.exists()
    record = cluster.jobs.get_job("j1")
    assert record.status is JobStatus.QUEUED and record.attempts == 0
    [dead] = cluster.dead_letters()
    assert dead["body"] == impostor and "does not match the job recorded under that id" in dead["reason"]
    assert cluster.counts() == (0, 0)


def test_a_job_too_big_for_the_node_goes_back_at_once(cluster: Cluster) -> None:
    # GIVEN a 64-core job and a 2-core node
    cluster.submit(make_job("huge", "true", resources=Resources(cores=64, memory=GiB, disk=GiB)))
    agent = cluster.agent()
    # WHEN the agent receives it
    assert agent.step() == [Outcome.DECLINED]
    # THEN it is visible again at once (not after the visibility timeout), untouched in the store
    assert cluster.counts() == (1, 0)
    record = cluster.jobs.get_job("huge")
    assert record.status is JobStatus.QUEUED and record.attempts == 0
    # AND a node big enough takes it
    big = cluster.agent("i-big", capacity=Resources(cores=64, memory=8 * GiB, disk=20 * GiB))
    assert big.step() == [Outcome.STARTED]
    assert big.wait_idle(timeout=10)
    assert cluster.jobs.get_job("huge").status is JobStatus.SUCCEEDED


def test_jobs_that_fit_run_side_by_side_and_the_rest_wait_for_room(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN two 1-core jobs that each wait for the other to run (and then for a go), a third 1-core job,
    # and a 2-core node
    a, b, go = tmp_path / "a", tmp_path / "b", tmp_path / "go"
    cluster.submit(make_job("pair-a", f"touch {a}; while [ ! -e {b} ] || [ ! -e {go} ]; do sleep 0.01; done"))
    cluster.submit(make_job("pair-b", f"touch {b}; while [ ! -e {a} ] || [ ! -e {go} ]; do sleep 0.01; done"))
    agent = cluster.agent()
    # WHEN the agent takes the first two
    started = agent.step()
    while started.count(Outcome.STARTED) < 2:
        started += agent.step()
    # THEN they run at once (each sees the other's file) and the node is full
    wait_until(lambda: a.exists() and b.exists(), what="both jobs running")
    assert agent.free().cores == 0
    cluster.submit(make_job("third", "true"))
    assert agent.step(wait_seconds=0) == []  # full: it does not even receive
    go.touch()
    assert agent.wait_idle(timeout=10)
    # AND once they finish the third runs
    assert agent.step() == [Outcome.STARTED]
    assert agent.wait_idle(timeout=10)
    assert {cluster.jobs.get_job(j).status for j in ("pair-a", "pair-b", "third")} == {JobStatus.SUCCEEDED}


def test_a_duplicate_message_of_a_finished_job_is_deleted_not_rerun(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN a job that has succeeded
    count = tmp_path / "count"
    job = make_job("once", f"echo run >> {count}")
    cluster.submit(job)
    agent = cluster.agent()
    assert agent.step() == [Outcome.STARTED]
    assert agent.wait_idle(timeout=10)
    # WHEN its message arrives again (SQS delivers at least once; a delete may have been lost)
    cluster.send_raw(encode_job_message(job))
    # THEN the duplicate is deleted and the job did not run again
    assert agent.step() == [Outcome.DUPLICATE]
    agent.tick()
    assert cluster.counts() == (0, 0)
    assert count.read_text() == "run\n"
    assert cluster.jobs.get_job("once").attempts == 1


def test_a_duplicate_message_of_a_failed_job_is_dead_lettered_not_rerun(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN a job that has used up its one attempt and been dead-lettered
    count = tmp_path / "count"
    job = make_job("doomed", f"echo run >> {count}; exit 1", max_attempts=1)
    cluster.submit(job)
    agent = cluster.agent()
    assert agent.step() == [Outcome.STARTED]
    assert agent.wait_idle(timeout=10)
    assert len(cluster.dead_letters()) == 1
    # WHEN its message arrives again (the delete after dead-lettering was lost, or it was resubmitted)
    cluster.send_raw(encode_job_message(job))
    # THEN it does not run again; it is dead-lettered once more with the reason it failed, and deleted
    assert agent.step() == [Outcome.DUPLICATE]
    assert count.read_text() == "run\n"
    reasons = sorted(dead["reason"] for dead in cluster.dead_letters())
    assert reasons == [
        "job doomed failed 1 time(s), the limit; last: exit code 1",
        "job doomed had already failed 1 time(s); last: exit code 1",
    ]
    assert cluster.counts() == (0, 0)


def test_a_message_of_a_job_running_elsewhere_is_hidden_again(cluster: Cluster) -> None:
    # GIVEN a job the store says runs on another node
    job = make_job("elsewhere", "true")
    cluster.submit(job)
    cluster.jobs.start_job(job, "i-other", 0.0)
    agent = cluster.agent()
    # WHEN this agent receives its message  THEN it leaves it hidden for a while and does not run it
    assert agent.step() == [Outcome.DUPLICATE]
    assert cluster.counts() == (0, 1)
    assert cluster.jobs.get_job("elsewhere").node == "i-other"


def test_a_job_left_running_here_by_a_crashed_agent_is_restarted(cluster: Cluster) -> None:
    # GIVEN a job the store says runs on this node, though no agent here runs it (the agent restarted)
    orphan = make_job("orphan", "true")
    cluster.submit(orphan)
    cluster.jobs.start_job(orphan, "i-node1", 0.0)
    agent = cluster.agent("i-node1")
    # WHEN its message comes back  THEN the agent takes it over and runs it
    assert agent.step() == [Outcome.STARTED]
    assert agent.wait_idle(timeout=10)
    assert cluster.jobs.get_job("orphan").status is JobStatus.SUCCEEDED


def test_a_message_without_a_job_record_is_recorded_and_run(cluster: Cluster) -> None:
    # GIVEN a job message sent straight to the queue, with no record in the store
    cluster.send_raw(encode_job_message(make_job("direct", "true")))
    agent = cluster.agent()
    # WHEN the agent takes it  THEN it is recorded (so the scaler counts it) and runs
    assert agent.step() == [Outcome.STARTED]
    assert agent.wait_idle(timeout=10)
    assert cluster.jobs.get_job("direct").status is JobStatus.SUCCEEDED


def test_a_draining_node_finishes_its_running_job_and_takes_no_new_one(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN an agent running a job that waits for a go signal
    go = tmp_path / "go"
    cluster.submit(make_job("running", f"while [ ! -e {go} ]; do sleep 0.01; done"))
    agent = cluster.agent()
    assert agent.step() == [Outcome.STARTED]
    # WHEN the scaler drains the node, the agent's next heartbeat hears it, and a new job arrives
    cluster.nodes.mark_draining("i-node1", 1.0)
    agent.tick(now=10_000.0)
    assert agent.draining
    cluster.submit(make_job("new", "true"))
    # THEN the agent takes no new job
    assert agent.step() == []
    # AND the heartbeat that heard of the drain was followed at once by one acknowledging it, still busy
    node = cluster.nodes.get_node("i-node1")
    assert node.drain_acknowledged and list(node.running_jobs) == ["running"]
    # AND the running job still finishes and is recorded
    go.touch()
    assert agent.wait_idle(timeout=10)
    assert cluster.jobs.get_job("running").status is JobStatus.SUCCEEDED
    assert agent.step() == []
    assert cluster.jobs.get_job("new").status is JobStatus.QUEUED
    assert cluster.counts() == (1, 0)
    # AND its next report tells the scaler it is idle, knowing of the drain: now it may be terminated
    agent.tick(now=20_000.0)
    node = cluster.nodes.get_node("i-node1")
    assert node.drain_acknowledged and not node.busy


def test_a_report_before_the_agent_knows_of_a_drain_does_not_acknowledge_it(cluster: Cluster) -> None:
    # GIVEN an idle agent that has reported, and a drain the scaler marks after that report
    agent = cluster.agent()
    agent.tick(now=100.0)
    cluster.nodes.mark_draining("i-node1", 50.0)  # stamped with the round's start, before the report's time
    # THEN the record does not count as idle-and-drained: the report predates the drain
    node = cluster.nodes.get_node("i-node1")
    assert node.state is NodeState.DRAINING and node.heartbeat_at > node.draining_since
    assert not node.drain_acknowledged


def test_a_node_drained_before_its_agent_heard_starts_nothing_and_returns_the_job_at_once(cluster: Cluster) -> None:
    # GIVEN a node the scaler has drained, whose agent has not heartbeated since
    agent = cluster.agent()
    cluster.nodes.mark_draining("i-node1", 1.0)
    cluster.submit(make_job("late", "true"))
    # WHEN the agent receives a job
    outcomes = agent.step()
    # THEN the store refuses the start (the scaler may be terminating the node), the job stays QUEUED and
    # visible at once for another node, and the agent takes no more work
    assert Outcome.STARTED not in outcomes
    record = cluster.jobs.get_job("late")
    assert record.status is JobStatus.QUEUED and record.attempts == 0
    assert cluster.counts() == (1, 0)
    assert agent.draining


def test_the_node_heartbeat_reports_free_resources_and_running_jobs(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN an agent running one 1-core job on a 2-core node
    go = tmp_path / "go"
    cluster.submit(make_job("hb", f"while [ ! -e {go} ]; do sleep 0.01; done"))
    agent = cluster.agent(heartbeat_interval=30)
    assert agent.step() == [Outcome.STARTED]
    # WHEN its heartbeat is due
    agent.tick(now=100.0)
    # THEN the node record shows the job with its receipt handle and one core free
    node = cluster.nodes.get_node("i-node1")
    assert list(node.running_jobs) == ["hb"] and node.heartbeat_at == 100.0
    assert node.free.cores == 1
    # AND the next heartbeat is not due until the interval has passed
    agent.tick(now=110.0)
    assert cluster.nodes.get_node("i-node1").heartbeat_at == 100.0
    go.touch()
    assert agent.wait_idle(timeout=10)
    agent.tick(now=131.0)
    assert cluster.nodes.get_node("i-node1").running_jobs == {}


def test_the_visibility_heartbeat_keeps_a_long_job_hidden(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN an agent whose messages are hidden for only 2 s at a time, running a 4.5 s job (renewed every 2/3 s, so a
    # thread starved for more than 1.3 s on a loaded machine shows the message: 1 s left it only 0.67 s)
    done = tmp_path / "done"
    cluster.submit(make_job("long", f"sleep 4.5; echo x >> {done}"))
    agent = cluster.agent(visibility_timeout=2)
    cluster.start(agent)
    wait_until(lambda: cluster.jobs.get_job("long").status is JobStatus.RUNNING, what="the job to start")
    # WHEN another worker polls the queue the whole time the job runs
    seen, pause = 0, threading.Event()
    while cluster.jobs.get_job("long").status is JobStatus.RUNNING:
        seen += len(cluster.queue.receive(max_messages=10, wait_seconds=0, visibility_timeout=0))
        pause.wait(0.01)
    # THEN it never saw the message, and the job succeeded once
    wait_until(lambda: cluster.counts() == (0, 0), what="the message to be deleted")
    assert seen == 0
    assert done.read_text() == "x\n"
    assert cluster.jobs.get_job("long").status is JobStatus.SUCCEEDED


def test_evacuation_returns_running_jobs_to_the_queue_at_once(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN an agent running a long job
    done = tmp_path / "done"
    cluster.submit(make_job("evacuee", f"sleep 30; touch {done}"))
    agent = cluster.agent()
    assert agent.step() == [Outcome.STARTED]
    # WHEN it is told to go (SIGTERM or a spot notice)
    agent.evacuate("SIGTERM")
    # THEN the job is queued again without using up an attempt, visible at once, its process killed
    record = cluster.jobs.get_job("evacuee")
    assert record.status is JobStatus.QUEUED and record.reason == "SIGTERM"
    assert cluster.counts() == (1, 0)
    assert agent.wait_idle(timeout=10)
    assert not done.exists()
    assert cluster.nodes.get_node("i-node1").state == NodeState.INTERRUPTED
    # AND the agent takes nothing more
    assert agent.step() == []


def test_run_returns_after_stop_once_running_jobs_are_settled(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN an agent loop running a job
    go = tmp_path / "go"
    cluster.submit(make_job("last", f"while [ ! -e {go} ]; do sleep 0.01; done"))
    agent = cluster.agent()
    thread = cluster.start(agent)
    wait_until(lambda: cluster.jobs.get_job("last").status is JobStatus.RUNNING, what="the job to start")
    # WHEN it is stopped gracefully
    agent.stop()
    # THEN the loop waits for the job, settles it, and returns
    go.touch()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert cluster.jobs.get_job("last").status is JobStatus.SUCCEEDED
    assert cluster.counts() == (0, 0)


def test_a_job_that_fits_only_once_others_finish_goes_back_at_once(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN a 2-core node running a 1-core job
    go = tmp_path / "go"
    cluster.submit(make_job("small", f"while [ ! -e {go} ]; do sleep 0.01; done"))
    agent = cluster.agent()
    assert agent.step() == [Outcome.STARTED]
    # WHEN a 2-core job arrives
    cluster.submit(make_job("wide", "true", resources=Resources(cores=2, memory=GiB, disk=GiB)))
    # THEN it is given back at once (visible, not waiting out a timeout) and left QUEUED
    assert agent.step() == [Outcome.DECLINED]
    assert cluster.counts() == (1, 1)
    assert cluster.jobs.get_job("wide").status is JobStatus.QUEUED
    # AND once the node is free it runs
    go.touch()
    assert agent.wait_idle(timeout=10)
    assert agent.step() == [Outcome.STARTED]
    assert agent.wait_idle(timeout=10)
    assert cluster.jobs.get_job("wide").status is JobStatus.SUCCEEDED


def test_visibility_is_renewed_every_third_of_the_timeout_on_the_injected_clock(
    cluster: Cluster, tmp_path: Path
) -> None:
    # GIVEN an agent with a 90 s visibility timeout running one job, and a record of visibility calls
    calls: list[tuple[int, int]] = []
    change_visibility = cluster.queue.change_visibility

    def spy(receipts: list[str], seconds: int) -> list[str]:
        calls.append((len(receipts), seconds))
        return change_visibility(receipts, seconds)

    cluster.queue.change_visibility = spy  # type: ignore[method-assign]
    go = tmp_path / "go"
    cluster.submit(make_job("watched", f"while [ ! -e {go} ]; do sleep 0.01; done"))
    agent = cluster.agent(visibility_timeout=90)
    assert agent.step() == [Outcome.STARTED]
    # WHEN time passes on the agent's clock
    agent.tick(now=1000.0)  # first tick: due
    agent.tick(now=1029.0)  # not yet: renewed every 30 s
    agent.tick(now=1030.0)
    # THEN the running job's message was renewed twice, to the full timeout each time
    assert calls == [(1, 90), (1, 90)]
    go.touch()
    assert agent.wait_idle(timeout=10)
    # AND a settled job's message is not renewed
    agent.tick(now=1060.0)
    assert calls == [(1, 90), (1, 90)]


def test_a_job_looked_at_many_times_by_small_nodes_is_recycled_not_dead_lettered(cluster: Cluster) -> None:
    # GIVEN a 64-core job whose message small nodes have already received and returned 150 times
    cluster.submit(make_job("patient", "true", resources=Resources(cores=64, memory=GiB, disk=GiB)))
    agent = cluster.agent()
    for _ in range(RECYCLE_AFTER_RECEIVES - 1):
        assert agent.step() == [Outcome.DECLINED]
    # WHEN a small node returns it once more
    assert agent.step() == [Outcome.DECLINED]
    # THEN a fresh copy waits in the queue (its receive count starts again) and the job stays QUEUED
    fresh = cluster.queue.receive(max_messages=10, wait_seconds=0, visibility_timeout=0)
    assert [m.receive_count for m in fresh] == [1]
    assert cluster.jobs.get_job("patient").status is JobStatus.QUEUED


def test_a_cancelled_running_job_is_ended_released_and_its_message_deleted(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN an agent running a long job that would leave a mark when it finished
    done = tmp_path / "done"
    cluster.submit(make_job("withdrawn", f"sleep 30; touch {done}"))
    agent = cluster.agent(cancel_check_interval=3600)
    assert agent.step() == [Outcome.STARTED]
    agent.tick(now=0.0)  # the first round of timed work: nothing cancelled yet
    assert agent.running_job_ids() == ["withdrawn"]
    # WHEN its submitter cancels it, and the agent's next check comes
    assert cluster.jobs.cancel_jobs(["withdrawn"], reason="killed", now=1.0) == {"withdrawn": JobStatus.RUNNING}
    agent.tick(now=3601.0)
    # THEN its process ends at once, the record says it stopped (no node), and its message is gone
    assert agent.wait_idle(timeout=10)
    assert not done.exists()
    assert cluster.jobs.statuses(["withdrawn"]) == {"withdrawn": (JobStatus.CANCELLED, None)}
    agent.tick(now=3602.0)
    assert cluster.counts() == (0, 0)
    assert agent.free() == Resources(cores=2, memory=4 * GiB, disk=20 * GiB)


def test_the_message_of_a_job_cancelled_while_queued_is_deleted_not_run(cluster: Cluster, tmp_path: Path) -> None:
    # GIVEN a queued job that is cancelled before any agent takes it
    ran = tmp_path / "ran"
    cluster.submit(make_job("never", f"touch {ran}"))
    cluster.jobs.cancel_jobs(["never"], reason="killed", now=0.0)
    agent = cluster.agent()
    # WHEN an agent receives its message
    assert agent.step() == [Outcome.DUPLICATE]
    # THEN nothing ran and the message is gone
    assert agent.wait_idle(timeout=10)
    assert not ran.exists()
    assert cluster.counts() == (0, 0)
    assert cluster.jobs.get_job("never").status is JobStatus.CANCELLED

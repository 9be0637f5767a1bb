"""Submission end to end on moto: records and counters first, then messages, then one debounced event."""

from __future__ import annotations

import argparse
import io
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.job_queue import SqsJobQueue
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.state_table import StateTable
from shared.cli.submit import add_submit_parser, run_submit
from shared.domain.cluster_state import DemandCount, JobStatus
from shared.domain.jobs import Job
from shared.services.job_message import decode_job_message
from shared.services.ports import JobsNotSentError
from shared.services.submit import ShoalClient, SubmitConfig, SubmitConfigError, SubmitError, submit_jobs
from shared.services.telemetry import EVENT_DEMAND_CHANGED, EVENT_SOURCE
from shared.wiring.settings import read_submit_config
from tests.adapters.conftest import EVENT_BUS, REGION, SHAPES, TABLE_NAME, EventCapture, Queues, make_job

NOW = 1_700_000_000.0
CLUSTER = "genomics"


def spy(client: Any, service: str, operation: str) -> list[dict[str, Any]]:
    """The parameters of every ``operation`` call the client makes from now on."""
    calls: list[dict[str, Any]] = []
    client.meta.events.register(
        f"provide-client-params.{service}.{operation}", lambda params, **_: calls.append(params)
    )
    return calls


def client_for(table: StateTable, queues: Queues, events: EventCapture, *, now: float = NOW) -> ShoalClient:
    return ShoalClient(
        store=DynamoJobStore(table),
        queue=SqsJobQueue(queues.url, client=queues.client),
        events=events.publisher,
        cluster=CLUSTER,
        clock=lambda: now,
    )


@pytest.mark.slow
def test_500_jobs_of_4_shapes(table: StateTable, queues: Queues, event_capture: EventCapture) -> None:
    # GIVEN 500 jobs of 4 shapes
    jobs = [make_job(f"job-{i:03d}", i % 4) for i in range(500)]
    batches = spy(queues.client, "sqs", "SendMessageBatch")

    # WHEN they are submitted
    result = client_for(table, queues, event_capture).submit(jobs)

    # THEN 500 records, 125 queued per shape, 50 batches of 10 messages, and one demand event
    assert result.submitted == tuple(j.id for j in jobs)
    assert result.already_known == ()
    store = DynamoJobStore(table)
    assert store.demand() == {j.shape: DemandCount(queued=125) for j in jobs[:4]}
    assert all(store.get_job(j.id) is not None for j in jobs[::37])
    assert len(batches) == 50
    assert all(len(call["Entries"]) == 10 for call in batches)
    sent = [decode_job_message(entry["MessageBody"]).id for call in batches for entry in call["Entries"]]
    assert sorted(sent) == [j.id for j in jobs]
    assert SqsJobQueue(queues.url, client=queues.client).depth().visible == 500  # receiving 500 is slow in moto
    (event,) = event_capture.events()
    assert (event["source"], event["detail-type"]) == (EVENT_SOURCE, EVENT_DEMAND_CHANGED)
    assert event["detail"] == {"cluster": CLUSTER, "queued": 500, "at": NOW}
    assert result.event_sent and result.warnings == ()


def test_resubmitting_is_a_no_op(table: StateTable, queues: Queues, event_capture: EventCapture) -> None:
    # GIVEN 30 submitted jobs
    jobs = [make_job(f"job-{i}", i % 2) for i in range(30)]
    client_for(table, queues, event_capture).submit(jobs)
    event_capture.events()
    batches = spy(queues.client, "sqs", "SendMessageBatch")

    # WHEN the same jobs are submitted again, long after the debounce window
    result = client_for(table, queues, event_capture, now=NOW + 3600).submit(jobs)

    # THEN nothing is recorded, counted, sent or announced again
    assert (result.submitted, result.re_enqueued, result.event_sent) == ((), (), False)
    assert result.already_known == tuple(j.id for j in jobs)
    assert sum(c.queued for c in DynamoJobStore(table).demand().values()) == 30
    assert batches == []
    assert event_capture.events() == []


def test_the_demand_event_is_debounced(table: StateTable, queues: Queues, event_capture: EventCapture) -> None:
    # GIVEN submissions at 0 s, 2 s (within the 5 s window) and 7 s
    results = [client_for(table, queues, event_capture, now=NOW + t).submit([make_job(f"job-{t}")]) for t in (0, 2, 7)]

    # THEN the first and the third send an event, the second is covered by the first
    assert [r.event_sent for r in results] == [True, False, True]
    assert [e["detail"]["queued"] for e in event_capture.events()] == [1, 3]


@pytest.mark.slow
def test_concurrent_submitters_do_not_double_count(
    table: StateTable, queues: Queues, event_capture: EventCapture
) -> None:
    # GIVEN four submitters in threads, each submitting the same 120 jobs (in different orders) at once;
    # a lock makes each DynamoDB call atomic, as in DynamoDB, while calls of different threads interleave
    # (moto applies a transaction item by item, which real DynamoDB never shows another caller)
    jobs = [make_job(f"job-{i:03d}", i % 4) for i in range(120)]
    one_call_at_a_time = threading.Lock()

    def begin(**_: Any) -> None:  # returns None: a value here would replace the call's response
        one_call_at_a_time.acquire()

    def end(**_: Any) -> None:
        one_call_at_a_time.release()

    table.client.meta.events.register("before-call.dynamodb", begin)
    table.client.meta.events.register("after-call.dynamodb", end)
    table.client.meta.events.register("after-call-error.dynamodb", end)
    start = threading.Barrier(4)
    results: list[Any] = [None] * 4
    errors: list[BaseException] = []

    def submit(k: int) -> None:
        try:
            start.wait()
            order = jobs[k * 30 :] + jobs[: k * 30]
            results[k] = client_for(table, queues, event_capture).submit(order)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(4)]

    # WHEN they run
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # THEN every job was recorded by exactly one of them, counted once, and one event was sent
    assert errors == []
    new = [job_id for result in results for job_id in result.submitted]
    assert sorted(new) == sorted(j.id for j in jobs)
    assert DynamoJobStore(table).demand() == {j.shape: DemandCount(queued=30) for j in jobs[:4]}
    assert {decode_job_message(m["Body"]).id for m in queues.bodies()} == {j.id for j in jobs}
    assert sum(r.event_sent for r in results) == 1
    assert len(event_capture.events()) == 1


def test_enqueue_failure_names_the_jobs_and_a_resubmit_enqueues_them(
    table: StateTable, queues: Queues, event_capture: EventCapture
) -> None:
    # GIVEN a submitter whose queue URL is wrong
    jobs = [make_job(f"job-{i}") for i in range(12)]
    broken = ShoalClient(
        store=DynamoJobStore(table),
        queue=SqsJobQueue(queues.url + "-typo", client=queues.client),
        events=event_capture.publisher,
        cluster=CLUSTER,
        clock=lambda: NOW,
    )

    # WHEN it submits
    with pytest.raises(SubmitError, match=r"12 jobs are recorded but not in the queue.*submit the same jobs again"):
        broken.submit(jobs)

    # THEN the jobs are recorded (and counted) but nothing was announced
    assert sum(c.queued for c in DynamoJobStore(table).demand().values()) == 12
    assert event_capture.events() == []

    # WHEN the same jobs are submitted through the right queue
    result = client_for(table, queues, event_capture).submit(jobs)

    # THEN those recorded-but-not-enqueued jobs are sent now, without counting them again
    assert result.submitted == ()
    assert result.re_enqueued == tuple(j.id for j in jobs)
    assert sorted(decode_job_message(m["Body"]).id for m in queues.bodies()) == sorted(j.id for j in jobs)
    assert sum(c.queued for c in DynamoJobStore(table).demand().values()) == 12
    assert result.event_sent


class HalfBrokenQueue:
    """A ``JobSender`` that sends the jobs with even numbers and refuses the others (a stand-in port)."""

    def __init__(self, real: SqsJobQueue) -> None:
        self.real = real

    def send_jobs(self, jobs: Sequence[Job]) -> None:
        good = [j for j in jobs if int(j.id.rsplit("-", 1)[1]) % 2 == 0]
        self.real.send_jobs(good)
        bad = [j.id for j in jobs if j not in good]
        if bad:
            raise JobsNotSentError("refused", unsent_job_ids=bad)


def test_a_partly_sent_submission_resends_only_the_missing_jobs(
    table: StateTable, queues: Queues, event_capture: EventCapture
) -> None:
    # GIVEN a submission where the queue took only the even jobs
    jobs = [make_job(f"job-{i}") for i in range(6)]
    store = DynamoJobStore(table)
    real = SqsJobQueue(queues.url, client=queues.client)
    with pytest.raises(SubmitError) as raised:
        submit_jobs(
            jobs, store=store, queue=HalfBrokenQueue(real), events=event_capture.publisher, cluster=CLUSTER, now=NOW
        )
    assert raised.value.recorded_not_enqueued == ("job-1", "job-3", "job-5")
    assert "'job-1', 'job-3', 'job-5'" in str(raised.value)

    # WHEN they are submitted again
    result = submit_jobs(jobs, store=store, queue=real, events=event_capture.publisher, cluster=CLUSTER, now=NOW)

    # THEN only the odd ones are sent: each job is on the queue once
    assert result.re_enqueued == ("job-1", "job-3", "job-5")
    assert sorted(decode_job_message(m["Body"]).id for m in queues.bodies()) == [j.id for j in jobs]


def test_a_failed_event_is_a_warning_not_a_failure(
    table: StateTable, queues: Queues, event_capture: EventCapture
) -> None:
    # GIVEN a submitter whose event bus does not exist
    client = ShoalClient(
        store=DynamoJobStore(table),
        queue=SqsJobQueue(queues.url, client=queues.client),
        events=type(event_capture.publisher)("no-such-bus", client=event_capture.publisher.client),
        cluster=CLUSTER,
        clock=lambda: NOW,
    )

    # WHEN it submits  THEN the jobs are queued, and the warning names the bus
    result = client.submit([make_job("a")])
    assert result.submitted == ("a",)
    assert len(queues.bodies()) == 1
    assert not result.event_sent
    (warning,) = result.warnings
    assert "scaler was not woken" in warning and "'no-such-bus'" in warning


def test_recording_into_a_missing_table_submits_nothing(queues: Queues, missing_table: StateTable) -> None:
    # GIVEN a submitter whose table does not exist
    client = ShoalClient(
        store=DynamoJobStore(missing_table),
        queue=SqsJobQueue(queues.url, client=queues.client),
        events=_NoEvents(),
        cluster=CLUSTER,
        clock=lambda: NOW,
    )

    # WHEN it submits  THEN it fails naming the table, and nothing reached the queue
    with pytest.raises(SubmitError, match="'no-such-table' does not exist"):
        client.submit([make_job("a")])
    assert queues.bodies() == []


class _NoEvents:
    def publish_demand_changed(self, *, cluster: str, queued: int, now: float) -> None:
        raise AssertionError("no event expected")


# --- configuration ----------------------------------------------------------------------------------


def test_config_reads_flags_before_the_environment() -> None:
    # GIVEN the environment and one flag  WHEN the config is built  THEN the flag wins, the rest come from the env
    env = {
        "SHOAL_TABLE_NAME": "env-table",
        "SHOAL_QUEUE_URL": "https://sqs/env",
        "SHOAL_CLUSTER_NAME": "env-cluster",
        "SHOAL_EVENT_BUS_NAME": "env-bus",
    }
    config = read_submit_config(env, table_name="flag-table", queue_url=None, region="eu-west-1")
    assert config == SubmitConfig(
        table_name="flag-table",
        queue_url="https://sqs/env",
        cluster="env-cluster",
        region="eu-west-1",
        event_bus_name="env-bus",
    )


def test_config_names_the_missing_setting() -> None:
    # GIVEN no queue URL anywhere  WHEN the config is built  THEN the error names the flag and the variable
    with pytest.raises(SubmitConfigError, match="no queue url given; pass --queue-url or set SHOAL_QUEUE_URL"):
        read_submit_config({"SHOAL_TABLE_NAME": "t", "SHOAL_CLUSTER_NAME": "c"})


# --- the CLI ----------------------------------------------------------------------------------------


def _run(argv: list[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="shoal")
    add_submit_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    code = run_submit(args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _jobs_file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cli_args(path: Path, queues: Queues) -> list[str]:
    return [
        "submit",
        "--jobs",
        str(path),
        "--table",
        TABLE_NAME,
        "--queue-url",
        queues.url,
        "--cluster",
        CLUSTER,
        "--region",
        REGION,
        "--event-bus",
        EVENT_BUS,
    ]


def test_cli_submits_a_jobs_file_and_reports_known_ones(
    tmp_path: Path, table: StateTable, queues: Queues, event_capture: EventCapture
) -> None:
    # GIVEN a jobs file of 12 jobs, 2 of them submitted before
    lines = ["# a comment", ""] + [json.dumps({"id": f"job-{i}", **SHAPES[i % 4]}) for i in range(12)]
    DynamoJobStore(table).put_jobs([make_job("job-0", 0), make_job("job-1", 1)], NOW)
    DynamoJobStore(table).mark_enqueued(["job-0", "job-1"])

    # WHEN `shoal submit` runs
    code, out, err = _run(_cli_args(_jobs_file(tmp_path, lines), queues))

    # THEN it submits the 10 new ones and says so
    assert (code, err) == (0, "")
    assert out == f"submitted 10 jobs to cluster {CLUSTER}; 2 already known\n"
    assert len(queues.bodies()) == 10
    assert len(event_capture.events()) == 1


def test_cli_reads_its_settings_from_the_environment(
    tmp_path: Path, table: StateTable, queues: Queues, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the settings only in the environment
    monkeypatch.setenv("SHOAL_TABLE_NAME", TABLE_NAME)
    monkeypatch.setenv("SHOAL_QUEUE_URL", queues.url)
    monkeypatch.setenv("SHOAL_CLUSTER_NAME", CLUSTER)
    path = _jobs_file(tmp_path, [json.dumps({"id": "a", **SHAPES[0]})])

    # WHEN `shoal submit --jobs` runs (the default bus exists in every account)
    code, out, err = _run(["submit", "--jobs", str(path)])

    # THEN the job is submitted
    assert (code, err) == (0, "")
    assert out.startswith("submitted 1 jobs")


def test_cli_refuses_a_malformed_line_and_submits_nothing(tmp_path: Path, table: StateTable, queues: Queues) -> None:
    # GIVEN a jobs file whose third job lacks its wall time
    lines = [
        json.dumps({"id": "a", **SHAPES[0]}),
        json.dumps({"id": "b", **SHAPES[1]}),
        json.dumps({"id": "c", "cores": 1, "memory": "1GiB", "disk": "1GiB"}),
    ]
    path = _jobs_file(tmp_path, lines)

    # WHEN `shoal submit` runs
    code, out, err = _run(_cli_args(path, queues))

    # THEN it exits 2 naming the file, line and field, and neither the table nor the queue got anything
    assert code == 2
    assert out == ""
    assert (
        err
        == f"shoal submit: {path}:3: missing field 'wall_time'; every job needs id, cores, memory, disk, wall_time\n"
    )
    assert DynamoJobStore(table).demand() == {}
    assert queues.bodies() == []


def test_cli_refuses_bad_json(tmp_path: Path, table: StateTable, queues: Queues) -> None:
    # GIVEN a line that is not JSON  WHEN submitted  THEN exit 2 naming the line
    path = _jobs_file(tmp_path, [json.dumps({"id": "a", **SHAPES[0]}), "{oops"])
    code, _, err = _run(_cli_args(path, queues))
    assert code == 2
    assert err.startswith(f"shoal submit: {path}:2: malformed JSON")
    assert queues.bodies() == []


def test_cli_without_a_table_says_how_to_name_it(tmp_path: Path, aws_credentials: None) -> None:
    # GIVEN no --table and no SHOAL_TABLE_NAME  WHEN submit runs  THEN exit 2 saying what to pass
    path = _jobs_file(tmp_path, [json.dumps({"id": "a", **SHAPES[0]})])
    code, _, err = _run(["submit", "--jobs", str(path), "--queue-url", "https://q", "--cluster", "c"])
    assert code == 2
    assert err == "shoal submit: no table name given; pass --table or set SHOAL_TABLE_NAME\n"


def test_cli_with_a_missing_table_fails_naming_it(tmp_path: Path, queues: Queues) -> None:
    # GIVEN a table name that does not exist  WHEN submit runs  THEN exit 1 naming the table, nothing queued
    path = _jobs_file(tmp_path, [json.dumps({"id": "a", **SHAPES[0]})])
    args = _cli_args(path, queues)
    args[args.index("--table") + 1] = "typo-table"
    code, _, err = _run(args)
    assert code == 1
    assert "'typo-table' does not exist in us-east-1" in err
    assert queues.bodies() == []


def test_cli_with_a_missing_file_exits_2(tmp_path: Path, aws_credentials: None) -> None:
    # GIVEN a jobs path that does not exist  WHEN submit runs  THEN exit 2 naming the file
    path = tmp_path / "nope.jsonl"
    code, _, err = _run(["submit", "--jobs", str(path), "--table", "t", "--queue-url", "https://q", "--cluster", "c"])
    assert code == 2
    assert f"{path}: cannot read the jobs file" in err


def test_submitted_records_are_queued_and_unconfirmed_until_sent(table: StateTable) -> None:
    # GIVEN a job recorded but not yet sent  WHEN it is read  THEN it is QUEUED (the flag is internal)
    DynamoJobStore(table).put_jobs([make_job("a")], NOW)
    record = DynamoJobStore(table).get_job("a")
    assert record is not None and record.status is JobStatus.QUEUED


def test_cli_without_a_region_says_how_to_set_one(
    tmp_path: Path, aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN no region in the flags, the environment or an AWS config file
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    path = _jobs_file(tmp_path, [json.dumps({"id": "a", **SHAPES[0]})])

    # WHEN submit runs  THEN exit 1 saying how to give a region
    code, _, err = _run(["submit", "--jobs", str(path), "--table", "t", "--queue-url", "https://q", "--cluster", "c"])
    assert code == 1
    assert "no AWS region configured" in err and "--region" in err

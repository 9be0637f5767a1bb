"""The SQS job queue: batches of ten, partial failures named, visibility, dead letters, depth."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.stub import Stubber

from shared.adapters import aws
from shared.adapters.job_queue import SqsJobQueue, StaleReceiptError
from shared.services.job_message import decode_job_message, encode_job_message
from shared.services.ports import JobQueueError, JobsNotSentError
from shared.services.worker_ports import WorkerQueue
from tests.adapters.conftest import REGION, Queues, make_job

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/shoal-test-jobs"


def count_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    """The parameters of every ``operation`` call the client makes from now on (a spy, not a mock)."""
    calls: list[dict[str, Any]] = []
    client.meta.events.register(f"provide-client-params.sqs.{operation}", lambda params, **_: calls.append(params))
    return calls


def test_the_adapter_is_a_worker_queue(job_queue: SqsJobQueue) -> None:
    # GIVEN the SQS adapter  THEN the agent can use it as its queue (checked by mypy here too)
    worker_queue: WorkerQueue = job_queue
    assert worker_queue is job_queue


def test_send_jobs_batches_ten_messages_a_call(job_queue: SqsJobQueue, queues: Queues) -> None:
    # GIVEN 25 jobs
    jobs = [make_job(f"job-{i:02d}", i % 4) for i in range(25)]
    calls = count_calls(queues.client, "SendMessageBatch")

    # WHEN they are sent
    job_queue.send_jobs(jobs)

    # THEN three calls of 10, 10 and 5 put one versioned message per job, tagged with its id
    assert [len(call["Entries"]) for call in calls] == [10, 10, 5]
    messages = queues.bodies()
    assert sorted(decode_job_message(m["Body"]).id for m in messages) == [j.id for j in jobs]
    assert {m["MessageAttributes"]["job_id"]["StringValue"] for m in messages} == {j.id for j in jobs}


def test_send_jobs_keeps_batches_under_the_payload_limit(job_queue: SqsJobQueue, queues: Queues) -> None:
    # GIVEN ten jobs of about 100 KB each
    jobs = [make_job(f"big-{i}", env={"PAYLOAD": "x" * 100_000}) for i in range(10)]
    calls = count_calls(queues.client, "SendMessageBatch")

    # WHEN they are sent
    job_queue.send_jobs(jobs)

    # THEN no batch exceeds 256 KiB (two messages a call), and all arrive
    assert [len(call["Entries"]) for call in calls] == [2, 2, 2, 2, 2]
    assert len(queues.bodies()) == 10


def test_send_jobs_of_nothing_sends_nothing(job_queue: SqsJobQueue, queues: Queues) -> None:
    # GIVEN no jobs  WHEN sent  THEN no call is made
    calls = count_calls(queues.client, "SendMessageBatch")
    job_queue.send_jobs([])
    assert calls == []


def _stubbed_queue() -> tuple[SqsJobQueue, Stubber]:
    client = aws.client("sqs", REGION)
    return SqsJobQueue(QUEUE_URL, client=client), Stubber(client)


def _entries(*job_ids: str) -> list[dict[str, Any]]:
    return [
        {
            "Id": str(i),
            "MessageBody": encode_job_message(make_job(job_id)),
            "MessageAttributes": {"job_id": {"DataType": "String", "StringValue": job_id}},
        }
        for i, job_id in enumerate(job_ids)
    ]


def test_refused_entries_are_retried_once_then_named(aws_credentials: None) -> None:
    # GIVEN SQS refuses two entries of a batch (one internal error, one our fault), and the retry fails too
    # (moto cannot refuse single entries, so a botocore Stubber plays SQS here)
    queue, stubber = _stubbed_queue()
    ids = ["a", "b", "c"]
    stubber.add_response(
        "send_message_batch",
        {
            "Successful": [{"Id": "0", "MessageId": "m0", "MD5OfMessageBody": "x"}],
            "Failed": [
                {"Id": "1", "SenderFault": False, "Code": "InternalError", "Message": "try again"},
                {"Id": "2", "SenderFault": True, "Code": "InvalidMessageContents", "Message": "bad character"},
            ],
        },
        {"QueueUrl": QUEUE_URL, "Entries": _entries(*ids)},
    )
    retry = _entries(*ids)[1:2]
    stubber.add_response(
        "send_message_batch",
        {"Successful": [], "Failed": [{"Id": "1", "SenderFault": False, "Code": "InternalError", "Message": "down"}]},
        {"QueueUrl": QUEUE_URL, "Entries": retry},
    )

    # WHEN the jobs are sent
    with stubber, pytest.raises(JobsNotSentError) as raised:
        queue.send_jobs([make_job(i) for i in ids])

    # THEN only the internal error was retried, and the error names both jobs that did not get there
    stubber.assert_no_pending_responses()
    assert raised.value.unsent_job_ids == ("b", "c")
    assert "2 of 3 jobs were not sent" in str(raised.value)
    assert "'b', 'c'" in str(raised.value)


def test_an_entry_refused_once_and_accepted_on_retry_is_sent(aws_credentials: None) -> None:
    # GIVEN SQS refuses one entry through an internal error, then accepts it (Stubber: moto cannot refuse entries)
    queue, stubber = _stubbed_queue()
    stubber.add_response(
        "send_message_batch",
        {
            "Successful": [{"Id": "0", "MessageId": "m0", "MD5OfMessageBody": "x"}],
            "Failed": [{"Id": "1", "SenderFault": False, "Code": "InternalError", "Message": "try again"}],
        },
        {"QueueUrl": QUEUE_URL, "Entries": _entries("a", "b")},
    )
    stubber.add_response(
        "send_message_batch",
        {"Successful": [{"Id": "1", "MessageId": "m1", "MD5OfMessageBody": "x"}], "Failed": []},
        {"QueueUrl": QUEUE_URL, "Entries": _entries("a", "b")[1:]},
    )

    # WHEN the jobs are sent  THEN no error: both got there
    with stubber:
        queue.send_jobs([make_job("a"), make_job("b")])
    stubber.assert_no_pending_responses()


def test_sending_to_a_missing_queue_names_the_queue_and_every_job(queues: Queues) -> None:
    # GIVEN a queue URL that does not exist
    queue = SqsJobQueue(QUEUE_URL.replace("shoal-test-jobs", "gone"), client=queues.client)

    # WHEN 12 jobs are sent  THEN the error says the queue is missing, and no job counts as sent
    with pytest.raises(JobsNotSentError, match=r"12 of 12 jobs were not sent.*gone does not exist") as raised:
        queue.send_jobs([make_job(f"j{i}") for i in range(12)])
    assert len(raised.value.unsent_job_ids) == 12


def test_every_call_on_a_missing_queue_names_it(queues: Queues) -> None:
    # GIVEN a queue URL that does not exist
    queue = SqsJobQueue(QUEUE_URL.replace("shoal-test-jobs", "gone"), client=queues.client)

    # WHEN it is read, changed or measured  THEN each call says which queue is missing
    for call in (
        lambda: queue.receive(max_messages=1, wait_seconds=0),
        queue.depth,
        lambda: queue.delete(["rh"]),
        lambda: queue.change_visibility(["rh"], 0),
    ):
        with pytest.raises(JobQueueError, match=r"gone does not exist in us-east-1.*--queue-url"):
            call()


def test_receive_change_visibility_and_delete(job_queue: SqsJobQueue) -> None:
    # GIVEN three jobs on the queue
    job_queue.send_jobs([make_job("a"), make_job("b"), make_job("c")])

    # WHEN a worker receives them, puts one back, hides one, deletes one
    first = job_queue.receive(max_messages=10, wait_seconds=0, visibility_timeout=30)
    by_job = {decode_job_message(m.body).id: m for m in first}
    assert job_queue.put_back([by_job["a"].receipt_handle]) == []
    assert job_queue.change_visibility([by_job["b"].receipt_handle], 600) == []
    assert job_queue.delete([by_job["c"].receipt_handle]) == []
    again = job_queue.receive(max_messages=10, wait_seconds=0)

    # THEN only the put-back message comes again, for the second time; the depth shows the hidden one
    assert sorted(by_job) == ["a", "b", "c"]
    assert all(m.receive_count == 1 for m in first)
    assert [(decode_job_message(m.body).id, m.receive_count) for m in again] == [("a", 2)]
    depth = job_queue.depth()
    assert (depth.visible, depth.in_flight, depth.total) == (0, 2, 2)


def test_a_received_message_says_when_it_was_sent(job_queue: SqsJobQueue) -> None:
    # GIVEN a job sent now  WHEN received  THEN its send time (SQS's SentTimestamp) comes with it, in seconds
    before = time.time()
    job_queue.send_jobs([make_job("a")])
    (message,) = job_queue.receive(max_messages=1, wait_seconds=0)
    assert message.sent_at is not None and before - 1 <= message.sent_at <= time.time() + 1


def test_stale_receipt_handles_are_returned_not_raised(job_queue: SqsJobQueue) -> None:
    # GIVEN a message that was received and deleted
    job_queue.send_jobs([make_job("a")])
    (message,) = job_queue.receive(max_messages=1, wait_seconds=0)
    job_queue.delete([message.receipt_handle])

    # WHEN a worker changes its visibility again  THEN the handle comes back as failed
    assert job_queue.change_visibility([message.receipt_handle, "bogus"], 0) == [message.receipt_handle, "bogus"]


def test_delete_one_with_a_bad_receipt_raises_a_stale_receipt_error(job_queue: SqsJobQueue) -> None:
    # GIVEN a receipt handle SQS never issued  WHEN it is deleted  THEN the error says the receipt is stale
    with pytest.raises(StaleReceiptError, match="ReceiptHandleIsInvalid"):
        job_queue.delete_one("not-a-receipt-handle")


def test_dead_letter_keeps_the_body_and_says_why(job_queue: SqsJobQueue, queues: Queues) -> None:
    # GIVEN a body a worker could not decode
    body = '{"v": 9, "job": {}}'

    # WHEN it is dead-lettered
    job_queue.dead_letter(body, reason="unknown message version 9", job_id=None)
    job_queue.dead_letter(encode_job_message(make_job("a")), reason="exit code 1 (3 attempts)", job_id="a")

    # THEN the DLQ holds both bodies unchanged, with the reason (and the job id, when known) as attributes
    messages = queues.bodies(queues.dead_letter_url)
    assert [m["Body"] for m in messages] == [body, encode_job_message(make_job("a"))]
    assert messages[0]["MessageAttributes"] == {
        "reason": {"StringValue": "unknown message version 9", "DataType": "String"}
    }
    assert messages[1]["MessageAttributes"]["job_id"]["StringValue"] == "a"
    assert json.loads(messages[1]["Body"])["job"]["id"] == "a"


def test_dead_letter_without_a_dead_letter_queue_is_refused(queues: Queues) -> None:
    # GIVEN a queue adapter configured without a DLQ  WHEN it dead-letters  THEN the error says what to set
    queue = SqsJobQueue(queues.url, client=queues.client)
    with pytest.raises(JobQueueError, match="no dead-letter queue configured; set SHOAL_DLQ_URL"):
        queue.dead_letter("{}", reason="bad", job_id=None)


def test_a_missing_dead_letter_queue_is_named(queues: Queues) -> None:
    # GIVEN a DLQ URL that does not exist  WHEN a message is dead-lettered  THEN the error names that queue
    queue = SqsJobQueue(queues.url, dead_letter_queue_url=queues.url + "-nope", client=queues.client)
    with pytest.raises(JobQueueError, match=r"shoal-test-jobs-nope does not exist"):
        queue.dead_letter("{}", reason="bad", job_id=None)


def test_a_queue_needs_a_url() -> None:
    # GIVEN no queue URL  WHEN the adapter is built  THEN the error says how to give one
    with pytest.raises(JobQueueError, match="--queue-url or set SHOAL_QUEUE_URL"):
        SqsJobQueue("")

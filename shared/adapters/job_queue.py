"""The job queue on SQS: one message per job (``shared.services.job_message``), and its dead-letter queue.

Sending batches ten messages (and at most 256 KiB) a call. SQS may refuse single entries of a batch:
those are sent once more, then ``JobsNotSentError`` names every job that did not get there, so the
submitter can say which recorded jobs are not in the queue. Batch receipt operations (delete, change
visibility) return the receipt handles that failed instead of raising, as the worker wants. Throttling
is retried by botocore's standard retry mode; nothing here matches error strings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws
from shared.domain.jobs import Job
from shared.services.job_message import encode_job_message
from shared.services.ports import JobQueueError, JobsNotSentError
from shared.services.worker_ports import ReceivedMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeFilterType
    from mypy_boto3_sqs.type_defs import BatchResultErrorEntryTypeDef, SendMessageBatchRequestEntryTypeDef

    from shared.services.ports import JobReturns, JobSender
    from shared.services.worker_ports import WorkerQueue

BATCH_ENTRIES = 10  # SQS's limit per batch call
BATCH_BYTES = 256 * 1024  # the classic per-request payload limit, safe for every queue
REASON_LIMIT = 4096  # characters of a dead-letter reason kept in its message attribute
MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
STALE_RECEIPT_CODES = frozenset({"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"})

T = TypeVar("T")


class StaleReceiptError(JobQueueError):
    """The receipt handle no longer refers to a message we hold (deleted, or its visibility ran out)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueDepth:
    visible: int  # waiting for a worker
    in_flight: int  # received, not yet deleted or returned
    delayed: int = 0

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


class SqsJobQueue:
    """``JobSender`` and the worker's ``WorkerQueue`` on one SQS queue (and its dead-letter queue)."""

    def __init__(
        self,
        queue_url: str,
        *,
        dead_letter_queue_url: str | None = None,
        client: SQSClient | None = None,
        region: str | None = None,
    ) -> None:
        if not queue_url:
            raise JobQueueError("no queue URL given; pass --queue-url or set SHOAL_QUEUE_URL")
        self.queue_url = queue_url
        self.dead_letter_queue_url = dead_letter_queue_url
        self.client: SQSClient = client if client is not None else aws.client("sqs", region)

    # --- sending --------------------------------------------------------------------------------------

    def send_jobs(self, jobs: Sequence[Job]) -> None:
        unsent: list[str] = []
        problems: list[str] = []
        batches = list(_batches([(job.id, encode_job_message(job)) for job in jobs]))
        for number, batch in enumerate(batches):
            try:
                failed = self._send_batch(batch)
            except JobQueueError as error:  # the whole call failed: this batch and every later one are not sent
                unsent += [job_id for later in batches[number:] for job_id, _ in later]
                problems.append(str(error))
                break
            for job_id, why in failed:
                unsent.append(job_id)
                problems.append(f"{job_id}: {why}")
        if unsent:
            order = {job.id: i for i, job in enumerate(jobs)}
            unsent.sort(key=lambda job_id: order.get(job_id, len(order)))
            raise JobsNotSentError(
                f"{len(unsent)} of {len(jobs)} jobs were not sent to queue {self.queue_url} "
                f"({_name_some(unsent)}): {problems[0]}",
                unsent_job_ids=unsent,
            )

    def _send_batch(self, batch: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Send one batch; entries refused through no fault of ours are sent once more.

        Returns (job id, why) for each entry still refused.
        """
        job_ids = {str(i): job_id for i, (job_id, _) in enumerate(batch)}
        pending = {str(i): entry for i, entry in enumerate(batch)}
        refused: dict[str, str] = {}
        for attempt in range(2):
            retry: dict[str, tuple[str, str]] = {}
            for failure in self._send_entries(pending):
                entry_id = failure["Id"]
                if attempt == 0 and not failure.get("SenderFault", False) and entry_id in pending:
                    retry[entry_id] = pending[entry_id]
                else:
                    refused[entry_id] = f"{failure.get('Code', 'Failed')}: {failure.get('Message', '')}".rstrip(": ")
            pending = retry
            if not pending:
                break
        return [(job_ids.get(entry_id, entry_id), why) for entry_id, why in refused.items()]

    def _send_entries(self, pending: dict[str, tuple[str, str]]) -> list[BatchResultErrorEntryTypeDef]:
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {
                "Id": entry_id,
                "MessageBody": body,
                "MessageAttributes": {"job_id": {"DataType": "String", "StringValue": job_id}},
            }
            for entry_id, (job_id, body) in pending.items()
        ]
        with self._errors("SendMessageBatch", self.queue_url):
            response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        return list(response.get("Failed", []))

    def dead_letter(self, body: str, *, reason: str, job_id: str | None) -> None:
        """Put ``body`` on the dead-letter queue with ``reason`` (and the job id, if known) as attributes."""
        if not self.dead_letter_queue_url:
            raise JobQueueError(f"queue {self.queue_url} has no dead-letter queue configured; set SHOAL_DLQ_URL")
        attributes: dict[str, Any] = {
            "reason": {"DataType": "String", "StringValue": (reason or "no reason given")[:REASON_LIMIT]}
        }
        if job_id:
            attributes["job_id"] = {"DataType": "String", "StringValue": job_id}
        with self._errors("SendMessage", self.dead_letter_queue_url):
            self.client.send_message(
                QueueUrl=self.dead_letter_queue_url, MessageBody=body, MessageAttributes=attributes
            )

    # --- receiving ------------------------------------------------------------------------------------

    def receive(
        self, *, max_messages: int = BATCH_ENTRIES, wait_seconds: int = 20, visibility_timeout: int | None = None
    ) -> list[ReceivedMessage]:
        """Long-poll for up to ``max_messages`` (1-10) messages; ``visibility_timeout`` None: the queue's default."""
        kwargs: dict[str, Any] = {}
        if visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout
        with self._errors("ReceiveMessage", self.queue_url):
            response = self.client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=max(1, min(BATCH_ENTRIES, max_messages)),
                WaitTimeSeconds=max(0, min(20, wait_seconds)),
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                MessageAttributeNames=["All"],
                **kwargs,
            )
        return [_received(message) for message in response.get("Messages", [])]

    def change_visibility(self, receipt_handles: Sequence[str], seconds: int) -> list[str]:
        """Hide the messages ``seconds`` more from now (0: put them back at once). Returns the handles that failed."""

        def call(entries: list[tuple[str, str]]) -> list[BatchResultErrorEntryTypeDef]:
            response = self.client.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": i, "ReceiptHandle": h, "VisibilityTimeout": seconds} for i, h in entries],
            )
            return list(response.get("Failed", []))

        return self._receipt_batches("ChangeMessageVisibilityBatch", receipt_handles, call)

    def put_back(self, receipt_handles: Sequence[str]) -> list[str]:
        """Make the messages visible to every worker now."""
        return self.change_visibility(receipt_handles, 0)

    def delete(self, receipt_handles: Sequence[str]) -> list[str]:
        """Delete the messages (their jobs are settled). Returns the handles that failed."""

        def call(entries: list[tuple[str, str]]) -> list[BatchResultErrorEntryTypeDef]:
            response = self.client.delete_message_batch(
                QueueUrl=self.queue_url, Entries=[{"Id": i, "ReceiptHandle": h} for i, h in entries]
            )
            return list(response.get("Failed", []))

        return self._receipt_batches("DeleteMessageBatch", receipt_handles, call)

    def delete_one(self, receipt_handle: str) -> None:
        """Delete one message; ``StaleReceiptError`` if the handle no longer holds it."""
        with self._errors("DeleteMessage", self.queue_url):
            self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle)

    def depth(self) -> QueueDepth:
        names: list[QueueAttributeFilterType] = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        with self._errors("GetQueueAttributes", self.queue_url):
            response = self.client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)
        attributes = response.get("Attributes", {})
        return QueueDepth(
            visible=int(attributes.get("ApproximateNumberOfMessages", "0")),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", "0")),
            delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", "0")),
        )

    # --- helpers --------------------------------------------------------------------------------------

    def _receipt_batches(
        self,
        action: str,
        receipt_handles: Sequence[str],
        call: Callable[[list[tuple[str, str]]], list[BatchResultErrorEntryTypeDef]],
    ) -> list[str]:
        """Run ``call`` on batches of ten; entries failing through no fault of ours are tried once more."""
        failed: list[str] = []
        handles = list(dict.fromkeys(receipt_handles))
        for start in range(0, len(handles), BATCH_ENTRIES):
            pending = {str(i): h for i, h in enumerate(handles[start : start + BATCH_ENTRIES])}
            for attempt in range(2):
                with self._errors(action, self.queue_url):
                    failures = call(list(pending.items()))
                retry = {f["Id"] for f in failures if not f.get("SenderFault", False)}
                failed += [
                    pending[f["Id"]] for f in failures if f["Id"] in pending and (f["Id"] not in retry or attempt)
                ]
                pending = {i: h for i, h in pending.items() if i in retry}
                if not pending:
                    break
        return failed

    @contextmanager
    def _errors(self, action: str, queue_url: str | None) -> Iterator[None]:
        """Turn botocore's errors into ``JobQueueError`` naming the queue and what to check."""
        url = queue_url or self.queue_url
        try:
            yield
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            message = error.response.get("Error", {}).get("Message", "")
            if code in MISSING_QUEUE_CODES:
                raise JobQueueError(
                    f"SQS queue {url} does not exist in {self.client.meta.region_name}; "
                    "deploy the cluster's stack or check --queue-url / SHOAL_QUEUE_URL and the region"
                ) from error
            if code in STALE_RECEIPT_CODES and action in {"DeleteMessage", "ChangeMessageVisibility"}:
                raise StaleReceiptError(f"{action} on {url}: {code}: {message}") from error
            raise JobQueueError(f"SQS {action} on {url} failed: {code}: {message}") from error
        except BotoCoreError as error:  # no credentials, no network, ...
            raise JobQueueError(f"SQS {action} on {url} failed: {error}") from error


def _batches(messages: Sequence[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    """Up to ten messages a batch, and no more than ``BATCH_BYTES`` of bodies (a bigger one goes alone)."""
    batch: list[tuple[str, str]] = []
    size = 0
    for job_id, body in messages:
        body_size = len(body.encode("utf-8")) + len(job_id.encode("utf-8")) + 16
        if batch and (len(batch) == BATCH_ENTRIES or size + body_size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((job_id, body))
        size += body_size
    if batch:
        yield batch


def _name_some(ids: Sequence[T], shown: int = 10) -> str:
    named = ", ".join(repr(i) for i in ids[:shown])
    return named + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


if TYPE_CHECKING:  # mypy checks that the adapter serves both ends of the queue

    def _implement_the_ports(queue: SqsJobQueue) -> None:
        sender: JobSender = queue
        returns: JobReturns = queue
        worker_queue: WorkerQueue = queue
        del sender, returns, worker_queue


def _received(message: Mapping[str, Any]) -> ReceivedMessage:
    attributes = message.get("Attributes", {})
    sent = attributes.get("SentTimestamp")  # milliseconds since the epoch
    return ReceivedMessage(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message.get("Body", ""),
        receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
        sent_at=int(sent) / 1000 if sent and str(sent).isdigit() else None,
    )

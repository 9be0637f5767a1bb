"""The local cloud's hot-spot fixes keep moto's DynamoDB transactions all or nothing, as DynamoDB's are; its S3
patch lets Toil create an ``aws:`` job store."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb.models.table import Table
from moto.sqs import models as sqs_models

from shared.adapters import aws
from shared.adapters.job_queue import SqsJobQueue
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.state_table import StateTable, TransactionCancelledError, attr_names, key, make_table, n, s
from shared.domain.cluster_state import DemandCount
from shared.local import moto_patches
from shared.local.moto_patches import hot_spots_fixed
from tests.adapters.conftest import make_job

REGION = "us-east-1"


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[StateTable]:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws(), hot_spots_fixed():
        make_table(aws.client("dynamodb", REGION), "patched")
        yield StateTable("patched", region=REGION)


def bump(table: StateTable, item: str, *, unless: int | None = None, return_old: bool = False) -> Any:
    return table.update_item_op(
        key("T", item),
        "ADD #v :one",
        condition=None if unless is None else "attribute_not_exists(#v) OR #v <> :unless",
        names=attr_names("v"),
        values={":one": n(1), **({} if unless is None else {":unless": n(unless)})},
        return_old=return_old,
    )


def value(table: StateTable, item: str) -> str | None:
    found = table.get(key("T", item))
    return None if found is None else found["v"]["N"]


def test_a_cancelled_transaction_writes_nothing_and_reports_the_old_item(table: StateTable) -> None:
    # GIVEN an item at 1
    table.transact([bump(table, "b")])
    # WHEN a transaction's first item is fine and its second item's condition fails
    with pytest.raises(TransactionCancelledError) as cancelled:
        table.transact([bump(table, "a"), bump(table, "b", unless=1, return_old=True)])
    # THEN neither was written, and the failed item came back as it was
    assert (value(table, "a"), value(table, "b")) == (None, "1")
    assert cancelled.value.reasons == ("None", "ConditionalCheckFailed")
    assert cancelled.value.items[1] == {"pk": s("T"), "sk": s("b"), "v": n(1)}


def test_the_job_store_under_the_patches_counts_each_transition_once(table: StateTable) -> None:
    # GIVEN a job that fails once, then a second worker that retries it (its first guess is refused)
    store, job = DynamoJobStore(table), make_job("a", max_attempts=2)
    store.put_jobs([job], 0.0)
    assert store.start_job(job, "i-1", 1.0) == 1
    store.fail_job(job, "i-1", attempt=1, reason="exit code 1", exit_code=1, output_tail="", now=2.0)
    # WHEN a second worker starts it, and a third tries too
    second, third = store.start_job(job, "i-2", 3.0), store.start_job(job, "i-3", 3.0)
    # THEN one start, one attempt counted, and the counters moved once
    assert (second, third) == (2, None)
    assert store.demand() == {job.shape: DemandCount(queued=0, running=1)}


def test_leaving_restores_stock_moto() -> None:
    with hot_spots_fixed():
        assert "__deepcopy__" in Table.__dict__
    assert "__deepcopy__" not in Table.__dict__


# ---- S3: the PutBucketEncryption an `aws:` Toil job store sends ---------------------------------------

TOIL_RULES = {"Rules": [{"BlockedEncryptionTypes": {"EncryptionType": ["NONE"]}}]}  # toil.lib.aws.utils


@pytest.fixture
def s3(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        moto_patches.activate(hooks())
        try:
            yield aws.client("s3", REGION)
        finally:
            moto_patches.deactivate()


def no_event(rule: str, target: dict[str, Any], event: dict[str, Any]) -> None:
    raise AssertionError("no event is expected")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and a region for boto3 against moto."""


def hooks(now: Callable[[], float] | None = None) -> moto_patches.Hooks:
    """The local cloud's hooks, for patches that need none of them (no Lambda, no event is expected)."""
    return moto_patches.Hooks(
        invoke_lambda=lambda name, payload: (b"{}", None), deliver_event=no_event, speed=1.0, now=now
    )


def test_a_rule_that_only_blocks_encryption_types_is_accepted_with_s3s_default(s3: Any) -> None:
    # GIVEN a bucket
    s3.create_bucket(Bucket="run--toil")
    # WHEN Toil's PutBucketEncryption (block unencrypted writes, allow SSE-C) is sent
    s3.put_bucket_encryption(Bucket="run--toil", ServerSideEncryptionConfiguration=TOIL_RULES)
    # THEN it is stored, and read back as S3 answers: SSE-S3 by default
    rules = s3.get_bucket_encryption(Bucket="run--toil")["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


@pytest.mark.parametrize(
    "rule", [{"BlockedEncryptionTypes": {"EncryptionType": ["SSE-Q"]}}, {"BucketKeyEnabled": True}]
)
def test_a_rule_with_neither_a_default_nor_valid_blocked_types_is_still_malformed(
    s3: Any, rule: dict[str, Any]
) -> None:
    s3.create_bucket(Bucket="run--toil")
    with pytest.raises(ClientError, match="MalformedXML"):
        s3.put_bucket_encryption(Bucket="run--toil", ServerSideEncryptionConfiguration={"Rules": [rule]})


@pytest.mark.slow  # Toil's job store creation: seconds
def test_toils_aws_job_store_is_created_under_the_patches(s3: Any) -> None:
    # GIVEN Toil's own S3 job store (the real writer of the request), for aws:us-east-1:shoal-patch
    toil_common = pytest.importorskip("toil.common")
    from toil.job import Job

    config = toil_common.Config()
    config.setOptions(Job.Runner.getDefaultOptions(f"aws:{REGION}:shoal-patch"))
    store = toil_common.Toil.getJobStore(config.jobStore)
    # WHEN it initializes (creates its bucket, encryption rule included)
    store.initialize(config)
    # THEN the bucket exists and its rule is the one Toil sent
    assert "shoal-patch--toil" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.get_bucket_encryption(Bucket="shoal-patch--toil")["ServerSideEncryptionConfiguration"]["Rules"]


def test_stock_moto_is_back_after_the_local_cloud(aws_env: None) -> None:
    # moto 5.2 refuses Toil's rule; when it stops refusing, this fails and the patch can go.
    with mock_aws():
        s3 = aws.client("s3", REGION)
        s3.create_bucket(Bucket="run--toil")
        with pytest.raises(ClientError, match="MalformedXML"):
            s3.put_bucket_encryption(Bucket="run--toil", ServerSideEncryptionConfiguration=TOIL_RULES)


# ---- SQS: SentTimestamp on the simulated clock -------------------------------------------------------


@pytest.mark.parametrize("simulated", [True, False])
def test_a_message_is_stamped_sent_by_the_simulated_clock_when_there_is_one(aws_env: None, simulated: bool) -> None:
    # GIVEN the local cloud's patches, with a simulated clock two hours ahead of real time (or none)
    ahead = time.time() + 7200.0
    with mock_aws():
        moto_patches.activate(hooks((lambda: ahead) if simulated else None))
        try:
            url = aws.client("sqs", REGION).create_queue(QueueName="jobs")["QueueUrl"]
            queue = SqsJobQueue(url, region=REGION)
            # WHEN a job is sent and received through the real adapter
            queue.send_jobs([make_job("j-1")])
            (message,) = queue.receive(max_messages=1, wait_seconds=0)
        finally:
            moto_patches.deactivate()
    # THEN the time it says the job was queued is the simulated clock's (the agents compare it with their own)
    assert message.sent_at is not None
    if simulated:
        assert message.sent_at == pytest.approx(ahead, abs=0.001)
    else:
        assert abs(message.sent_at - time.time()) < 60


# ---- SQS: a visibility of 0 is visible at once ---------------------------------------------------------


@pytest.mark.parametrize("patched", [True, False])
def test_a_message_given_back_is_received_again_within_the_same_millisecond(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, patched: bool
) -> None:
    # GIVEN moto's SQS clock standing still (every call within one millisecond), with the local cloud's patches or not
    frozen = time.time() * 1000
    monkeypatch.setattr(sqs_models, "unix_time_millis", lambda: frozen)
    with mock_aws():
        if patched:
            moto_patches.activate(hooks())
        try:
            url = aws.client("sqs", REGION).create_queue(QueueName="jobs")["QueueUrl"]
            queue = SqsJobQueue(url, region=REGION)
            queue.send_jobs([make_job("j-1")])
            (message,) = queue.receive(max_messages=1, wait_seconds=0)
            # WHEN a node gives the job back at once (visibility 0) and the next node receives in the same millisecond
            queue.change_visibility([message.receipt_handle], 0)
            again = queue.receive(max_messages=1, wait_seconds=0)
        finally:
            if patched:
                moto_patches.deactivate()
    # THEN under the patches it gets the job, as from SQS; stock moto hides it until the next millisecond (when
    # this fails, moto has changed and the patch can go)
    assert [m.body for m in again] == ([message.body] if patched else [])


# ---- EC2: instance ids in launch order -----------------------------------------------------------------


def test_instances_are_numbered_in_launch_order_under_the_patches(aws_env: None) -> None:
    # GIVEN the local cloud's patches
    with mock_aws():
        ec2 = aws.client("ec2", REGION)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        moto_patches.activate(hooks())
        try:
            # WHEN instances are launched in two calls
            first = [i["InstanceId"] for i in ec2.run_instances(ImageId=image, MinCount=3, MaxCount=3)["Instances"]]
            second = [i["InstanceId"] for i in ec2.run_instances(ImageId=image, MinCount=2, MaxCount=2)["Instances"]]
        finally:
            moto_patches.deactivate()
        stock = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    # THEN their ids are distinct and sort in launch order (the scaler's tie-breaks repeat from run to run);
    # stock moto's are random again once the local cloud is gone
    ids = first + second
    numbers = [int(i.removeprefix("i-"), 16) for i in ids]
    assert numbers == list(range(numbers[0], numbers[0] + 5)) and ids == sorted(ids)
    assert all(i.startswith("i-") and len(i) == 19 for i in ids)
    assert stock not in ids and len(stock) == 19

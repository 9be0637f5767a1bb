"""The local cloud's hot-spot fixes keep moto's DynamoDB transactions all or nothing, as DynamoDB's are."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws
from moto.dynamodb.models.table import Table

from shared.adapters import aws
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.state_table import StateTable, TransactionCancelledError, attr_names, key, make_table, n, s
from shared.domain.cluster_state import DemandCount
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

"""Runtimes are summed per job name and sent in one write per name; a failed write loses nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from shared.adapters import aws
from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.state_table import StateTable, make_table
from shared.worker.runtime_tally import RuntimeSendError, RuntimeTally

REGION = "us-east-1"


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield aws.client("dynamodb", REGION)


def test_sums_per_name_are_sent_once_and_averaged(dynamodb: Any) -> None:
    # GIVEN three finished jobs of two names
    make_table(dynamodb, "state")
    store, tally = DynamoClusterStore(StateTable("state", client=dynamodb)), RuntimeTally()
    for name, seconds in (("align", 10.0), ("align", 20.0), ("call", 4.0)):
        tally.add(name, seconds)
    made: list[str] = []
    dynamodb.meta.events.register("before-call.dynamodb.*", lambda model, **_: made.append(model.name))
    # WHEN the tally is sent, twice
    tally.send(store)
    tally.send(store)
    # THEN one write per name, once, and the averages are right
    assert made == ["UpdateItem", "UpdateItem"]
    assert store.average_runtimes() == {"align": 15.0, "call": 4.0}


def test_a_failed_send_keeps_the_sums_for_the_next(dynamodb: Any) -> None:
    # GIVEN a tally whose table does not exist yet
    store, tally = DynamoClusterStore(StateTable("later", client=dynamodb)), RuntimeTally()
    tally.add("align", 10.0)
    # WHEN it is sent  THEN the error names what was kept
    with pytest.raises(RuntimeSendError, match=r"runtimes of \['align'\]; keeping them"):
        tally.send(store)
    # AND once the table exists, the next send (with a job added meanwhile) records both
    make_table(dynamodb, "later")
    tally.add("align", 20.0)
    tally.send(store)
    assert store.average_runtimes() == {"align": 15.0}

"""lifecycle_step's dispatch: one step per LifecycleAction, the names the state machine sends.

The steps themselves run inside the executed state machines (tests/lifecycle); here, only the seam.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from functions import lifecycle_step
from shared.formats.lifecycle import LifecycleAction
from tests.functions.harness import Cluster


@pytest.fixture
def step(cluster: Cluster) -> Iterator[None]:
    lifecycle_step._dependencies.cache_clear()  # warm up on this cluster's environment
    yield
    lifecycle_step._dependencies.cache_clear()


def test_every_lifecycle_action_has_a_step_and_an_unknown_one_is_named(step: None) -> None:
    # WHEN the state machine asks for a step there is none of
    with pytest.raises(lifecycle_step.UnknownActionError) as raised:
        lifecycle_step.run_step("launch_everything", {}, "test", now=0.0)
    # THEN the error names it, and the steps it knows are exactly the LifecycleActions
    known = re.fullmatch(r"unknown lifecycle action 'launch_everything'; known: (.*)", str(raised.value))
    assert known is not None, raised.value
    assert known.group(1).split(", ") == sorted(LifecycleAction)


def test_a_step_reads_an_earlier_answer_from_its_result_key(step: None) -> None:
    # GIVEN the execution's state after launch_static_nodes answered (under $.launched): one node, not running
    state = {"launched": {"instance_ids": ["i-0123456789abcdef0"], "launched_at": 0.0, "deadline": 900.0}}
    # WHEN the state machine asks whether the static nodes run  THEN that node is waited for
    assert lifecycle_step.run_step(LifecycleAction.CHECK_STATIC_NODES, state, "test", now=1.0) == {
        "done": False,
        "waiting": ["i-0123456789abcdef0"],
    }
    # AND under any other key the answer is not found: nothing to wait for
    moved = {"static_nodes": state["launched"]}
    assert lifecycle_step.run_step("check_static_nodes", moved, "test", now=1.0) == {"done": True, "waiting": []}

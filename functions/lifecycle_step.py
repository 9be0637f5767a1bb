"""The LaunchCluster/TeardownCluster steps that need Shoal's code, picked by ``action``.

The state machine sends ``{"action": ..., "input": <the execution's state>, "execution": <name>}``; the
answer goes back into the execution's state at the action's result path. Both sides take the action
names and the paths from ``shared.formats.lifecycle``. A ``LifecycleError`` fails the
task with the error's class name and message, which the state machine catches and records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.observability import logger, tracer
from shared.domain.node_types import Offer
from shared.domain.scaling import offers_for
from shared.formats import lifecycle as protocol
from shared.formats.lifecycle import LifecycleAction, result_key
from shared.services import lifecycle
from shared.services.environment import FunctionEnvironment
from shared.services.lifecycle import LifecyclePorts
from shared.wiring.control_plane import build_lifecycle_step
from shared.wiring.settings import read_function_environment


def clock() -> float:
    """Now, in epoch seconds (tests and the local cloud put a simulated clock here)."""
    return time.time()


class UnknownActionError(ValueError):
    """The state machine asked for a step this function does not have."""


@cache
def _dependencies() -> tuple[FunctionEnvironment, LifecyclePorts, tuple[Offer, ...]]:
    env = read_function_environment()
    return env, build_lifecycle_step(env), tuple(offers_for(env.cluster))


def answer_of(action: LifecycleAction, state: Mapping[str, Any]) -> Mapping[str, Any]:
    """What an earlier step answered, from where the state machine put it (``$.launched`` ...)."""
    value = state.get(result_key(action)) or {}
    return value if isinstance(value, Mapping) else {}


def run_step(action: str, state: Mapping[str, Any], execution: str, *, now: float) -> dict[str, object]:
    env, ports, offers = _dependencies()
    settings = env.cluster
    launched = LifecycleAction.LAUNCH_STATIC_NODES
    steps: dict[LifecycleAction, Callable[[], dict[str, object]]] = {
        LifecycleAction.VALIDATE: lambda: lifecycle.validate(settings, offers, state, now=now),
        LifecycleAction.LAUNCH_STATIC_NODES: lambda: lifecycle.launch_static_nodes(
            ports, settings, offers, now=now, execution=execution
        ),
        LifecycleAction.CHECK_STATIC_NODES: lambda: lifecycle.check_static_nodes(
            ports, answer_of(launched, state), now=now
        ),
        LifecycleAction.CHECK_AGENTS: lambda: lifecycle.check_agents(ports, answer_of(launched, state), now=now),
        LifecycleAction.ROLLBACK: lambda: lifecycle.rollback(ports, now=now),
        LifecycleAction.DRAIN_ALL: lambda: lifecycle.drain_all(ports, state, now=now),
        LifecycleAction.CHECK_JOBS: lambda: lifecycle.check_jobs(
            ports, answer_of(LifecycleAction.DRAIN_ALL, state), now=now
        ),
        LifecycleAction.INVENTORY: lambda: lifecycle.inventory(ports) | {"at": now},
        LifecycleAction.CHECK_TERMINATED: lambda: lifecycle.check_terminated(
            ports, answer_of(LifecycleAction.INVENTORY, state), now=now
        ),
        LifecycleAction.VERIFY_EMPTY: lambda: lifecycle.verify_empty(ports, now=now),
    }
    if action not in steps:
        raise UnknownActionError(f"unknown lifecycle action {action!r}; known: {', '.join(sorted(steps))}")
    return steps[LifecycleAction(action)]()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    action = str(event.get(protocol.ACTION, ""))
    state = event.get(protocol.INPUT) or {}
    execution = str(event.get(protocol.EXECUTION, "manual"))
    logger.append_keys(action=action, execution=execution)
    result = run_step(action, state if isinstance(state, Mapping) else {}, execution, now=clock())
    logger.info("lifecycle step done", extra={"result": result})
    return result

"""What the LaunchCluster/TeardownCluster state machines and the lifecycle Lambda say to each other.

The state machine (``cdk/lifecycle.py``) invokes the lifecycle Lambda (``functions/lifecycle_step.py``)
with ``{"action": <LifecycleAction>, "input": <the execution's state>, "execution": <its name>}`` and
puts the answer into the execution's state under the action's ``result_key``; later steps read
earlier answers from there (``check_static_nodes`` reads what ``launch_static_nodes`` answered).
Both sides take the action names and the keys from here, so neither can drift from the other.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

# The invocation's payload.
ACTION = "action"
INPUT = "input"
EXECUTION = "execution"
ERROR = "error"  # where a caught failure goes in the execution's state (``$.error.Cause``)


class LifecycleAction(enum.StrEnum):
    """A lifecycle step that needs Shoal's code, by the name the state machine sends."""

    VALIDATE = "validate"
    LAUNCH_STATIC_NODES = "launch_static_nodes"
    CHECK_STATIC_NODES = "check_static_nodes"
    CHECK_AGENTS = "check_agents"
    ROLLBACK = "rollback"
    DRAIN_ALL = "drain_all"
    CHECK_JOBS = "check_jobs"
    INVENTORY = "inventory"
    CHECK_TERMINATED = "check_terminated"
    VERIFY_EMPTY = "verify_empty"


# Where each action's answer goes in the execution's state ($.<key>).
RESULT_KEYS: Mapping[LifecycleAction, str] = MappingProxyType(
    {
        LifecycleAction.VALIDATE: "settings",
        LifecycleAction.LAUNCH_STATIC_NODES: "launched",
        LifecycleAction.CHECK_STATIC_NODES: "static_nodes",
        LifecycleAction.CHECK_AGENTS: "agents",
        LifecycleAction.ROLLBACK: "rollback",
        LifecycleAction.DRAIN_ALL: "drained",
        LifecycleAction.CHECK_JOBS: "jobs",
        LifecycleAction.INVENTORY: "inventory",
        LifecycleAction.CHECK_TERMINATED: "terminated",
        LifecycleAction.VERIFY_EMPTY: "verified",
    }
)


def result_key(action: LifecycleAction) -> str:
    """The key of the execution's state that holds ``action``'s answer."""
    return RESULT_KEYS[action]


def result_path(action: LifecycleAction, *fields: str) -> str:
    """The JSONPath of ``action``'s answer (or of a field in it): ``$.launched``, ``$.jobs.done``."""
    return ".".join(("$", result_key(action), *fields))

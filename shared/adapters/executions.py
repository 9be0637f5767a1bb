"""Step Functions executions of the LaunchCluster/TeardownCluster state machines: start, follow, list."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws
from shared.services.cluster_utils import ExecutionInfo

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


class ExecutionsError(RuntimeError):
    """Step Functions could not be asked; the message names the call and the machine or execution."""


def execution_name(verb: str, now: float) -> str:
    """``{verb}-{UTC timestamp to the millisecond}``: sortable, and unique for one user's runs."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"{verb}-{stamp}{int(now * 1000) % 1000:03d}Z"


def machine_label(machine_arn: str) -> str:
    """``arn:...:stateMachine:shoal-x-LaunchCluster`` → ``LaunchCluster``."""
    return machine_arn.rsplit(":", 1)[-1].rsplit("-", 1)[-1]


class StepFunctionsExecutions:
    def __init__(self, region: str, *, client: SFNClient | None = None) -> None:
        self.client: SFNClient = client if client is not None else aws.client("stepfunctions", region)

    def start(self, machine_arn: str, *, verb: str, payload: Mapping[str, object], now: float) -> str:
        with self._errors("StartExecution", machine_arn):
            response = self.client.start_execution(
                stateMachineArn=machine_arn, name=execution_name(verb, now), input=json.dumps(dict(payload))
            )
        return response["executionArn"]

    def describe(self, execution_arn: str) -> ExecutionInfo:
        with self._errors("DescribeExecution", execution_arn):
            found: Any = self.client.describe_execution(executionArn=execution_arn)
        info = _info(found, machine_label(found["stateMachineArn"]))
        if info.status not in {"RUNNING", "SUCCEEDED"} and not info.cause:
            error, cause = self._failure_from_history(execution_arn)
            info = ExecutionInfo(**{**_fields(info), "error": info.error or error, "cause": cause})
        return info

    def states_entered(self, execution_arn: str) -> list[str]:
        names: list[str] = []
        with self._errors("GetExecutionHistory", execution_arn):
            for page in self.client.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
                names += [
                    e["stateEnteredEventDetails"]["name"] for e in page["events"] if "stateEnteredEventDetails" in e
                ]
        return names

    def recent(self, machines: Mapping[str, str], limit: int) -> list[ExecutionInfo]:
        """The newest ``limit`` executions of the given machines (label → ARN), newest first."""
        found: list[ExecutionInfo] = []
        for label, arn in machines.items():
            with self._errors("ListExecutions", arn):
                response: Any = self.client.list_executions(stateMachineArn=arn, maxResults=max(1, limit))
            found += [_info(e, label) for e in response.get("executions", [])]
        found.sort(key=lambda e: e.started_at, reverse=True)
        return found[:limit]

    def _failure_from_history(self, execution_arn: str) -> tuple[str | None, str | None]:
        with self._errors("GetExecutionHistory", execution_arn):
            events = self.client.get_execution_history(executionArn=execution_arn, reverseOrder=True, maxResults=20)
        for event in events["events"]:
            for details_key in (
                "executionFailedEventDetails",
                "executionAbortedEventDetails",
                "executionTimedOutEventDetails",
            ):
                details: Any = event.get(details_key)
                if details:
                    return details.get("error"), details.get("cause")
        return None, None

    @contextmanager
    def _errors(self, action: str, subject: str) -> Iterator[None]:
        try:
            yield
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            message = error.response.get("Error", {}).get("Message", "")
            raise ExecutionsError(f"Step Functions {action} on {subject} failed: {code}: {message}") from None
        except BotoCoreError as error:
            raise ExecutionsError(f"Step Functions {action} on {subject} failed: {error}") from None


def _epoch(value: object) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


def _info(found: Mapping[str, Any], label: str) -> ExecutionInfo:
    return ExecutionInfo(
        arn=found["executionArn"],
        name=found["name"],
        machine=label,
        status=found["status"],
        started_at=_epoch(found.get("startDate")) or 0.0,
        stopped_at=_epoch(found.get("stopDate")),
        error=found.get("error"),
        cause=found.get("cause"),
    )


def _fields(info: ExecutionInfo) -> dict[str, Any]:
    return {name: getattr(info, name) for name in ExecutionInfo.__dataclass_fields__}

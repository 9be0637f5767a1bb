"""What the local cloud adds to moto, in one place: each patch says what moto lacks and why the fix is safe.

``activate(hooks)`` applies them and ``deactivate()`` puts every patched attribute back, so a test process
that runs a demo and then plain ``mock_aws`` tests sees stock moto again. The two CloudFormation models
stay registered (they only add support for two resource types).

- CloudFormation: ``AWS::CloudWatch::Alarm`` and ``AWS::SQS::QueuePolicy`` have no moto model; small ones
  (``shared.local.moto_models``) create the alarm in moto's CloudWatch and set the queue's Policy attribute.
- Step Functions: CloudFormation creates state machines in the plain backend, but with
  ``execute_state_machine`` on, the API serves the executing (parser) backend; CloudFormation is routed to
  the backend the API uses. Wait states sleep ``seconds / speed`` (the accelerated clock). The interpreter
  does not know that ``aws-sdk:eventbridge:*`` tasks are boto3's ``events`` service; it is told.
- Lambda: without Docker, ``Invoke`` goes to ``LambdaSimpleBackend.invoke``, which only echoes; it calls
  ``hooks.invoke_lambda`` instead, which runs the real handler in-process.
- EventBridge: moto raises ``NotImplementedError`` for Lambda targets, delivers to disabled rules and
  matches every event against schedule rules; here a rule delivers only when enabled and only events its
  pattern matches (moto's own matcher), and Lambda targets go to ``hooks.deliver_event`` (the router).
- Two O(n)-per-call hot spots (found by ``benchmarks/bench_worker.py``): SQS ReceiveMessage re-reads
  every queue attribute per message for its retention check, and every DynamoDB TransactWriteItems
  deep-copies the whole table as a rollback backup. The first reads the retention period directly. The
  second is skipped, and instead every condition of a transaction is checked before any item is written
  (``conditions_first``), so a cancelled transaction still changes nothing, as in DynamoDB.
  ``hot_spots_fixed()`` applies only these two, for benchmarks that run moto in-process.
- SQS: with a simulated clock (``Hooks.now``) a message's SentTimestamp is stamped with it, since the agents compare
  it with their own simulated clock (how long a job has been queued: ``shared.domain.cheaper_first``); visibility
  and retention still run on real time, which a stamp ahead of it only makes retention longer.
- SQS: a message whose visibility is changed to 0 is visible at once, as in SQS. moto makes it visible only from
  the next millisecond, so whether the next agent's receive in the same lockstep step saw a returned job depended
  on how fast the machine was: two runs of the same demo placed a job on different nodes.
- EC2: instance ids are numbered in launch order instead of drawn at random. The scaler breaks ties between
  equal nodes by id (which of two idle nodes to drain), so random ids made two runs of the same demo drain
  different nodes; EC2's own ids are arbitrary, and any order is one EC2 could give.
- S3: PutBucketEncryption with a rule that only blocks encryption types (``BlockedEncryptionTypes``, what
  Toil 9's ``aws:`` job store sends to allow SSE-C) is valid in S3, but moto 5.2 requires every rule to set
  ``ApplyServerSideEncryptionByDefault`` and answers MalformedXML. Such a rule is stored with S3's own
  default (SSE-S3, ``AES256``, which every bucket has had since 2023), so GetBucketEncryption answers as
  S3 does; any other body still goes through moto's check.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import xmltodict  # type: ignore[import-untyped]  # moto parses S3 bodies with it (no stubs)
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.cloudformation import parsing as cfn_parsing
from moto.core.utils import unix_time
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import TransactionCanceledException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.ec2.models import instances as ec2_instances
from moto.events.models import Rule
from moto.s3.responses import S3Response
from moto.sqs import models as sqs_models
from moto.sqs.models import Message, SQSBackend
from moto.stepfunctions.models import StateMachine
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
    StateTaskService,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.responses import get_backend

from shared.local import moto_models  # noqa: F401 (importing it registers the two CloudFormation models)

# (function name or ARN, request payload) -> (response payload, function error or None)
InvokeLambda = Callable[[str, bytes], tuple[bytes, str | None]]
# (rule name, target, event as EventBridge delivers it)
DeliverEvent = Callable[[str, dict[str, Any], dict[str, Any]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Hooks:
    invoke_lambda: InvokeLambda
    deliver_event: DeliverEvent
    speed: float
    # The simulated clock (epoch seconds), if the cloud runs on one: SQS stamps a message's SentTimestamp with it,
    # so an agent's "how long has this job been queued" is in the same time as its own clock.
    now: Callable[[], float] | None = None


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hooks: Hooks | None = None
        self.originals: list[tuple[Any, str, Any]] = []  # (owner, attribute, original or _MISSING)


_state = _State()
_MISSING = object()


def active_hooks() -> Hooks | None:
    return _state.hooks


def activate(hooks: Hooks) -> None:
    """Apply every patch, calling ``hooks`` (one local cloud at a time per process)."""
    with _state.lock:
        if _state.originals:
            raise RuntimeError("a local cloud is already running in this process; stop it first")
        _state.hooks = hooks
        for cache in (cfn_parsing.get_model_list, cfn_parsing.get_model_map, cfn_parsing.get_name_type_map):
            cache.cache_clear()  # the two models below join moto's CloudFormation model list
        _apply(_patches())


def deactivate() -> None:
    with _state.lock:
        while _state.originals:
            owner, name, original = _state.originals.pop()
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        _state.hooks = None


@contextlib.contextmanager
def hot_spots_fixed() -> Iterator[None]:
    """Only the two hot-spot fixes, for in-process moto without the rest of the local cloud (the worker
    benchmark measures the agent with the same moto the demo runs)."""
    with _state.lock:
        if _state.originals:
            raise RuntimeError("a local cloud is already running in this process; stop it first")
        _apply(_hot_spot_patches())
    try:
        yield
    finally:
        deactivate()


def _apply(patches: list[tuple[Any, str, Any]]) -> None:
    for owner, name, replacement in patches:
        _state.originals.append((owner, name, owner.__dict__.get(name, _MISSING)))
        setattr(owner, name, replacement)


def _hot_spot_patches() -> list[tuple[Any, str, Any]]:
    return [
        (SQSBackend, "is_message_valid_based_on_retention_period", _retention_ok),
        (Table, "__deepcopy__", _table_no_backup),
        (DynamoDBBackend, "transact_write_items", conditions_first(DynamoDBBackend.transact_write_items)),
    ]


def _patches() -> list[tuple[Any, str, Any]]:
    # Step Functions names EventBridge "eventbridge" in aws-sdk integrations; boto3 calls it "events".
    sdk_names = {**StateTaskService._SERVICE_NAME_SFN_TO_BOTO_OVERRIDES, "eventbridge": "events"}
    return [
        (StateTaskService, "_SERVICE_NAME_SFN_TO_BOTO_OVERRIDES", sdk_names),
        *_hot_spot_patches(),
        (StateMachine, "create_from_cloudformation_json", classmethod(_create_state_machine)),
        (StateMachine, "delete_from_cloudformation_json", classmethod(_delete_state_machine)),
        (WaitFunction, "_wait_interval", _scaled_wait),
        (LambdaSimpleBackend, "invoke", _invoke),
        (Rule, "send_to_targets", _send_to_targets(Rule.send_to_targets)),
        (S3Response, "_encryption_config_from_body", _encryption_config(S3Response._encryption_config_from_body)),
        (Message, "mark_sent", _sent_on_the_clock(Message.mark_sent)),
        (Message, "change_visibility", _zero_is_at_once(Message.change_visibility)),
        (ec2_instances, "random_instance_id", _next_instance_id),
    ]


def _sent_on_the_clock(original: Callable[..., None]) -> Callable[..., None]:
    def mark_sent(self: Any, delay_seconds: int | None = None) -> None:
        original(self, delay_seconds)
        hooks = _state.hooks
        if hooks is not None and hooks.now is not None:
            self.sent_timestamp = int(hooks.now() * 1000)

    return mark_sent


_instance_ids = itertools.count(1)  # for the whole process: a second local cloud must not reuse an id


def _next_instance_id() -> str:
    return f"i-{next(_instance_ids):017x}"


def _zero_is_at_once(original: Callable[..., None]) -> Callable[..., None]:
    def change_visibility(self: Any, visibility_timeout: int) -> None:
        original(self, visibility_timeout)
        if int(visibility_timeout) == 0:
            # moto's ``visible`` asks for a later millisecond than this (its own clock, which a test may stop)
            self.visible_at = sqs_models.unix_time_millis() - 1  # type: ignore[attr-defined]

    return change_visibility


# ---- hot spots -------------------------------------------------------------------------------------


def _retention_ok(self: Any, queue_name: str, message: Any) -> bool:
    period = float(self.get_queue(queue_name).message_retention_period)
    return bool(period + message.sent_timestamp / 1000 > unix_time())


def _table_no_backup(self: Any, memo: dict[int, Any]) -> Any:
    return self


def conditions_first(original: Callable[..., None]) -> Callable[..., None]:
    """Without its table backup, moto could not roll back a transaction that fails half way (it applies
    every item and checks as it goes). So every condition is checked first, against the state before
    the transaction, and nothing is applied unless all hold: all or nothing, as in DynamoDB."""

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        errors: list[tuple[str | None, str | None, Any]] = []
        for item in transact_items:
            op_type, op = next(iter(item.items()))
            condition = op.get("ConditionExpression")
            if condition is None:
                errors.append((None, None, None))
                continue
            table = self.get_table(op["TableName"])
            if op_type == "Put":
                key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = op["Item"][table.range_key_attr]
            else:
                key = op["Key"]
            current = self.get_item(op["TableName"], key)
            check = get_filter_expression(
                condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            )
            if check.expr(current):
                errors.append((None, None, None))
                continue
            wants_old = op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current is not None
            old = current.to_json()["Attributes"] if wants_old else None
            errors.append(("ConditionalCheckFailed", "The conditional request failed", old))
        if any(code is not None for code, _, _ in errors):
            raise TransactionCanceledException(errors)
        original(self, transact_items)

    return transact_write_items


# ---- Step Functions --------------------------------------------------------------------------------


def _executing_backend(account_id: str, region_name: str) -> Any:
    return get_backend(account_id, region_name)


def _create_state_machine(
    cls: Any, /, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
) -> Any:
    properties = cloudformation_json["Properties"]
    definition = properties.get("DefinitionString", "")
    if not isinstance(definition, str):
        definition = json.dumps(definition)
    tags = [{"key": t["Key"], "value": t["Value"]} for t in properties.get("Tags", [])]
    return _executing_backend(account_id, region_name).create_state_machine(
        name=properties.get("StateMachineName", resource_name),
        definition=definition,
        roleArn=properties.get("RoleArn", ""),
        tags=tags,
    )


def _delete_state_machine(
    cls: Any, /, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
) -> None:
    _executing_backend(account_id, region_name).delete_state_machine(resource_name)


def _scaled_wait(self: Any, env: Any, wait_seconds: int) -> None:
    hooks = _state.hooks
    speed = hooks.speed if hooks is not None else 1.0
    if wait_seconds > 0:
        env.program_state_event.wait(wait_seconds / speed)


# ---- Lambda ----------------------------------------------------------------------------------------


def _invoke(  # noqa: PLR0917 (moto calls it with these positional arguments)
    self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
) -> bytes:
    hooks = _state.hooks
    if hooks is None:
        return str.encode(body or "Simple Lambda happy path OK")
    payload = body if isinstance(body, bytes) else str(body or "{}").encode("utf-8")
    result, error = hooks.invoke_lambda(function_name, payload)
    if error is not None:
        response_headers["x-amz-function-error"] = error
    return result


# ---- EventBridge -----------------------------------------------------------------------------------


def _send_to_targets(original: Callable[..., None]) -> Callable[..., None]:
    def send_to_targets(self: Any, original_event: dict[str, Any], transform_input: bool = True) -> None:
        hooks = _state.hooks
        if hooks is None:
            original(self, original_event, transform_input)
            return
        if self.state != "ENABLED":
            return
        if self.scheduled_expression and not self.event_pattern.get_pattern():
            return  # a schedule rule: put events never match it
        if not self.event_pattern.matches_event(original_event):
            return
        event = dict(original_event)
        if isinstance(event.get("time"), int | float):
            event["time"] = datetime.fromtimestamp(float(event["time"]), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif isinstance(event.get("time"), datetime):
            event["time"] = event["time"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event.pop("ingestion-time", None)
        others = []
        for target in self.targets:
            if ":lambda:" in str(target.get("Arn", "")):
                hooks.deliver_event(self.name, dict(target), event)
            else:
                others.append(target)
        if others:
            clone = copy.copy(self)
            clone.targets = others
            original(clone, original_event, transform_input)

    return send_to_targets


# ---- S3 -------------------------------------------------------------------------------------------

BLOCKABLE_ENCRYPTION_TYPES = frozenset({"NONE", "SSE-C"})  # S3's values for BlockedEncryptionTypes


def _encryption_config(original: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    def _encryption_config_from_body(self: Any) -> dict[str, Any]:
        config = xmltodict.parse(self.body).get("ServerSideEncryptionConfiguration") or {}
        rule = config.get("Rule") if isinstance(config, dict) else None
        if not isinstance(rule, dict) or "ApplyServerSideEncryptionByDefault" in rule:
            return original(self)
        blocked = (rule.get("BlockedEncryptionTypes") or {}).get("EncryptionType")
        types = blocked if isinstance(blocked, list) else [blocked]
        if blocked is None or not set(types) <= BLOCKABLE_ENCRYPTION_TYPES:
            return original(self)  # moto's MalformedXML
        return {**config, "Rule": {**rule, "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}}

    return _encryption_config_from_body

"""The local EventBridge and CloudWatch: what moto stores but never fires, fired on the accelerated clock.

Everything is read from the deployed stack; no rule, pattern, target or threshold is written here.

- Schedules: every enabled rule with ``rate(...)`` sends a "Scheduled Event" to its targets each period
  of simulated time.
- Alarms: moto's CloudWatch does not evaluate SQS metrics (SQS publishes none in moto), so each metric
  alarm on an ``AWS/SQS`` queue metric is evaluated here once per period from the queue's attributes,
  with its own comparison and threshold; a change of state is set on the alarm and put on the bus as a
  "CloudWatch Alarm State Change" event, as CloudWatch does.
- EC2: every change of an instance's state is put on the bus as an "EC2 Instance State-change
  Notification" event.
- Delivery: events reach rules through moto's own ``PutEvents`` and pattern matcher; for Lambda
  targets, ``moto_patches`` hands the matched (rule, target, event) to ``deliver``, and ``tick``
  invokes the target's real handler (``LocalLambdas``), in order, like EventBridge's async invoke.
"""

from __future__ import annotations

import json
import operator
import queue
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3

from shared.local.clock import Clock
from shared.local.lambdas import Invocation, LocalLambdas

RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
COMPARISONS: Mapping[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
# SQS metric → the queue attribute that holds the same number.
SQS_METRIC_ATTRIBUTES = {
    "ApproximateNumberOfMessagesVisible": "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible": "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed": "ApproximateNumberOfMessagesDelayed",
}


def rate_seconds(expression: str) -> float | None:
    """``rate(5 minutes)`` → 300; None for ``cron(...)`` (not used by Shoal's stack)."""
    match = RATE.match(expression.strip())
    if match is None:
        return None
    return int(match.group(1)) * UNIT_SECONDS[match.group(2).rstrip("s")]


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class _Schedule:
    rule: str
    arn: str
    period: float
    next_due: float


@dataclass(slots=True)
class _Alarm:
    name: str
    arn: str
    queue_url: str
    attribute: str
    compare: Callable[[float, float], bool]
    threshold: float
    period: float
    next_due: float
    state: str
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    rule: str
    target: dict[str, Any]
    event: dict[str, Any]


@dataclass(slots=True)
class RouterStats:
    scheduled: int = 0
    alarm_changes: int = 0
    ec2_events: int = 0
    delivered: dict[str, int] = field(default_factory=dict)  # by detail-type
    failed: list[str] = field(default_factory=list)


class EventRouter:
    """Fires the deployed schedules, alarms and EC2 events on ``clock`` and delivers them to handlers."""

    def __init__(self, *, clock: Clock, lambdas: LocalLambdas, region: str, account: str) -> None:
        self.clock = clock
        self.lambdas = lambdas
        self.region = region
        self.account = account
        self.stats = RouterStats()
        self.invocations: list[Invocation] = []
        self._pending: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        self._schedules: list[_Schedule] = []
        self._alarms: list[_Alarm] = []
        self._instance_states: dict[str, str] = {}
        # Clients are made by ``discover``, once the local cloud's endpoint is in the environment.
        self._events: Any = None
        self._cloudwatch: Any = None
        self._sqs: Any = None
        self._lock = threading.Lock()

    # ---- reading the deployment --------------------------------------------------------------------

    def discover(self) -> None:
        """Read the schedule rules and the SQS alarms from the deployed stack."""
        self._events = boto3.client("events", region_name=self.region)
        self._cloudwatch = boto3.client("cloudwatch", region_name=self.region)
        self._sqs = boto3.client("sqs", region_name=self.region)
        now = self.clock.now()
        schedules = []
        for page in self._events.get_paginator("list_rules").paginate():
            for rule in page.get("Rules", []):
                period = rate_seconds(rule.get("ScheduleExpression", "") or "")
                if period is not None:
                    schedules.append(
                        _Schedule(rule=rule["Name"], arn=rule["Arn"], period=period, next_due=now + period)
                    )
        alarms = []
        for page in self._cloudwatch.get_paginator("describe_alarms").paginate():
            for alarm in page.get("MetricAlarms", []):
                attribute = SQS_METRIC_ATTRIBUTES.get(alarm.get("MetricName", ""))
                queue_name = next((d["Value"] for d in alarm.get("Dimensions", []) if d["Name"] == "QueueName"), None)
                compare = COMPARISONS.get(alarm.get("ComparisonOperator", ""))
                if alarm.get("Namespace") != "AWS/SQS" or attribute is None or queue_name is None or compare is None:
                    continue  # only SQS queue metrics can be computed locally
                alarms.append(
                    _Alarm(
                        name=alarm["AlarmName"],
                        arn=alarm["AlarmArn"],
                        queue_url=self._sqs.get_queue_url(QueueName=queue_name)["QueueUrl"],
                        attribute=attribute,
                        compare=compare,
                        threshold=float(alarm.get("Threshold", 0.0)),
                        period=float(alarm.get("Period", 60)),
                        next_due=now,
                        state=alarm.get("StateValue", "INSUFFICIENT_DATA"),
                        description=f"{alarm.get('MetricName')} {alarm.get('ComparisonOperator')} "
                        f"{alarm.get('Threshold', 0.0):g}",
                    )
                )
        with self._lock:
            self._schedules, self._alarms = schedules, alarms

    @property
    def schedule_rules(self) -> list[str]:
        return [s.rule for s in self._schedules]

    @property
    def alarm_names(self) -> list[str]:
        return [a.name for a in self._alarms]

    # ---- what moto_patches calls ---------------------------------------------------------------------

    def deliver(self, rule: str, target: dict[str, Any], event: dict[str, Any]) -> None:
        """A rule matched ``event``; its Lambda target runs on the router's next tick (thread-safe)."""
        self._pending.put(Delivery(rule=rule, target=target, event=event))

    # ---- one tick ------------------------------------------------------------------------------------

    def tick(self, instances: Mapping[str, str]) -> None:
        """Fire what is due at ``clock.now()``; ``instances``: every EC2 instance id → its state name."""
        now = self.clock.now()
        self._fire_schedules(now)
        self._evaluate_alarms(now)
        self._ec2_changes(instances, now)
        self.flush()

    def flush(self) -> None:
        """Invoke the targets of every event delivered so far."""
        while True:
            try:
                delivery = self._pending.get_nowait()
            except queue.Empty:
                return
            self._invoke(delivery.target, delivery.event, delivery.rule)

    def _fire_schedules(self, now: float) -> None:
        for schedule in self._schedules:
            if now < schedule.next_due:
                continue
            while schedule.next_due <= now:  # a long tick fires once, as EventBridge does not catch up
                schedule.next_due += schedule.period
            rule = self._events.describe_rule(Name=schedule.rule)
            if rule.get("State") != "ENABLED":
                continue
            event = self._envelope("aws.events", "Scheduled Event", {}, [schedule.arn], now)
            targets = self._events.list_targets_by_rule(Rule=schedule.rule).get("Targets", [])
            self.stats.scheduled += 1
            for target in targets:
                self._invoke(dict(target), event, schedule.rule)

    def _evaluate_alarms(self, now: float) -> None:
        for alarm in self._alarms:
            if now < alarm.next_due:
                continue
            alarm.next_due = now + alarm.period
            attributes = self._sqs.get_queue_attributes(QueueUrl=alarm.queue_url, AttributeNames=[alarm.attribute])
            value = float(attributes.get("Attributes", {}).get(alarm.attribute, "0"))
            state = "ALARM" if alarm.compare(value, alarm.threshold) else "OK"
            if state == alarm.state:
                continue
            reason = f"Threshold Crossed: 1 datapoint [{value:g}] ({alarm.description})"
            previous, alarm.state = alarm.state, state
            self._cloudwatch.set_alarm_state(AlarmName=alarm.name, StateValue=state, StateReason=reason)
            detail = {
                "alarmName": alarm.name,
                "state": {"value": state, "reason": reason, "timestamp": iso(now)},
                "previousState": {"value": previous, "timestamp": iso(now)},
            }
            self.stats.alarm_changes += 1
            self._put("aws.cloudwatch", "CloudWatch Alarm State Change", detail, [alarm.arn], now)

    def _ec2_changes(self, instances: Mapping[str, str], now: float) -> None:
        changed = [(i, s) for i, s in instances.items() if self._instance_states.get(i) != s]
        for instance_id, state in changed:
            self._instance_states[instance_id] = state
            arn = f"arn:aws:ec2:{self.region}:{self.account}:instance/{instance_id}"
            self.stats.ec2_events += 1
            self._put(
                "aws.ec2",
                "EC2 Instance State-change Notification",
                {"instance-id": instance_id, "state": state},
                [arn],
                now,
            )

    # ---- helpers -------------------------------------------------------------------------------------

    def _put(self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str], now: float) -> None:
        """An AWS service's event, put on the default bus (moto matches it against the deployed rules)."""
        self._events.put_events(
            Entries=[
                {
                    "Source": source,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail),
                    "Resources": resources,
                    "Time": datetime.fromtimestamp(now, tz=UTC),
                }
            ]
        )

    def _envelope(
        self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str], now: float
    ) -> dict[str, Any]:
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": self.account,
            "time": iso(now),
            "region": self.region,
            "resources": resources,
            "detail": detail,
        }

    def _invoke(self, target: dict[str, Any], event: dict[str, Any], rule: str) -> None:
        payload: object = json.loads(target["Input"]) if target.get("Input") else event
        detail_type = str(event.get("detail-type", ""))
        outcome = self.lambdas.invoke(str(target["Arn"]), payload, trigger=f"{rule}: {detail_type}")
        self.stats.delivered[detail_type] = self.stats.delivered.get(detail_type, 0) + 1
        self.invocations.append(outcome)
        if not outcome.ok:
            self.stats.failed.append(f"{rule}: {outcome.error}")

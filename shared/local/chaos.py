"""A seeded chaos run of the demo (``shoal demo --chaos SEED``): faults at random, invariants from witnesses.

Faults, drawn from ``random.Random(seed)`` on every tick of the demo loop while some job runs (rates per
simulated hour of that, each kind capped so a run cannot be crushed by them):

- **agent crash**: a node's agent stops dead as on ``kill -9`` (``Agent.abandon``: no settling, its jobs'
  processes live on), and a new agent starts on the same node at once, as ``--restart on-failure`` would;
- **instance termination**: a busy instance of the cluster dies at once (its agent and every process on it
  stop dead, ``LocalNodes.power_off``) and is terminated through EC2;
- **spot interruption**: the node's agent hears the notice its IMDS watch would give and evacuates, the EC2
  warning event goes on the bus, and the instance is terminated two simulated minutes later;
- **AWS errors**: an SQS or DynamoDB call from this process is answered, without reaching the service, with
  a throttling error or a 5xx at a set rate (a botocore ``before-send`` hook on the default session, so
  every client the agents, handlers and demo create carries it);
- **scaler crash**: a scaling round's Lambda stops half-way, after its first few AWS calls (a
  ``BaseException`` raised from the same hook, which no handler code catches, as a timeout would be).

Invariants, each from a witness the job records cannot influence:

- every job completed, and a job completed again only where a fault hit the node of its earlier completion within
  ``RERUN_WINDOW`` real seconds of it: ``executions.log`` (each completion appends its id) and
  ``completions.log`` (where and when). The witness is the job's last line, so a node or agent that dies after
  it and before the end is on the record leaves a run that never ended as far as anyone can know: it runs
  again, as it would under any scheduler (at least once). A second completion with no such fault is a defect;
- never two copies at once: ``overlaps.log`` (each run holds a lock in its whole process tree; a copy that
  finds it taken appends its id);
- no busy node terminated by the scaler: nodes that went away with jobs running, less those chaos ended;
- no process left behind: processes of a node's jobs still alive once its agent stopped, and at the end;
- nothing left after teardown: the demo's own check of tagged resources.

A fault is *survived* when the run ends with every invariant holding; the report says which failed.

Run it slowly (``--speed 60`` or less): botocore's retry back-off after an injected error is real time, and
at 300x one second of it is five simulated minutes without a heartbeat, which the scaler rightly reads as a
dead node (600 s of silence) and replaces, busy or not.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import boto3
from botocore.awsrequest import AWSResponse, HTTPHeaders

from shared.local.demo import Demo, DemoOptions, DemoResult
from shared.local.lambdas import Invocation
from shared.worker import process_tree

log = logging.getLogger(__name__)

SPOT_NOTICE_SECONDS = 120.0  # simulated: EC2's two minutes' warning
# Real seconds between a completion's witness and a fault on its node for the rerun to be the fault's doing: an
# agent restarted after a crash ends its predecessor's processes within seconds; a record write retried through
# injected throttling takes a few more.
RERUN_WINDOW = 60.0
FAULTY_SERVICES = ("sqs", "dynamodb")
SCALER_FUNCTION = "evaluate-scaling"


class LambdaKilledError(BaseException):
    """A Lambda invocation ended half-way by chaos; a BaseException so that no handler code catches it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChaosSettings:
    seed: int
    agent_crashes_per_hour: float = 30.0  # per simulated hour with jobs running
    terminations_per_hour: float = 6.0
    spot_interruptions_per_hour: float = 6.0
    aws_error_rate: float = 0.02  # of SQS and DynamoDB calls
    scaler_crash_rate: float = 0.25  # of scaling rounds
    most: int = 5  # of each timed kind, and of scaler crashes


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data


class Chaos:
    """The faults of one run and their counts; ``install`` hooks botocore, ``tick`` draws the timed faults."""

    def __init__(self, settings: ChaosSettings) -> None:
        self.settings = settings
        self.injected: Counter[str] = Counter()
        self.terminated: set[str] = set()  # instances chaos ended: their busy end is not the scaler's doing
        self.hits: dict[str, list[float]] = {}  # instance -> real times a fault ended its agent or its runs
        self._random = random.Random(settings.seed)
        self._random_lock = threading.Lock()  # the hook runs on many threads
        self._local = threading.local()
        self._pending_terminations: list[tuple[float, str]] = []
        self._last_tick: float | None = None
        self._session: Any = None
        self.armed = False  # set once the workload runs: launching the cluster is not under test
        self.over = False  # set when teardown begins: it is judged by what it leaves, not run under faults

    # ---- the AWS-call faults -------------------------------------------------------------------------

    def install(self) -> None:
        self._session = boto3._get_default_session()
        self._session.events.register("before-send", self._before_send)

    def uninstall(self) -> None:
        if self._session is not None:
            self._session.events.unregister("before-send", self._before_send)
            self._session = None

    def _draw(self) -> float:
        with self._random_lock:
            return self._random.random()

    def _before_send(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        calls_left = getattr(self._local, "calls_before_crash", None)
        if calls_left is not None:
            if calls_left <= 0:
                self._local.calls_before_crash = None
                self.injected["scaler_crash"] += 1
                raise LambdaKilledError("chaos: the scaling round's Lambda stopped half-way")
            self._local.calls_before_crash = calls_left - 1
        service = event_name.split(".")[1] if event_name.count(".") >= 2 else ""
        if not self.armed or service not in FAULTY_SERVICES or self._draw() >= self.settings.aws_error_rate:
            return None
        if self._draw() < 0.5:
            self.injected["aws_throttling"] += 1
            status, kind = 400, "ThrottlingException"
        else:
            self.injected["aws_5xx"] += 1
            status, kind = 503, "ServiceUnavailable"
        body = json.dumps({"__type": kind, "message": "injected by shoal demo --chaos"}).encode()
        headers = HTTPHeaders()
        headers["x-amzn-query-error"] = f"{kind};Sender"
        headers["content-type"] = "application/x-amz-json-1.0"
        return AWSResponse(request.url, status, headers, _Body(body))

    def wrap_lambdas(self, invoke: Any) -> Any:
        """``LocalLambdas.invoke``, with some scaling rounds stopped half-way."""

        def invoke_with_chaos(function: str, event: object, *, trigger: str = "") -> Invocation:
            crash = (
                self.armed
                and SCALER_FUNCTION in function
                and self.injected["scaler_crash"] < self.settings.most
                and self._draw() < self.settings.scaler_crash_rate
            )
            self._local.calls_before_crash = 1 + int(self._draw() * 4) if crash else None
            try:
                outcome: Invocation = invoke(function, event, trigger=trigger)
            except LambdaKilledError as error:
                return Invocation(function=function, trigger=trigger, ok=False, result=None, error=str(error),
                                  error_type="LambdaKilled", error_message=str(error))  # fmt: skip
            finally:
                self._local.calls_before_crash = None
            return outcome

        return invoke_with_chaos

    # ---- the timed faults ----------------------------------------------------------------------------

    def tick(self, demo: ChaosDemo, now: float) -> None:
        """Draw this tick's faults (``now``: simulated seconds) and carry out terminations that are due."""
        if self.over:
            return
        self.armed = True
        elapsed = 0.0 if self._last_tick is None else max(0.0, now - self._last_tick)
        self._last_tick = now
        due = [instance for at, instance in self._pending_terminations if at <= now]
        self._pending_terminations = [(at, i) for at, i in self._pending_terminations if at > now]
        if due:
            demo.terminate(due)
        busy = [i for i in demo.nodes.busy_agents() if i not in self.terminated]
        if elapsed == 0.0 or not busy:
            return
        hours = elapsed / 3600
        s, done = self.settings, self.injected
        if done["agent_crash"] < s.most and self._draw() < s.agent_crashes_per_hour * hours:
            instance = self._pick(busy)
            self._hit(instance)
            jobs = demo.nodes.crash_and_restart(instance)
            self.injected["agent_crash"] += 1
            demo.say(f"chaos: killed the agent on {instance} (kill -9, {jobs} job(s) running) and restarted it")
            return
        if done["instance_termination"] < s.most and self._draw() < s.terminations_per_hour * hours:
            instance = self._pick(busy)
            self.terminated.add(instance)
            self._hit(instance)
            self.injected["instance_termination"] += 1
            demo.say(f"chaos: terminating {instance}")
            demo.nodes.power_off(instance)
            demo.terminate([instance])
            return
        if done["spot_interruption"] < s.most and self._draw() < s.spot_interruptions_per_hour * hours:
            instance = self._pick(busy)
            self.terminated.add(instance)
            self._hit(instance)
            self.injected["spot_interruption"] += 1
            demo.say(f"chaos: spot interruption notice for {instance}")
            demo.spot_warning(instance)
            self._pending_terminations.append((now + SPOT_NOTICE_SECONDS, instance))

    def _hit(self, instance: str) -> None:
        self.hits.setdefault(instance, []).append(time.time())

    def _pick(self, choices: list[str]) -> str:
        with self._random_lock:
            return self._random.choice(choices)


class ChaosDemo(Demo):
    """The demo with ``Chaos`` loose in it; the report gains a ``chaos`` section and its invariants."""

    def __init__(self, options: DemoOptions, out: TextIO, settings: ChaosSettings | None = None) -> None:
        super().__init__(options, out)
        seed = options.chaos if options.chaos is not None else 0
        self.chaos = Chaos(settings or ChaosSettings(seed=seed))

    def run(self) -> DemoResult:
        self.chaos.install()
        try:
            return super().run()
        finally:
            self.chaos.uninstall()

    def say(self, line: str) -> None:
        self._say(f"{self._stamp()} {line}")

    def terminate(self, instance_ids: list[str]) -> None:
        self._ec2.terminate_instances(InstanceIds=instance_ids)

    def spot_warning(self, instance_id: str) -> None:
        self.nodes.interrupt(instance_id, "spot interruption notice (chaos)")
        now = self.clock.now()
        detail = {"instance-id": instance_id, "instance-action": "terminate"}
        boto3.client("events", region_name=self.settings.region).put_events(
            Entries=[
                {
                    "Source": "aws.ec2",
                    "DetailType": "EC2 Spot Instance Interruption Warning",
                    "Detail": json.dumps(detail),
                    "Resources": [f"arn:aws:ec2:{self.settings.region}::instance/{instance_id}"],
                    "Time": datetime.fromtimestamp(now, tz=UTC),
                }
            ]
        )

    # ---- hooks into the demo ---------------------------------------------------------------------------

    def _start_cluster(self, work_root: Path) -> None:
        super()._start_cluster(work_root)
        self.lambdas.invoke = self.chaos.wrap_lambdas(self.lambdas.invoke)  # type: ignore[method-assign]

    def _teardown(self) -> None:
        # Faults stop here: moto's Step Functions interpreter makes its aws-sdk calls through this process's
        # boto3 too, and an injected error there breaks the interpreter (KeyError 'RequestId'), not Shoal.
        self.chaos.over, self.chaos.armed = True, False
        super()._teardown()

    def _tick(self) -> None:
        super()._tick()
        if self._workload_start or self._submitted:
            self.chaos.tick(self, self.clock.elapsed())

    def _report(self, left: dict[str, list[str]], real_seconds: float) -> dict[str, object]:
        # The scaler's busy terminations only: a node chaos ended may well have been busy.
        chaos_ended = [b for b in self.nodes.busy_terminations if b.split(":", 1)[0] in self.chaos.terminated]
        self.nodes.busy_terminations[:] = [b for b in self.nodes.busy_terminations if b not in chaos_ended]
        self.lambdas.errors[:] = [e for e in self.lambdas.errors if "chaos:" not in e]
        report = super()._report(left, real_seconds)
        runs = Counter(self.nodes.executions_log.read_text(encoding="utf-8").split())
        overlaps = sorted(set(self.nodes.overlaps_log.read_text(encoding="utf-8").split()))
        still = process_tree.scan(lambda token: token.split("/", 1)[0] in self.nodes.owners)
        twice = {job.id: self._completions(job.id) for job in self._submitted if runs.get(job.id, 0) > 1}
        unexplained = sorted(job_id for job_id in twice if not self._rerun_explained(job_id))
        invariants = {
            "every_job_completed": all(runs.get(job.id, 0) >= 1 for job in self._submitted),
            "completed_again_only_after_a_fault_on_its_node": not unexplained,
            "never_two_copies_at_once": not overlaps,
            "no_busy_node_terminated": not self.nodes.busy_terminations,
            "no_process_left_behind": not self.nodes.left_behind and not still,
            "nothing_left_after_teardown": not left,
        }
        failed = [name for name, held in invariants.items() if not held]
        injected = sum(self.chaos.injected.values())
        # Which of the scaler's actions named each busy node that went away, so a failure says why it happened.
        ended_by = {
            b: _actions_naming(b.split(":", 1)[0], report.get("decisions")) for b in self.nodes.busy_terminations
        }
        for name in failed:
            why = f" ({json.dumps(ended_by)})" if name == "no_busy_node_terminated" else ""
            self.problems.append(f"chaos invariant failed: {name}{why}")
        report["problems"] = list(self.problems)
        report["chaos"] = {
            "seed": self.chaos.settings.seed,
            "faults_injected": injected,
            "faults_survived": 0 if failed else injected,
            "by_kind": dict(sorted(self.chaos.injected.items())),
            "invariants": invariants,
            "overlapping_jobs": overlaps,
            "completed_more_than_once": twice,  # job id -> "node at real time" of each completion
            "processes_left_behind": list(self.nodes.left_behind) + [f"pid {pid}" for pid in sorted(still)],
            "busy_nodes_chaos_ended": chaos_ended,
            "busy_nodes_ended_by": ended_by,
        }
        report["chaos_summary"] = (
            f"chaos (seed {self.chaos.settings.seed}): {injected} faults injected, "
            f"{0 if failed else injected} survived "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.chaos.injected.items())) or 'none'}); "
            f"invariants {'all held' if not failed else 'FAILED: ' + ', '.join(failed)}"
        )
        return report

    def _rerun_explained(self, job_id: str) -> bool:
        return rerun_after_fault(self._completions(job_id), self.chaos.hits)

    def _completions(self, job_id: str) -> list[str]:
        """Where and when (real time) each completion of ``job_id`` happened, from the nodes' detailed witness."""
        found = []
        for line in self.nodes.completions_log.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == job_id:
                found.append(f"{Path(parts[1]).parent.name} at {parts[2]}")
        return found


def rerun_after_fault(where: Sequence[str], hits: Mapping[str, Sequence[float]]) -> bool:
    """Did a fault hit the node of each completion but the last (``where``: "node at real time", oldest first)
    within ``RERUN_WINDOW`` of it? ``hits``: per node, the real times faults ended its agent or its runs."""
    for place in where[:-1]:
        node, _, at = place.partition(" at ")
        try:
            when = float(at)
        except ValueError:
            return False
        if not any(abs(hit - when) <= RERUN_WINDOW for hit in hits.get(node, ())):
            return False
    return True


def _actions_naming(instance_id: str, decisions: object) -> list[str]:
    """The scaler's recorded actions that named ``instance_id`` (kind and reason), oldest first."""
    named = []
    for entry in decisions if isinstance(decisions, list) else []:
        for action in entry.get("actions", []) if isinstance(entry, dict) else []:
            if instance_id in json.dumps(action):
                named.append(f"{action.get('action')} at {entry.get('at_seconds')} s: {action.get('reason')}")
    return named

"""LaunchCluster and TeardownCluster, executed from the synthesized template against moto."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from botocore.exceptions import ClientError

from shared.adapters.cluster_store import DynamoClusterStore
from shared.domain.cluster_state import ClusterStatus
from shared.domain.resources import Resources
from tests.lifecycle.conftest import LifecycleCloud

FAST = {"poll_seconds": 0}


def launch(cloud: LifecycleCloud) -> dict[str, Any]:
    return cloud.run(cloud.launch_arn, FAST)


def teardown(cloud: LifecycleCloud, **options: Any) -> dict[str, Any]:
    return cloud.run(cloud.teardown_arn, {"poll_seconds": 0, "job_poll_seconds": 1, **options})


def test_launch_then_teardown_leaves_nothing_tagged(cloud: LifecycleCloud) -> None:
    # GIVEN a cluster with 3 static nodes and its scaling rules off
    for name in cloud.rule_names:
        cloud.events.disable_rule(Name=name)
    # WHEN LaunchCluster runs
    launched = launch(cloud)
    # THEN it succeeds with the static nodes running, scaling enabled and the status ACTIVE
    assert launched["status"] == "SUCCEEDED", launched
    running = cloud.tagged_instances()
    assert len(running) == 3 and {state for _, state in running} == {"running"}
    assert all(cloud.rules_enabled())
    assert cloud.status()["status"] == "ACTIVE"
    assert all(node.static for node in cloud.nodes.list_nodes())
    # AND the cluster store reads back when the state machine recorded it (not "ACTIVE since -")
    record = DynamoClusterStore(cloud.table).get_status()
    assert record is not None and record.status is ClusterStatus.ACTIVE
    assert launched["startDate"].timestamp() - 1 <= record.updated_at <= launched["stopDate"].timestamp() + 1
    states = cloud.states_entered(launched["executionArn"])
    assert states[:3] == ["Validate the cluster settings", "Record the cluster as launching", "Launch the static nodes"]
    # WHEN TeardownCluster runs
    destroyed = teardown(cloud)
    # THEN nothing tagged is left, scaling is off and the status DESTROYED
    assert destroyed["status"] == "SUCCEEDED", destroyed
    assert cloud.tagged_instances() == []
    assert not any(cloud.rules_enabled())
    assert cloud.status()["status"] == "DESTROYED"
    assert cloud.nodes.list_nodes() == []


def refuse(cloud: LifecycleCloud, *instance_types: str) -> None:
    """EC2 answers InsufficientInstanceCapacity for these types (every other call reaches moto)."""

    def no_capacity(params: dict[str, Any], **_: Any) -> None:
        if params.get("InstanceType") in instance_types:
            raise ClientError(
                {"Error": {"Code": "InsufficientInstanceCapacity", "Message": f"no {params['InstanceType']}"}},
                "RunInstances",
            )

    from functions import lifecycle_step

    _, ports, _ = lifecycle_step._dependencies()
    ports.fleet.client.meta.events.register("provide-client-params.ec2.RunInstances", no_capacity)  # type: ignore[attr-defined]


def test_static_nodes_fall_back_to_a_type_that_can_stand_in(cloud: LifecycleCloud) -> None:
    # GIVEN no m5.2xlarge capacity
    refuse(cloud, "m5.2xlarge")
    # WHEN LaunchCluster runs
    result = launch(cloud)
    # THEN the two m5.2xlarge static nodes are r5.2xlarge (at least as big), in the same step
    assert result["status"] == "SUCCEEDED", result
    types = sorted(node.instance_type for node in cloud.nodes.list_nodes())
    assert types.count("r5.2xlarge") == 2 and "m5.2xlarge" not in types


def test_a_capacity_error_during_launch_rolls_back_to_zero(cloud: LifecycleCloud) -> None:
    # GIVEN no capacity for any type that can hold an m5.2xlarge's work (the spot class still launches)
    refuse(cloud, "m5.2xlarge", "r5.2xlarge")
    # WHEN LaunchCluster runs
    result = launch(cloud)
    # THEN it fails with the cause, rolled back to zero instances, the status FAILED with that cause
    assert result["status"] == "FAILED"
    assert cloud.tagged_instances() == []
    status = cloud.status()
    assert status["status"] == "FAILED"
    assert "could not be launched" in status["reason"] and "InsufficientInstanceCapacity" in status["reason"]
    states = cloud.states_entered(result["executionArn"])
    assert "Roll back the launched nodes" in states and "Record the cluster as failed" in states
    history = cloud.sfn.get_execution_history(executionArn=result["executionArn"])["events"]
    failure = next(e["executionFailedEventDetails"] for e in history if "executionFailedEventDetails" in e)
    assert failure["error"] == "LaunchFailed"
    assert "StaticNodesLaunchError" in failure["cause"] and "InsufficientInstanceCapacity" in failure["cause"]


def test_launch_fails_when_agents_never_report_and_rolls_back(cloud: LifecycleCloud, monkeypatch: Any) -> None:
    from functions import lifecycle_step
    from shared.services import lifecycle

    # GIVEN agents that never report, and a deadline already in the past
    monkeypatch.setattr(lifecycle, "AGENT_DEADLINE_SECONDS", -1e6)
    monkeypatch.setattr(lifecycle, "LAUNCH_DEADLINE_SECONDS", 0.0)
    _, ports, _ = lifecycle_step._dependencies()
    original_put = ports.nodes.put_nodes

    def put_silently(nodes: Any) -> None:
        cloud.agents_silent.update(node.instance_id for node in nodes)  # before the fixture's agents see them
        original_put(nodes)

    monkeypatch.setattr(ports.nodes, "put_nodes", put_silently)
    result = launch(cloud)
    assert result["status"] == "FAILED"
    assert cloud.status()["status"] == "FAILED"
    assert "agents never reported" in cloud.status()["reason"]
    assert cloud.tagged_instances() == []


def test_teardown_waits_for_a_busy_node_then_leaves_nothing(cloud: LifecycleCloud) -> None:
    # GIVEN an active cluster whose first node runs a job
    assert launch(cloud)["status"] == "SUCCEEDED"
    busy = cloud.nodes.list_nodes()[0].instance_id
    free = Resources(cores=4, memory=2**30, disk=2**30)
    cloud.nodes.heartbeat(busy, free=free, running_jobs={"job-1": "receipt-1"}, now=time.time())

    def finish_later() -> None:
        time.sleep(2.5)
        cloud.nodes.heartbeat(busy, free=free, running_jobs={}, now=time.time())

    finisher = threading.Thread(target=finish_later)
    finisher.start()
    # WHEN the teardown runs, not forced
    result = teardown(cloud)
    finisher.join()
    # THEN it waited for the job, then left nothing
    assert result["status"] == "SUCCEEDED", result
    states = cloud.states_entered(result["executionArn"])
    assert states.count("Wait for running jobs to finish") >= 1
    assert cloud.tagged_instances() == []


def test_forced_teardown_does_not_wait_and_a_second_teardown_does_nothing(cloud: LifecycleCloud) -> None:
    assert launch(cloud)["status"] == "SUCCEEDED"
    busy = cloud.nodes.list_nodes()[0].instance_id
    free = Resources(cores=4, memory=2**30, disk=2**30)
    cloud.nodes.heartbeat(busy, free=free, running_jobs={"job-1": "receipt-1"}, now=time.time())
    # WHEN forced
    first = teardown(cloud, force=True)
    # THEN no waiting for jobs, and nothing left
    assert first["status"] == "SUCCEEDED", first
    assert "Check for running jobs" not in cloud.states_entered(first["executionArn"])
    assert cloud.tagged_instances() == []
    # WHEN run again
    second = teardown(cloud)
    # THEN it succeeds and terminates nothing
    assert second["status"] == "SUCCEEDED", second
    assert cloud.status()["status"] == "DESTROYED"
    output = json.loads(second["output"])
    assert output["inventory"]["instances"] == 0


def test_bad_teardown_input_fails_with_a_clear_cause(cloud: LifecycleCloud) -> None:
    result = cloud.run(cloud.teardown_arn, {"force": "yes"})
    assert result["status"] == "FAILED"
    assert "input 'force' must be true or false" in cloud.status()["reason"]


def test_an_expired_lease_runs_teardown_cluster_by_itself(cloud: LifecycleCloud) -> None:
    """Issue 15: the scaling round's guardrails start the real TeardownCluster when the lease runs out."""
    from shared.adapters.spend_ledger import DynamoSpendLedger, StepFunctionsTeardown
    from shared.domain.budget import Spend
    from shared.domain.scaling import offers_for
    from shared.domain.settings import ClusterSettings
    from shared.services import guardrails

    # GIVEN a launched cluster with a one-hour lease that started an hour and a minute ago
    assert launch(cloud)["status"] == "SUCCEEDED"
    settings = ClusterSettings(name="lifecycle", node_types="m5.2xlarge", lease=3600.0).validate()
    ledger = DynamoSpendLedger(cloud.table)
    now = time.time()
    started = Spend(at=now - 3660, started_at=now - 3660, busy_at=now - 3660)
    ledger.save(started, previous=Spend(), view=guardrails.GuardView(spent=0.0))
    teardown_port = StepFunctionsTeardown(
        cloud.teardown_arn, "us-east-1", client=cloud.sfn, options={"poll_seconds": 0, "job_poll_seconds": 1}
    )
    rails = guardrails.Guardrails(ledger=ledger, status=DynamoClusterStore(cloud.table), teardown=teardown_port)
    # WHEN two scaling rounds finish (the second before the teardown has turned the rules off)
    for _ in range(2):
        before = guardrails.before_round(rails, now)
        errors = guardrails.after_round(
            rails, settings, before, nodes=cloud.nodes.list_nodes(), offers=offers_for(settings), demand={}, now=now
        ).errors
        assert errors == []
    # THEN one TeardownCluster execution, named after the expiry, runs to the end: nothing left, scaling off
    (execution,) = cloud.sfn.list_executions(stateMachineArn=cloud.teardown_arn)["executions"]
    assert execution["name"].startswith("lease-")
    deadline = time.monotonic() + 90
    while cloud.sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the lease's teardown did not finish"
        time.sleep(0.05)
    described = cloud.sfn.describe_execution(executionArn=execution["executionArn"])
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["input"])["reason"] == "lease expired"
    assert cloud.tagged_instances() == [] and not any(cloud.rules_enabled())
    assert cloud.status()["status"] == "DESTROYED"

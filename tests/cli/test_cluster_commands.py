"""launch-cluster, destroy-cluster, status and list-clusters against moto, with the real state machines running."""

from __future__ import annotations

import io
import json
import re
import time
from typing import Any

import pytest

from shared.adapters import aws
from shared.cli import cluster_cmd
from shared.cli.main import build_parser
from shared.domain.cluster_state import Market, NodeRecord, NodeState
from tests.cdk.conftest import CLUSTER, REGION, synthesized  # noqa: F401 - the fixture
from tests.lifecycle.conftest import LifecycleCloud, cloud  # noqa: F401 - the fixture
from tests.lifecycle.test_lifecycle import refuse


def stack_template(outputs: dict[str, str]) -> str:
    """The smallest stack moto accepts, with the outputs a Shoal stack has."""
    return json.dumps(
        {
            "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "placeholder"}}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
    )


def deploy_stack(shoal: LifecycleCloud, name: str = CLUSTER) -> None:
    sqs = aws.client("sqs", REGION)
    outputs = {
        "ClusterName": name,
        "QueueUrl": sqs.get_queue_url(QueueName="shoal-lifecycle-jobs")["QueueUrl"],
        "DeadLetterQueueUrl": sqs.get_queue_url(QueueName="shoal-lifecycle-dlq")["QueueUrl"],
        "TableName": shoal.table.name,
        "LaunchTemplateId": "lt-0123",
        "LaunchClusterStateMachineArn": shoal.launch_arn,
        "TeardownClusterStateMachineArn": shoal.teardown_arn,
        "DashboardUrl": "https://example.com/dashboard",
    }
    aws.client("cloudformation", REGION).create_stack(StackName=f"shoal-{name}", TemplateBody=stack_template(outputs))


def deployed_states(shoal: LifecycleCloud) -> list[str]:
    """The distinct states the newest launch entered, in order."""
    newest = shoal.sfn.list_executions(stateMachineArn=shoal.launch_arn)["executions"][0]["executionArn"]
    return list(dict.fromkeys(shoal.states_entered(newest)))


@pytest.fixture
def deployed(cloud: LifecycleCloud) -> LifecycleCloud:  # noqa: F811
    deploy_stack(cloud)
    return cloud


def shoal(*argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    code = args.run(args, out, err)
    return code, out.getvalue(), err.getvalue()


FAST = ("--region", REGION, "--poll", "0", "--check-every", "0.05")


def test_launch_cluster_shows_progress_and_exits_0(deployed: LifecycleCloud) -> None:
    # GIVEN a deployed stack
    # WHEN launch-cluster runs
    code, out, err = shoal("launch-cluster", CLUSTER, *FAST)
    # THEN each state is shown as it is entered, and the run succeeded
    assert code == 0, err
    assert f"cluster {CLUSTER} is up" in out
    assert deployed.status()["status"] == "ACTIVE"
    states = [line[2:] for line in out.splitlines() if line.startswith("→ ")]
    assert len(states) >= 3 and states == deployed_states(deployed)
    assert len(states) == len(set(states)), "a state entered again is reported once"


def test_launch_failure_exits_1_with_the_cause_on_one_line(deployed: LifecycleCloud) -> None:
    # GIVEN no capacity for the static nodes' types
    refuse(deployed, "m5.2xlarge", "r5.2xlarge")
    # WHEN launch-cluster runs
    code, _, err = shoal("launch-cluster", CLUSTER, *FAST)
    # THEN exit 1, the cause on one line of stderr
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("shoal launch-cluster: failed: LaunchFailed: StaticNodesLaunchError")
    assert "InsufficientInstanceCapacity" in err


def test_a_launch_still_running_at_the_timeout_exits_3_with_its_arn(deployed: LifecycleCloud) -> None:
    # WHEN launch-cluster waits no time at all
    code, _, err = shoal("launch-cluster", CLUSTER, "--region", REGION, "--poll", "0", "--timeout", "0")
    # THEN exit 3, and the execution's ARN to follow it
    assert code == 3
    assert "arn:aws:states:" in err and "execution goes on" in err
    # AND it does go on (to its end, so the test leaves nothing running)
    arn = err.split()[-1]
    while deployed.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        time.sleep(0.05)
    assert deployed.sfn.describe_execution(executionArn=arn)["status"] == "SUCCEEDED"


def test_destroy_cluster_forced_after_launch_then_status_and_list(deployed: LifecycleCloud) -> None:
    # GIVEN a launched cluster
    assert shoal("launch-cluster", CLUSTER, *FAST)[0] == 0
    # WHEN status --json runs
    code, out, _ = shoal("status", CLUSTER, "--region", REGION, "--json")
    # THEN it shows the status, nodes by type/market/state, queue, decisions and executions
    assert code == 0
    report = json.loads(out)
    assert set(report) >= {"cluster", "status", "nodes", "queue", "decisions", "executions"}
    assert report["status"]["status"] == "ACTIVE"
    # (when the LaunchCluster state machine recorded it: what it writes is what the store reads)
    assert abs(report["status"]["updated_at"] - time.time()) < 600
    assert sum(g["count"] for g in report["nodes"]) == 3
    assert {g["state"] for g in report["nodes"]} == {"ACTIVE"}
    assert report["queue"] == {"visible": 0, "in_flight": 0}
    assert [(e["machine"], e["status"]) for e in report["executions"]] == [("LaunchCluster", "SUCCEEDED")]
    assert report["executions"][0]["name"].startswith("launch-")
    # WHEN destroy-cluster --force runs
    code, out, err = shoal("destroy-cluster", CLUSTER, "--force", *FAST)
    # THEN it shows progress, exits 0 and nothing tagged is left
    assert code == 0, err
    assert any(line.startswith("→ ") for line in out.splitlines())
    assert deployed.tagged_instances() == []
    # AND the table view of status names the DESTROYED state and both executions
    code, out, _ = shoal("status", CLUSTER, "--region", REGION)
    assert code == 0
    assert "DESTROYED" in out and "TeardownCluster" in out and "LaunchCluster" in out
    (headline,) = [line for line in out.splitlines() if line.startswith(f"cluster {CLUSTER} ")]
    assert re.search(r"DESTROYED since \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", headline), headline
    # AND list-clusters shows the cluster
    code, out, _ = shoal("list-clusters", "--region", REGION, "--json")
    assert [c["name"] for c in json.loads(out)] == [CLUSTER]


def test_status_shows_decisions_with_their_reasons(deployed: LifecycleCloud) -> None:
    # GIVEN queued jobs, a scaling round the real evaluate_scaling function ran for them (it records its
    # decision), and one node
    from functions import evaluate_scaling
    from shared.adapters.events import EventBridgeDemandEvents
    from shared.adapters.job_queue import SqsJobQueue
    from shared.adapters.job_store import DynamoJobStore
    from shared.domain.jobs import Job
    from shared.services.submit import submit_jobs
    from tests.functions.harness import FakeContext, load_event, shape

    queue_url = aws.client("sqs", REGION).get_queue_url(QueueName="shoal-lifecycle-jobs")["QueueUrl"]
    submit_jobs(
        [Job(id=f"job-{n}", shape=shape(4, 16, 1800), command="true") for n in range(8)],
        store=DynamoJobStore(deployed.table),
        queue=SqsJobQueue(queue_url, region=REGION),
        events=EventBridgeDemandEvents(region=REGION),
        cluster=CLUSTER,
        now=time.time(),
    )
    evaluate_scaling.runtime.cache_clear()  # warm up on this cloud's environment
    try:
        assert evaluate_scaling.lambda_handler(load_event("scheduled_event"), FakeContext())["ran"]
        (entry,) = evaluate_scaling.runtime().plane.decisions.recent(5)
    finally:
        evaluate_scaling.runtime.cache_clear()
    reasons = entry["decision"]["reasons"]  # type: ignore[index]
    assert isinstance(reasons, list) and reasons
    deployed.agents_silent.add("i-1")  # else the fixture's agent thread may heartbeat it ACTIVE before status reads it
    deployed.nodes.put_node(
        NodeRecord(instance_id="i-1", offer_key="m5.2xlarge", instance_type="m5.2xlarge",
                   market=Market.SPOT, state=NodeState.PENDING)
    )  # fmt: skip
    # WHEN status runs
    code, out, _ = shoal("status", CLUSTER, "--region", REGION)
    # THEN the decision's reasons and the node group are shown
    assert code == 0
    assert "; ".join(reasons) in out and "(no reasons recorded)" not in out
    assert "m5.2xlarge" in out and "spot" in out and "PENDING" in out
    assert "never launched" in out


def test_unknown_cluster_is_named_with_a_hint(deployed: LifecycleCloud) -> None:
    for verb in ("status", "destroy-cluster"):
        code, _, err = shoal(verb, "nope", "--region", REGION)
        assert code == 1
        assert err == f"shoal {verb}: no cluster 'nope' in {REGION}; `shoal list-clusters` shows the deployed ones\n"


def test_list_clusters_ignores_other_stacks(deployed: LifecycleCloud) -> None:
    # GIVEN a non-Shoal stack and a shoal- stack without the outputs
    cfn = aws.client("cloudformation", REGION)
    cfn.create_stack(StackName="other", TemplateBody=stack_template({"ClusterName": "x"}))
    cfn.create_stack(StackName="shoal-half", TemplateBody=stack_template({"Foo": "bar"}))
    # WHEN list-clusters runs
    code, out, _ = shoal("list-clusters", "--region", REGION)
    # THEN only the real cluster is listed
    assert code == 0
    assert out.split()[0] == CLUSTER and len(out.strip().splitlines()) == 1


# --- launch-cluster of a cluster whose stack is not deployed ----------------------------------------


@pytest.fixture
def empty_region(monkeypatch: pytest.MonkeyPatch) -> Any:
    from moto import mock_aws

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        yield


def test_launch_of_an_undeployed_cluster_prints_the_cdk_deploy_command(empty_region: Any) -> None:
    # WHEN launch-cluster names a cluster with no stack
    code, out, _ = shoal(
        "launch-cluster", "genomics", "--nodeTypes", "m5.large,c5.xlarge", "--workers", "2,0-5",
        "--nodeStorage", "80", "--maxNodeStorage", "500", "--zone", "us-west-2b", "--tag", "team=bio",
        "--region", "us-west-2",
    )  # fmt: skip
    # THEN it exits 1 and prints the exact cdk deploy with the settings as -c context
    assert code == 1
    command = next(line.strip() for line in out.splitlines() if line.strip().startswith("cdk deploy"))
    assert command == (
        "cdk deploy shoal-genomics --require-approval never -c cluster=genomics -c region=us-west-2 "
        "-c nodeTypes=m5.large,c5.xlarge -c maxNodeStorage=500 -c nodeStorage=80 -c zone=us-west-2b -c staticNodes=2,0 "
        "-c minNodes=0,0 -c maxNodes=2,5 --tags team=bio"
    )


def test_launch_with_deploy_runs_cdk_from_the_repo_root(empty_region: Any) -> None:
    # GIVEN a cdk that "fails"
    calls: list[tuple[list[str], Any, dict[str, str]]] = []

    def runner(argv: list[str], cwd: Any, env: dict[str, str]) -> int:
        calls.append((argv, cwd, env))
        return 1

    args = build_parser().parse_args(["launch-cluster", "genomics", "--nodeTypes", "m5.large", "--deploy"])
    out, err = io.StringIO(), io.StringIO()
    # WHEN launch-cluster --deploy runs
    code = cluster_cmd.run_launch(args, out, err, deploy_runner=runner)
    # THEN cdk ran from the repo root with node_modules/.bin first on PATH, and its failure is exit 1
    assert code == 1
    argv, cwd, env = calls[0]
    assert argv[:3] == ["cdk", "deploy", "shoal-genomics"]
    assert cwd == cluster_cmd.REPO_ROOT
    assert env["PATH"].startswith(str(cluster_cmd.REPO_ROOT / "node_modules" / ".bin"))
    assert "cdk deploy exited with status 1" in err.getvalue()


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--nodeTypes", "m5.large", "--workers", "2-x"], "--workers"),
        (["--nodeTypes", "m5.large", "--workers", "5-2"], "--workers"),
        (["--nodeTypes", "m5.large,c5.large", "--workers", "2"], "--workers"),
        (["--nodeTypes", "m5.huge"], "--nodeTypes"),
        (["--nodeTypes", "m5.large", "--nodeStorage", "lots"], "--nodeStorage"),
        (["--nodeTypes", "m5.large", "--maxNodeStorage", "17TiB"], "--maxNodeStorage"),
        (["--nodeTypes", "m5.large", "--maxNodeStorage", "lots"], "--maxNodeStorage"),
        (["--nodeTypes", "m5.large", "--betaInertia", "2"], "--betaInertia"),
        (["--nodeTypes", "m5.large", "--tag", "novalue"], "--tag"),
        (["--nodeTypes", "m5.large", "--timeout", "soon"], "--timeout"),
        ([], "--nodeTypes"),
    ],
)
def test_bad_launch_input_exits_2_naming_the_flag(empty_region: Any, argv: list[str], flag: str) -> None:
    code, out, err = shoal("launch-cluster", "genomics", *argv)
    assert code == 2, out
    assert err.startswith("shoal launch-cluster: ") and flag in err and err.count("\n") == 1


def test_workers_syntax() -> None:
    # GIVEN Toil's --workers: a plain number is static nodes, a range is autoscaled min-max
    workers = cluster_cmd.parse_workers("2,0-5,3-3")
    assert workers.static_nodes == (2, 0, 0)
    assert workers.min_nodes == (0, 0, 3)
    assert workers.max_nodes == (2, 5, 3)

"""evaluate_scaling through its real handler on moto: the acceptance scenarios of the control plane."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from functions import evaluate_scaling
from shared.adapters.decision_log import DynamoDecisionLog
from shared.domain.cluster_state import DemandCount, JobStatus, NodeState
from shared.domain.decision import Snapshot
from shared.domain.policy import ScalerState
from shared.domain.scaling import decide, offers_for
from shared.domain.settings import ClusterSettings
from shared.services import reconcile
from tests.functions.harness import FOUR_SHAPES, REGION, Cluster, load_event, shape, sqs_batch


def planned(settings: ClusterSettings, demand: dict[Any, int]) -> dict[str, int]:
    """The fleet the engine plans for ``demand`` from zero (the expectation, computed independently of AWS)."""
    snapshot = Snapshot(demand={s: DemandCount(queued=n) for s, n in demand.items()}, nodes=(), instances=())
    decision = decide(snapshot, settings, offers_for(settings), ScalerState(), set(), now=0.0)
    return {k: v for k, v in decision.wanted.items() if v}


def run_instances_calls(cluster: Cluster) -> int:
    return evaluate_scaling.runtime().plane.fleet.calls.by_operation["RunInstances"]  # type: ignore[attr-defined]


def test_from_zero_one_round_launches_the_plan_and_a_second_launches_nothing(cluster: Cluster) -> None:
    # GIVEN 500 queued jobs of 4 shapes and no nodes
    cluster.submit(FOUR_SHAPES)
    want = planned(cluster.settings, FOUR_SHAPES)
    # WHEN the schedule fires
    first = cluster.scale()
    # THEN the planned fleet is on EC2, one RunInstances per planned offer, every node recorded PENDING
    assert first["ran"] and first["launched"] == sum(want.values())
    assert cluster.fleet_by_offer() == want
    assert run_instances_calls(cluster) == len(want)
    assert set(cluster.node_states().values()) == {NodeState.PENDING}
    assert first["wanted"] == want and first["queued_jobs"] == 500
    # WHEN the schedule fires again (a new event)
    cluster.clock.advance(60)
    second = cluster.scale()
    # THEN nothing is launched
    assert second["ran"] and second["launched"] == 0
    assert cluster.fleet_by_offer() == want
    assert run_instances_calls(cluster) == len(want)


def test_the_same_event_delivered_twice_runs_one_round(cluster: Cluster) -> None:
    cluster.submit({shape(4, 16, 1800): 40})
    event = load_event("demand_changed")
    first = cluster.invoke(evaluate_scaling, event)
    cluster.submit({shape(4, 16, 1800): 40}, prefix="more")  # demand changes, but the redelivery is a duplicate
    again = cluster.invoke(evaluate_scaling, event)
    assert again == first
    assert len(evaluate_scaling.runtime().plane.decisions.recent(10)) == 1


@pytest.mark.parametrize("trigger", ["scheduled_event", "alarm_state_change", "demand_changed"])
def test_every_trigger_runs_a_round(cluster: Cluster, trigger: str) -> None:
    cluster.submit({shape(4, 16, 1800): 16})
    result = cluster.scale(trigger)
    assert result["ran"] and result["launched"] >= 1
    (entry,) = evaluate_scaling.runtime().plane.decisions.recent(5)
    assert entry["trigger"] == load_event(trigger)["detail-type"]
    assert entry["decision"]["actions"] and all(a["reason"] for a in entry["decision"]["actions"])  # type: ignore[index, union-attr]


def test_shoal_status_shows_the_reasons_the_round_recorded(cluster: Cluster) -> None:
    # GIVEN a deployed cluster whose real round decided to launch for queued jobs
    cluster.deploy_stack()
    cluster.submit({shape(4, 16, 1800): 16})
    assert cluster.scale()["launched"] >= 1
    # (the reasons, where the round wrote them: not a shape written by this test)
    (stored,) = DynamoDecisionLog(cluster.table).recent(5)
    reasons = stored["decision"]["reasons"]  # type: ignore[index]
    assert isinstance(reasons, list) and reasons
    # WHEN shoal status reads the cluster
    code, out, err = cluster.shoal("status", cluster.settings.name, "--region", REGION)
    # THEN the decision is shown with the round's reasons, not "(no reasons recorded)"
    assert code == 0, err
    decisions = out.split("recent decisions:\n", 1)[1].split("\n\n", 1)[0]
    assert "; ".join(reasons) in decisions
    assert "(no reasons recorded)" not in out


def test_demand_changed_for_another_cluster_is_ignored(cluster: Cluster) -> None:
    cluster.submit({shape(4, 16, 1800): 16})
    result = cluster.scale("demand_changed", detail={"cluster": "other", "queued": 16, "at": 0})
    assert result["status"] == "ignored" and cluster.fleet_by_offer() == {}


def test_ten_concurrent_rounds_launch_exactly_the_plan(cluster: Cluster, atomic_dynamodb: None) -> None:
    # GIVEN 500 queued jobs, and the runtime warmed up (as concurrent Lambdas each have their own)
    cluster.submit(FOUR_SHAPES)
    want = planned(cluster.settings, FOUR_SHAPES)
    evaluate_scaling.runtime()
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(10)

    def trigger() -> None:
        try:
            barrier.wait()
            results.append(cluster.scale())
        except BaseException as error:  # surfaced below
            errors.append(error)

    # WHEN ten triggers fire at once
    threads = [threading.Thread(target=trigger) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN exactly the planned fleet: the lease let one round act, the others skipped or found nothing to do
    assert not errors
    assert cluster.fleet_by_offer() == want
    assert sum(int(r.get("launched", 0)) for r in results) == sum(want.values())
    assert any(r.get("skipped") for r in results) or sum(1 for r in results if r.get("launched")) == 1


def test_demand_falls_busy_stay_idle_drain_then_terminate_or_stop_static_stay(
    make_cluster: Callable[..., Cluster],
) -> None:
    # GIVEN a fleet for 200 jobs on m5.2xlarge (minNodes 1, maxNodes 20), a warm pool of 2, a static node
    cluster = make_cluster(min_nodes=(0, 0, 1, 0), max_nodes=(0, 0, 20, 0), warm_pool_size=2)
    static = cluster.add_static_node("m5.2xlarge", "m5.2xlarge")
    cluster.submit({shape(4, 8, 3600): 40})
    cluster.scale()
    nodes = [n for n in cluster.nodes.list_nodes() if not n.static]
    assert len(nodes) == 19  # 20 wanted (2 jobs of 4 cores per 8-core node), the static node is one of them
    for node in nodes:
        cluster.heartbeat(node.instance_id)
    busy = [n.instance_id for n in nodes[:3]]
    for instance_id in busy:
        cluster.run_jobs_on(instance_id, 2)
    # WHEN every other job completes and a round runs
    cluster.clock.advance(60)
    cluster.finish_queued()
    assert sum(c.running for c in cluster.demand().values()) == 6
    drained = cluster.scale()
    # THEN busy nodes and the static node keep running; idle ones drain (min 1 still holds)
    states = cluster.node_states()
    assert all(states[i] is NodeState.ACTIVE for i in busy) and states[static] is NodeState.ACTIVE
    assert drained["drained"] == 19 - 3
    assert cluster.fleet_by_offer() == {"m5.2xlarge": 20}  # draining nodes still run until they are idle
    # WHEN the drained agents report idle and the next round runs
    cluster.clock.advance(30)
    for node in nodes[3:]:
        cluster.heartbeat(node.instance_id)
    cluster.clock.advance(30)
    retired = cluster.scale()
    # THEN two join the warm pool (stopped), the rest are terminated; busy and static nodes still run
    assert retired["stopped"] == 2 and retired["terminated"] == 19 - 3 - 2
    running = {i["InstanceId"] for i in cluster.instances("pending", "running")}
    assert running == {*busy, static}
    assert len(cluster.instances("stopping", "stopped")) == 2
    assert sorted(cluster.node_states().values()) == sorted([NodeState.ACTIVE] * 4 + [NodeState.STOPPED] * 2)
    # AND the round's hourly cost is the four running nodes' and the two stopped ones' root volumes (EBS bills them)
    volume = 50 * 0.08 / 730
    assert retired["hourly_cost"] == pytest.approx(4 * (0.384 + volume) + 2 * volume, abs=1e-4)
    # WHEN demand comes back  THEN the warm pool starts before anything is launched
    cluster.clock.advance(60)
    cluster.submit({shape(4, 8, 3600): 8}, prefix="again")
    back = cluster.scale()
    assert back["started"] == 2 and back["launched"] == 4 - 2 - 1  # 4 more nodes wanted; 1 already live


def test_insufficient_capacity_falls_back_in_the_same_round_and_is_skipped_until_expiry(cluster: Cluster) -> None:
    # GIVEN on-demand jobs whose cheapest node is m5.2xlarge, and EC2 out of m5.2xlarge
    cluster.submit({shape(8, 28, 3600): 6})
    assert planned(cluster.settings, {shape(8, 28, 3600): 6}) == {"m5.2xlarge": 6}
    fleet = evaluate_scaling.runtime().plane.fleet
    refused: list[str] = []

    def no_m5(params: dict[str, Any], **_: Any) -> Any:
        if params["body"].get("InstanceType") == "m5.2xlarge":
            refused.append("m5.2xlarge")
            return _FakeHttp(500), {
                "Error": {
                    "Code": "InsufficientInstanceCapacity",
                    "Message": "We currently do not have sufficient "
                    "m5.2xlarge capacity in the Availability Zone you requested.",
                },
                "ResponseMetadata": {"HTTPStatusCode": 500},
            }
        return None

    fleet.client.meta.events.register("before-call.ec2.RunInstances", no_m5)  # type: ignore[attr-defined]
    # WHEN a round runs
    result = cluster.scale()
    # THEN the same round falls back to the next-cheapest type that fits, and says why
    assert refused == ["m5.2xlarge"]
    assert result["launch_failures"] == ["m5.2xlarge@*: InsufficientInstanceCapacity"]
    fallback = cluster.fleet_by_offer()
    assert "m5.2xlarge" not in fallback and sum(fallback.values()) >= 3
    entry = evaluate_scaling.runtime().plane.decisions.recent(1)[0]
    fallback_pass = entry["later_passes"][0]  # type: ignore[index]
    assert any("capacity-failure cache" in r for r in fallback_pass["reasons"])
    # WHEN more demand arrives before the offering's expiry  THEN m5 is not tried again
    cluster.clock.advance(cluster.settings.capacity_failure_ttl / 2)
    cluster.submit({shape(8, 28, 3600): 6}, prefix="more")
    cluster.scale()
    assert refused == ["m5.2xlarge"]
    # WHEN the expiry has passed (and capacity is back)  THEN m5 is tried again and preferred
    fleet.client.meta.events.unregister("before-call.ec2.RunInstances", no_m5)  # type: ignore[attr-defined]
    cluster.clock.advance(cluster.settings.capacity_failure_ttl)
    cluster.submit({shape(8, 28, 3600): 6}, prefix="even-more")
    cluster.scale()
    assert cluster.fleet_by_offer().get("m5.2xlarge", 0) >= 1


def test_insufficient_capacity_on_one_member_of_a_spot_class_uses_the_other(cluster: Cluster) -> None:
    cluster.submit({shape(16, 28, 3600, preemptible=True): 3})
    fleet = evaluate_scaling.runtime().plane.fleet

    def no_c5(params: dict[str, Any], **_: Any) -> Any:
        if params["body"].get("InstanceType") == "c5.4xlarge":
            return _FakeHttp(500), {
                "Error": {"Code": "InsufficientInstanceCapacity", "Message": "none"},
                "ResponseMetadata": {"HTTPStatusCode": 500},
            }
        return None

    fleet.client.meta.events.register("before-call.ec2.RunInstances", no_c5)  # type: ignore[attr-defined]
    result = cluster.scale()
    assert result["launched"] == 3
    types = {i["InstanceType"] for i in cluster.instances()}
    assert types == {"c5a.4xlarge"} and all(i.get("InstanceLifecycle") == "spot" for i in cluster.instances())


def test_metrics_and_logs(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], logs: Callable[[], list[dict[str, Any]]]
) -> None:
    cluster.submit(FOUR_SHAPES)
    capsys.readouterr()
    cluster.scale()
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    names = {m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"QueuedJobs", "Nodes", "HourlyCost", "DecisionLatency", "ScalingActions", "LaunchFailures"} <= names
    nodes = [doc for doc in emf if "Nodes" in doc]
    assert nodes and all({"cluster", "node_type", "market", "state"} <= set(doc) for doc in nodes)
    assert sum(sum(doc["Nodes"]) for doc in nodes) == sum(planned(cluster.settings, FOUR_SHAPES).values())
    (done,) = [line for line in logs() if line["message"] == "round done"]
    assert done["correlation_id"] == done["round"]["round_id"] and done["function_name"] == "evaluate_scaling"


def test_malformed_events_are_logged_and_rejected(cluster: Cluster, logs: Callable[[], list[dict[str, Any]]]) -> None:
    bad = load_event("alarm_state_change", detail={"state": {"value": "MAYBE"}})
    result = cluster.invoke(evaluate_scaling, bad)
    assert result["status"] == "rejected" and "state.value" in result["reason"]
    errors = [line for line in logs() if line["level"] == "ERROR"]
    assert errors and "state.value" in errors[0]["reason"]
    assert cluster.invoke(evaluate_scaling, {"hello": "world"})["status"] == "rejected"


def test_a_batch_with_a_malformed_message_fails_only_that_message(cluster: Cluster) -> None:
    cluster.submit({shape(4, 16, 1800): 16})
    good = json.dumps(load_event("scheduled_event"))
    response = cluster.invoke(evaluate_scaling, sqs_batch("{not json", good, json.dumps({"detail-type": "Nope"})))
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-0"}, {"itemIdentifier": "msg-2"}]}
    assert cluster.fleet_by_offer()


class _FakeHttp:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}


def test_a_node_whose_agent_went_silent_gives_its_jobs_back_and_is_replaced(cluster: Cluster) -> None:
    from shared.domain.scaling import AGENT_SILENCE_LIMIT

    # GIVEN a node running 3 jobs whose agent then stops reporting (the instance itself still runs)
    job = shape(4, 8, 3600, preemptible=True)
    cluster.submit({job: 3})
    cluster.scale()
    (node,) = cluster.nodes.list_nodes()
    running = cluster.run_jobs_on(node.instance_id, 3)
    # WHEN the schedule wakes the scaler after the silence limit
    cluster.clock.advance(AGENT_SILENCE_LIMIT + 60)
    result = cluster.scale()
    # THEN the jobs are queued again (store and queue), the silent node is terminated and a new one launched
    assert result["ran"] and result["requeued_jobs"] == 3
    for job_id in running:
        record = cluster.jobs.get_job(job_id)
        assert record is not None and record.status is JobStatus.QUEUED
    redelivered = cluster.queue.receive(max_messages=10, wait_seconds=0)
    assert sorted(json.loads(m.body)["job"]["id"] for m in redelivered) == sorted(running)
    assert node.instance_id not in {i["InstanceId"] for i in cluster.instances()}
    assert result["launched"] == 1


def test_a_node_an_overlapping_round_undrained_and_gave_a_job_is_not_terminated(
    make_cluster: Callable[..., Cluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two nodes for 4 queued jobs; the jobs go elsewhere, and both nodes drain and report idle
    cluster = make_cluster(min_nodes=(0, 0, 0, 0), max_nodes=(0, 0, 2, 0))
    cluster.submit({shape(4, 8, 3600): 4})
    cluster.scale()
    nodes = [n.instance_id for n in cluster.nodes.list_nodes()]
    for instance_id in nodes:
        cluster.heartbeat(instance_id)
    cluster.clock.advance(60)
    cluster.finish_queued()
    assert cluster.scale()["drained"] == 2
    for instance_id in nodes:
        cluster.heartbeat(instance_id)  # idle, knowing of the drain
    raced = nodes[0]

    # WHEN, after the next round decided to terminate both and before it acts, an overlapping round (its
    # lease ran out) undrains one node and its agent starts a new job there
    real_decide, overlapped = reconcile.decide, []

    def decide_then_overlap(*args: Any, **kwargs: Any) -> Any:
        decision = real_decide(*args, **kwargs)
        if not overlapped:
            overlapped.append(raced)
            assert cluster.nodes.mark_state(raced, NodeState.ACTIVE, cluster.clock.now)
            (late,) = cluster.submit({shape(4, 8, 3600): 1}, prefix="late")
            assert cluster.jobs.start_job(late, raced, cluster.clock.now) is not None
            cluster.heartbeat(raced, {late.id: "receipt-late"})
        return decision

    monkeypatch.setattr(reconcile, "decide", decide_then_overlap)
    cluster.clock.advance(60)
    result = cluster.scale()

    # THEN the node running the new job is left running (the round says why); the other one is terminated
    running = {i["InstanceId"] for i in cluster.instances("pending", "running")}
    assert running == {raced}
    assert result["terminated"] == 1
    assert overlapped
    assert any(raced in e and "left running" in e for e in result["errors"]), result["errors"]

"""Quota-aware planning, Spot Placement Score launch order and the preemption budget, as decision tables of
the pure domain (``decide`` with the new snapshot inputs, and the helpers it uses)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from shared.domain import placement, preemption
from shared.domain.admission import Verdict, admit
from shared.domain.cluster_state import DemandCount, JobRecord, JobStatus, Market, NodeRecord, NodeState
from shared.domain.decision import Instance, InstanceState, Launch, LaunchOption, Snapshot
from shared.domain.jobs import Job, Shape, parse_job
from shared.domain.policy import ScalerState
from shared.domain.quotas import QuotaUse, QuotaView, quota_class, quota_code, usage
from shared.domain.resources import Resources
from shared.domain.scaling import decide, offers_for
from shared.domain.settings import ClusterSettings

GiB = 2**30
NOW = 1_700_000_000.0
ON_DEMAND_STANDARD, SPOT_STANDARD = "L-1216C47A", "L-34B43A08"


def cluster(node_types: str = "m5.2xlarge", **overrides: object) -> ClusterSettings:
    values: dict[str, object] = {"name": "test", "node_types": node_types, "region": "us-west-2", "beta_inertia": 0.0}
    values.update(overrides)
    return ClusterSettings(**values).validate()


def shape(cores: float, *, wall: float = 3600, preemptible: bool = False) -> Shape:
    return Shape(resources=Resources(cores=cores, memory=4 * GiB, disk=GiB), wall_time=wall, preemptible=preemptible)


def wanted(settings: ClusterSettings, snapshot: Snapshot) -> tuple[dict[str, int], tuple[str, ...], list[Launch]]:
    decision = decide(snapshot, settings, offers_for(settings), ScalerState(), (), now=NOW)
    launches = [a for a in decision.actions if isinstance(a, Launch)]
    return {k: v for k, v in decision.wanted.items() if v}, decision.reasons, launches


def node(instance_id: str, offer: str, market: Market = Market.ON_DEMAND) -> NodeRecord:
    return NodeRecord(
        instance_id=instance_id,
        offer_key=offer,
        instance_type=offer.split(":", maxsplit=1)[0],
        market=market,
        state=NodeState.ACTIVE,
        launched_at=NOW - 60,
        heartbeat_at=NOW,
    )


# ---- quotas -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instance_type", "cls", "on_demand", "spot"),
    [
        ("m5.2xlarge", "standard", "L-1216C47A", "L-34B43A08"),
        ("c5a.4xlarge", "standard", "L-1216C47A", "L-34B43A08"),
        ("r5.2xlarge", "standard", "L-1216C47A", "L-34B43A08"),
        ("t3.large", "standard", "L-1216C47A", "L-34B43A08"),
        ("g4dn.xlarge", "G and VT", "L-DB2E81BA", "L-3819A6DF"),
        ("p3.2xlarge", "P", "L-417A185B", "L-7212CCBC"),
        ("x1e.xlarge", None, None, None),  # a class not tracked: never capped
    ],
)
def test_each_instance_family_counts_against_its_documented_quota(
    instance_type: str, cls: str | None, on_demand: str | None, spot: str | None
) -> None:
    assert quota_class(instance_type) == cls
    assert quota_code(instance_type, Market.ON_DEMAND) == on_demand
    assert quota_code(instance_type, Market.SPOT) == spot


def test_the_plan_is_capped_at_what_the_quota_leaves_and_the_reason_names_it() -> None:
    # GIVEN 42 one-hour 8-core jobs (one m5.2xlarge each) and a 640-vCPU quota of which 544 run elsewhere
    settings = cluster()
    demand = {shape(8): DemandCount(queued=42)}
    view = QuotaView(limits={ON_DEMAND_STANDARD: 640}, used_elsewhere={ON_DEMAND_STANDARD: 544})
    # WHEN decided without and with the quota
    free, _, _ = wanted(settings, Snapshot(demand=demand, nodes=(), instances=()))
    capped, reasons, launches = wanted(settings, Snapshot(demand=demand, nodes=(), instances=(), quotas=view))
    # THEN 42 nodes become the 12 that fit 96 vCPUs, and the reason names the quota and who waits
    assert free == {"m5.2xlarge": 42}
    assert capped == {"m5.2xlarge": 12} and sum(a.count for a in launches) == 12
    assert (
        "on-demand standard vCPU quota of 640 (544 vCPUs run outside the cluster) leaves room for 12 m5.2xlarge; "
        "30 jobs wait" in reasons
    )


def test_a_full_spot_quota_moves_preemptible_jobs_to_on_demand_instead_of_waiting() -> None:
    settings = cluster("m5.2xlarge:0.3,m5.2xlarge")
    demand = {shape(8, preemptible=True): DemandCount(queued=10)}
    view = QuotaView(limits={SPOT_STANDARD: 32})  # 4 spot nodes
    result, reasons, _ = wanted(settings, Snapshot(demand=demand, nodes=(), instances=(), quotas=view))
    assert result == {"m5.2xlarge:spot": 4, "m5.2xlarge": 6}
    assert any(
        r.startswith("spot standard vCPU quota of 32 leaves room for 4 m5.2xlarge:spot; 0 jobs wait") for r in reasons
    )


def test_unknown_quotas_cap_nothing_and_a_quota_with_room_is_not_mentioned() -> None:
    settings = cluster()
    demand = {shape(8): DemandCount(queued=5)}
    for view in (None, QuotaView(), QuotaView(limits={ON_DEMAND_STANDARD: 1000})):
        result, reasons, _ = wanted(settings, Snapshot(demand=demand, nodes=(), instances=(), quotas=view))
        assert result == {"m5.2xlarge": 5}
        assert not any("quota" in r for r in reasons)


def test_live_nodes_beyond_a_lowered_quota_are_kept_not_drained() -> None:
    # GIVEN 6 live m5.2xlarge and a quota lowered to 16 vCPUs (room for 2)
    settings = cluster()
    nodes = tuple(node(f"i-{n}", "m5.2xlarge") for n in range(6))
    instances = tuple(
        Instance(instance_id=n.instance_id, instance_type="m5.2xlarge", state=InstanceState.RUNNING,
                 market=Market.ON_DEMAND, offer_key="m5.2xlarge", launched_at=NOW - 60)
        for n in nodes
    )  # fmt: skip
    view = QuotaView(limits={ON_DEMAND_STANDARD: 16})
    for queued, want, said in ((4, 4, False), (8, 6, True)):
        snapshot = Snapshot(
            demand={shape(8): DemandCount(queued=queued)}, nodes=nodes, instances=instances, quotas=view
        )
        result, reasons, launches = wanted(settings, snapshot)
        # THEN demand decides below the live nodes, the quota stops growth above them, and nothing launches
        assert result == {"m5.2xlarge": want} and not launches
        assert any("leaves room for 6 m5.2xlarge; 2 jobs wait" in r for r in reasons) is said


def test_a_class_without_a_known_quota_takes_the_work_a_capped_class_cannot() -> None:
    settings = cluster("m5.2xlarge,g4dn.2xlarge")
    demand = {shape(8): DemandCount(queued=6)}
    view = QuotaView(limits={ON_DEMAND_STANDARD: 16})
    result, reasons, _ = wanted(settings, Snapshot(demand=demand, nodes=(), instances=(), quotas=view))
    assert result["m5.2xlarge"] == 2 and result.get("g4dn.2xlarge", 0) >= 1
    assert any("leaves room for 2 m5.2xlarge" in r for r in reasons)


# ---- Spot Placement Score -----------------------------------------------------------------------------


def test_spot_launch_options_go_to_the_best_scored_zone_first_then_price() -> None:
    options = {
        "a/b:spot": tuple(
            LaunchOption(instance_type=t, zone=z) for t in ("a", "b") for z in ("us-west-2a", "us-west-2b")
        ),
        "c": (LaunchOption(instance_type="c", zone="us-west-2a"),),
    }
    reasons: list[str] = []
    ranked = placement.rank(options, {"a/b:spot": {"us-west-2a": 3, "us-west-2b": 9}}, reasons)
    assert [(o.instance_type, o.zone) for o in ranked["a/b:spot"]] == [
        ("a", "us-west-2b"),
        ("b", "us-west-2b"),
        ("a", "us-west-2a"),
        ("b", "us-west-2a"),
    ]
    assert ranked["c"] == options["c"]
    assert reasons == ["a/b:spot: launch order by Spot Placement Score (us-west-2b 9, us-west-2a 3), then price"]
    # No scores: the price order stays, and nothing is said
    quiet: list[str] = []
    assert placement.rank(options, {}, quiet) == options and not quiet


def test_decide_launches_spot_in_the_scored_zone_order() -> None:
    settings = cluster("c5.4xlarge/c5a.4xlarge:0.42")
    snapshot = Snapshot(
        demand={shape(16, preemptible=True): DemandCount(queued=1)},
        nodes=(),
        instances=(),
        zones=("us-west-2a", "us-west-2b"),
        placement_scores={"c5.4xlarge/c5a.4xlarge:spot": {"us-west-2b": 8, "us-west-2a": 2}},
    )
    _, reasons, launches = wanted(settings, snapshot)
    assert [o.zone for o in launches[0].options][:2] == ["us-west-2b", "us-west-2b"]
    assert any("Spot Placement Score" in r for r in reasons)


# ---- the preemption budget ----------------------------------------------------------------------------


def job(max_preemptions: int | None = None, *, preemptible: bool = True) -> Job:
    fields: dict[str, object] = {"id": "j1", "cores": 8, "memory": "4GiB", "disk": "1GiB", "wall_time": 3600}
    fields["preemptible"] = preemptible
    if max_preemptions is not None:
        fields["max_preemptions"] = max_preemptions
    return parse_job(fields)


@pytest.mark.parametrize(
    ("max_preemptions", "preemptions", "default", "on_demand"),
    [
        (None, 0, 2, False),
        (None, 1, 2, False),
        (None, 2, 2, True),  # spot for two reclaims, then on-demand
        (5, 2, 2, False),  # the job's own budget wins over the cluster's
        (1, 1, 2, True),  # one reclaim allowed, then on-demand
        (None, 3, 4, False),
    ],
)
def test_the_budget_is_the_jobs_or_the_clusters(
    max_preemptions: int | None, preemptions: int, default: int, on_demand: bool
) -> None:
    the_job = job(max_preemptions)
    assert preemption.on_demand_only(the_job, preemptions, default) is on_demand


def test_an_on_demand_job_is_never_demoted() -> None:
    assert not preemption.on_demand_only(job(preemptible=False), 9, 2)


def test_jobs_past_their_budget_are_planned_on_on_demand_nodes_with_a_reason() -> None:
    settings = cluster("m5.2xlarge:0.3,m5.2xlarge")
    spot_shape = shape(8, preemptible=True)
    the_job = job()
    records = [
        JobRecord(job=the_job, status=JobStatus.QUEUED, preemptions=2),
        JobRecord(job=the_job, status=JobStatus.QUEUED, preemptions=1),
        JobRecord(job=the_job, status=JobStatus.SUCCEEDED, preemptions=5),
    ]
    past = preemption.past_budget(records, settings.max_preemptions)
    assert past == {the_job.shape: DemandCount(queued=1)}
    assert the_job.shape == spot_shape
    snapshot = Snapshot(
        demand={spot_shape: DemandCount(queued=3)}, nodes=(), instances=(), on_demand_only=MappingProxyType(past)
    )
    result, reasons, _ = wanted(settings, snapshot)
    assert result == {"m5.2xlarge:spot": 2, "m5.2xlarge": 1}
    assert any("1 preemptible jobs have used their preemption budget" in r for r in reasons)


def test_a_spot_node_declines_a_job_past_its_budget_and_an_on_demand_node_takes_it() -> None:
    the_job = job()
    capacity = Resources(cores=8, memory=30 * GiB, disk=40 * GiB)
    past = JobRecord(job=the_job, status=JobStatus.QUEUED, preemptions=2)
    within = JobRecord(job=the_job, status=JobStatus.QUEUED, preemptions=1)
    flagged = JobRecord(job=the_job, status=JobStatus.QUEUED, preemptions=0, on_demand_only=True)
    cases = [(past, True, Verdict.DECLINE_NEVER), (past, False, Verdict.START), (within, True, Verdict.START)]
    cases.append((flagged, True, Verdict.DECLINE_NEVER))
    for record, spot, verdict in cases:
        result = admit(
            the_job,
            free=capacity,
            capacity=capacity,
            record=record,
            draining=False,
            node_id="i-1",
            spot_node=spot,
        )
        assert result.verdict is verdict, (record, spot)
    declined = admit(
        the_job, free=capacity, capacity=capacity, record=past, draining=False, node_id="i-1", spot_node=True
    )
    assert declined.reason == "job j1 was preempted 2 times (maxPreemptions 2): it runs only on on-demand nodes now"


@pytest.mark.parametrize(
    ("reason", "reclaim"),
    [
        ("spot interruption notice: terminate at 2026-11-30T00:00:00Z", True),
        ("spot interruption warning", True),
        ("rebalance recommendation", True),
        ("SIGTERM", False),
        ("the agent stopped as it started it", False),
    ],
)
def test_which_evacuations_are_reclaims(reason: str, reclaim: bool) -> None:
    assert preemption.is_reclaim(reason) is reclaim


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "field 'max_preemptions' must be a whole number from 1 to 100"),
        (1.5, "field 'max_preemptions' must be a whole number from 1 to 100"),
        (True, "field 'max_preemptions' must be a whole number from 1 to 100"),
    ],
)
def test_a_bad_max_preemptions_is_refused_naming_the_field(value: object, message: str) -> None:
    with pytest.raises(ValueError, match="max_preemptions") as caught:
        parse_job({"id": "x", "cores": 1, "memory": 1, "disk": 1, "wall_time": 1, "max_preemptions": value})
    assert str(caught.value).startswith(message)


def test_max_preemptions_round_trips_through_the_job_format() -> None:
    the_job = job(4)
    assert parse_job(the_job.to_dict()) == the_job
    assert "max_preemptions" not in job().to_dict()


def test_usage_counts_each_running_node_against_its_market_and_class_quota() -> None:
    view = QuotaView(
        limits=MappingProxyType({ON_DEMAND_STANDARD: 64.0, SPOT_STANDARD: 32.0}),
        used_elsewhere=MappingProxyType({ON_DEMAND_STANDARD: 16.0}),
    )
    nodes = [("m5.2xlarge", Market.ON_DEMAND), ("c5.4xlarge", Market.SPOT), ("g5.xlarge", Market.ON_DEMAND)]
    # the G quota is not known, so the GPU node counts against nothing shown
    assert usage(view, nodes) == (
        QuotaUse(code=ON_DEMAND_STANDARD, limit=64.0, elsewhere=16.0, cluster=8.0),
        QuotaUse(code=SPOT_STANDARD, limit=32.0, elsewhere=0.0, cluster=16.0),
    )
    assert [round(q.used_percent()) for q in usage(view, nodes)] == [38, 50]
    assert usage(None, nodes) == ()  # no quota known: nothing to show
    assert QuotaUse(code="L-X", limit=0.0, elsewhere=1.0, cluster=0.0).used_percent() == 100.0

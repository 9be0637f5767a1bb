"""The pure scaling decision: decision tables for each rule, and the properties every decision keeps."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.cluster_state import DemandCount, Market, NodeRecord, NodeState
from shared.domain.decision import (
    Action,
    Adopt,
    Decision,
    Drain,
    Evict,
    Forget,
    Instance,
    InstanceState,
    Launch,
    SetState,
    Snapshot,
    StartStopped,
    Stop,
    Terminate,
    Undrain,
)
from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.policy import ScalerState
from shared.domain.resources import Resources
from shared.domain.scaling import (
    AGENT_BOOT_LIMIT,
    AGENT_SILENCE_LIMIT,
    ANY_ZONE,
    LAUNCH_VISIBILITY_GRACE,
    adopted_record,
    decide,
    launch_options,
    offers_for,
)
from shared.domain.settings import ClusterSettings

GiB = 2**30
NOW = 1_700_000_000.0
NODE_TYPES = "c5.4xlarge/c5a.4xlarge:0.42,c5.4xlarge,m5.2xlarge,r5.2xlarge"
SPOT, C5, M5, R5 = "c5.4xlarge/c5a.4xlarge:spot", "c5.4xlarge", "m5.2xlarge", "r5.2xlarge"


def cluster(**overrides: object) -> ClusterSettings:
    values: dict[str, object] = {"name": "test", "node_types": NODE_TYPES, "region": "us-west-2", "beta_inertia": 0.0}
    values.update(overrides)
    return ClusterSettings(**values).validate()  # type: ignore[arg-type]


@dataclass(frozen=True)
class Outage:
    instance_type: str
    zone: str
    market: Market


def shape(cores: float, memory_gib: float, wall: float = 600, *, preemptible: bool = False) -> Shape:
    return Shape(
        resources=Resources(cores=cores, memory=int(memory_gib * GiB), disk=GiB),
        wall_time=wall,
        preemptible=preemptible,
    )


SMALL_OD = shape(4, 8)
SMALL_SPOT = shape(4, 8, preemptible=True)
BIG_MEM = shape(4, 50)

_ids = itertools.count()


def node(
    offer_key: str,
    state: NodeState = NodeState.ACTIVE,
    *,
    jobs: int = 0,
    static: bool = False,
    market: Market | None = None,
    heartbeat: float | None = None,
    draining_since: float | None = None,
    acknowledged: bool = False,
    instance_type: str | None = None,
    launched_at: float = NOW - 600,  # past DescribeInstances' grace, within the agent's boot limit
) -> NodeRecord:
    spot = offer_key.endswith(":spot")
    return NodeRecord(
        instance_id=f"i-{next(_ids):08x}",
        offer_key=offer_key,
        instance_type=instance_type or offer_key.split("/", maxsplit=1)[0].removesuffix(":spot"),
        market=market or (Market.SPOT if spot else Market.ON_DEMAND),
        state=state,
        static=static,
        launched_at=launched_at,
        heartbeat_at=heartbeat,
        draining_since=draining_since,
        drain_acknowledged=acknowledged,
        running_jobs=MappingProxyType({f"job-{k}": f"rh-{k}" for k in range(jobs)}),
    )


def instance_for(record: NodeRecord, state: InstanceState | None = None) -> Instance:
    if state is None:
        state = InstanceState.STOPPED if record.state is NodeState.STOPPED else InstanceState.RUNNING
    return Instance(
        instance_id=record.instance_id,
        instance_type=record.instance_type,
        state=state,
        market=record.market,
        offer_key=record.offer_key,
        zone=record.zone,
        static=record.static,
        launched_at=record.launched_at,
    )


def snap(
    demand: dict[Shape, int] | None = None, nodes: Sequence[NodeRecord] = (), *, running: dict[Shape, int] | None = None
) -> Snapshot:
    counts = {s: DemandCount(queued=n) for s, n in (demand or {}).items()}
    for s, n in (running or {}).items():
        counts[s] = DemandCount(queued=counts.get(s, DemandCount()).queued, running=n)
    return Snapshot(demand=counts, nodes=tuple(nodes), instances=tuple(instance_for(n) for n in nodes))


def run(
    snapshot: Snapshot,
    settings: ClusterSettings | None = None,
    *,
    state: ScalerState | None = None,
    unavailable: Iterable[Outage] = (),
    now: float = NOW,
    smoothed_at: float | None = None,
) -> Decision:
    settings = settings or cluster()
    return decide(
        snapshot,
        settings,
        offers_for(settings),
        state or ScalerState(),
        set(unavailable),
        now=now,
        smoothed_at=smoothed_at,
    )


def of(decision: Decision, kind: type[Action]) -> list[Action]:
    return [a for a in decision.actions if isinstance(a, kind)]


def launched(decision: Decision) -> dict[str, int]:
    return {a.offer_key: a.count for a in decision.actions if isinstance(a, Launch)}


def ids(decision: Decision, kind: type[Drain | Terminate | Stop | Undrain | StartStopped]) -> set[str]:
    return {i for a in decision.actions if isinstance(a, kind) for i in a.instance_ids}


def apply(snapshot: Snapshot, decision: Decision, now: float = NOW) -> Snapshot:
    """What the round makes of a decision when every call succeeds (the stores' and EC2's semantics)."""
    nodes = {n.instance_id: n for n in snapshot.nodes}
    instances = {i.instance_id: i for i in snapshot.instances}
    for action in decision.actions:
        if isinstance(action, Adopt):
            nodes.update((i.instance_id, adopted_record(i)) for i in action.instances)
        elif isinstance(action, Forget):
            for n in action.nodes:
                del nodes[n.instance_id]
        elif isinstance(action, Evict):
            for n in action.nodes:
                if n.static:
                    nodes[n.instance_id] = replace(nodes[n.instance_id], running_jobs=MappingProxyType({}))
                else:
                    nodes.pop(n.instance_id)
                    instances.pop(n.instance_id)
        elif isinstance(action, SetState):
            for n in action.nodes:
                jobs = MappingProxyType({}) if action.state is NodeState.STOPPED else nodes[n.instance_id].running_jobs
                nodes[n.instance_id] = replace(nodes[n.instance_id], state=action.state, running_jobs=jobs)
        elif isinstance(action, Undrain):
            for i in action.instance_ids:
                nodes[i] = replace(nodes[i], state=NodeState.ACTIVE, draining_since=None, drain_acknowledged=False)
        elif isinstance(action, StartStopped):
            for i in action.instance_ids:
                nodes[i] = replace(nodes[i], state=NodeState.PENDING)
                instances[i] = replace(instances[i], state=InstanceState.PENDING)
        elif isinstance(action, Launch):
            option = action.options[0]
            for _ in range(action.count):
                new = NodeRecord(
                    instance_id=f"i-new{next(_ids):06x}",
                    offer_key=action.offer_key,
                    instance_type=option.instance_type,
                    market=action.market,
                    state=NodeState.PENDING,
                    zone=option.zone,
                    launched_at=now,
                )
                nodes[new.instance_id] = new
                instances[new.instance_id] = instance_for(new, InstanceState.PENDING)
        elif isinstance(action, Drain):
            for i in action.instance_ids:
                nodes[i] = replace(nodes[i], state=NodeState.DRAINING, draining_since=now, drain_acknowledged=False)
        elif isinstance(action, Stop):
            for i in action.instance_ids:
                nodes[i] = replace(nodes[i], state=NodeState.STOPPED)
                instances[i] = replace(instances[i], state=InstanceState.STOPPING)
        elif isinstance(action, Terminate):
            for i in action.instance_ids:
                nodes.pop(i)
                instances.pop(i)
    return replace(snapshot, nodes=tuple(nodes.values()), instances=tuple(instances.values()))


# ---- decision tables ---------------------------------------------------------------------------


def test_from_zero_launches_the_plan_and_nothing_else() -> None:
    # GIVEN 100 on-demand jobs and 100 preemptible ones, no nodes
    decision = run(snap({SMALL_OD: 100, SMALL_SPOT: 100}))
    # THEN one launch per planned offer, exactly the engine's counts, each with a reason
    planned = {k: v for k, v in decision.plan.node_counts().items() if v}
    assert launched(decision) == planned
    assert all(isinstance(a, Launch) and a.reason for a in decision.actions)
    assert sum(planned.values()) > 0
    spot = next(a for a in decision.actions if isinstance(a, Launch) and a.offer_key == SPOT)
    assert spot.market is Market.SPOT and spot.bid == pytest.approx(0.42)
    assert [o.instance_type for o in spot.options] == ["c5.4xlarge", "c5a.4xlarge"]


def test_running_jobs_count_as_demand() -> None:
    # GIVEN 16 jobs running on two busy nodes and nothing queued  THEN the nodes are wanted, nothing drains
    nodes = [node(C5, jobs=8), node(C5, jobs=8)]
    decision = run(snap(running={SMALL_OD: 16}, nodes=nodes))
    assert decision.wanted[C5] + decision.wanted[M5] >= 1
    assert not of(decision, Drain)


def test_steady_state_is_a_no_op() -> None:
    first = run(snap({SMALL_OD: 40}))
    again = run(apply(snap({SMALL_OD: 40}), first))
    assert again.actions == ()


@pytest.mark.parametrize(
    ("busy", "static", "idle", "want_drained"),
    [
        (0, 0, 4, 4),  # no demand: every idle node drains
        (2, 0, 2, 2),  # busy nodes keep running
        (0, 2, 2, 2),  # static nodes stay
        (4, 0, 0, 0),  # nothing idle: nothing drains, and a reason says why
    ],
)
def test_scale_in_drains_only_idle_non_static_nodes(busy: int, static: int, idle: int, want_drained: int) -> None:
    nodes = [node(M5, jobs=1) for _ in range(busy)] + [node(M5, static=True) for _ in range(static)]
    nodes += [node(M5) for _ in range(idle)]
    decision = run(snap(running={SMALL_OD: busy}, nodes=nodes))
    drained = ids(decision, Drain)
    assert len(drained) == want_drained
    assert all(not n.busy and not n.static for n in nodes if n.instance_id in drained)
    if busy == 4:
        assert any("busy or static" in r for r in decision.reasons)


def test_most_expensive_idle_capacity_drains_first() -> None:
    # GIVEN a spot class with an idle node of each member: c5a is cheaper on demand, c5 dearer
    cheap, dear = node(C5, instance_type="c5.4xlarge"), node(R5)
    decision = run(snap(nodes=[cheap, dear]), cluster(min_nodes=(0, 1, 0, 0)))
    # THEN with one c5 kept by minNodes, only the r5 goes
    assert ids(decision, Drain) == {dear.instance_id}


def test_of_one_offers_surplus_the_smallest_root_volume_drains_first() -> None:
    # GIVEN two idle m5.2xlarge, one launched with the cluster's volume and one grown to 300 GiB (the dearer)
    small = node(M5)
    large = replace(node(M5), node_storage=300 * GiB)
    for nodes in ([small, large], [large, small]):
        # WHEN minNodes keeps one
        decision = run(snap(nodes=nodes), cluster(min_nodes=(0, 0, 1, 0)))
        # THEN the one that holds less goes, though it costs less: its volume is what the next jobs would miss
        assert ids(decision, Drain) == {small.instance_id}


def test_drain_then_terminate_once_the_agent_confirms_idle() -> None:
    drained = node(M5, NodeState.DRAINING, draining_since=NOW - 60, heartbeat=NOW - 90)
    # WHEN the agent has not reported since the drain  THEN wait
    assert run(snap(nodes=[drained])).actions == ()
    # WHEN it reports idle, knowing of the drain  THEN terminate
    reported = replace(drained, heartbeat_at=NOW - 10, drain_acknowledged=True)
    assert ids(run(snap(nodes=[reported])), Terminate) == {drained.instance_id}
    # WHEN an idle report is stamped after the drain but its agent did not know of it (the report was
    # written before the drain, by an agent that may have started jobs since)  THEN still wait
    unaware = replace(drained, heartbeat_at=NOW - 10)
    assert run(snap(nodes=[unaware])).actions == ()
    # WHEN it has not reported for a while since the drain  THEN still wait: an old report may miss a job
    quiet = replace(drained, draining_since=NOW - 400, heartbeat_at=NOW - 500)
    assert run(snap(nodes=[quiet])).actions == ()
    # WHEN its agent is silent past the dead-agent limit  THEN it is evicted (jobs back first), not just terminated
    dead = replace(drained, draining_since=NOW - 2000, heartbeat_at=NOW - AGENT_SILENCE_LIMIT - 1)
    assert [a.kind for a in run(snap(nodes=[dead])).actions] == ["evict"]
    # WHEN it reports a running job  THEN never
    busy = replace(reported, running_jobs=MappingProxyType({"j": "rh"}))
    assert run(snap(nodes=[busy])).actions == ()


def test_warm_pool_stops_on_demand_nodes_until_full() -> None:
    done = [node(M5, NodeState.DRAINING, draining_since=NOW - 60, heartbeat=NOW, acknowledged=True) for _ in range(3)]
    spot = node(SPOT, NodeState.DRAINING, draining_since=NOW - 60, heartbeat=NOW, acknowledged=True)
    pooled = node(R5, NodeState.STOPPED)
    decision = run(snap(nodes=[*done, spot, pooled]), cluster(warm_pool_size=2))
    # THEN one more on-demand node joins the pool (2 in all); the rest and the spot node terminate
    assert len(ids(decision, Stop)) == 1
    assert ids(decision, Terminate) == {n.instance_id for n in [*done, spot]} - ids(decision, Stop)


def test_warm_pool_above_its_size_shrinks() -> None:
    pooled = [node(M5, NodeState.STOPPED) for _ in range(3)]
    assert len(ids(run(snap(nodes=pooled), cluster(warm_pool_size=1)), Terminate)) == 2


def test_growth_reuses_draining_then_stopped_nodes_before_launching() -> None:
    draining = node(M5, NodeState.DRAINING, draining_since=NOW - 30)
    stopped = node(M5, NodeState.STOPPED)
    decision = run(snap({shape(8, 28, 3600): 5}, nodes=[draining, stopped]))
    assert ids(decision, Undrain) == {draining.instance_id}
    assert ids(decision, StartStopped) == {stopped.instance_id}
    assert decision.wanted[M5] == 5
    assert launched(decision) == {M5: 3}


def test_min_and_max_nodes_hold() -> None:
    decision = run(snap({SMALL_OD: 1000}), cluster(min_nodes=(0, 0, 0, 2), max_nodes=(0, 0, 3, 5)))
    assert decision.wanted[R5] >= 2 and decision.wanted[M5] <= 3 and decision.wanted[C5] == 0
    assert launched(decision)[M5] == 3
    assert any("maxNodes" in r for r in decision.reasons)


def test_one_unavailable_member_is_skipped_within_its_class() -> None:
    outage = Outage("c5.4xlarge", ANY_ZONE, Market.SPOT)
    decision = run(snap({SMALL_SPOT: 50}), unavailable=[outage])
    spot = next(a for a in decision.actions if isinstance(a, Launch) and a.offer_key == SPOT)
    assert [o.instance_type for o in spot.options] == ["c5a.4xlarge"]


def test_unavailable_offer_is_replanned_onto_the_next_cheapest_that_fits() -> None:
    # GIVEN m5.2xlarge (the cheapest on-demand offer for these jobs) refused in every zone
    outage = Outage("m5.2xlarge", ANY_ZONE, Market.ON_DEMAND)
    before = run(snap({SMALL_OD: 40}))
    after = run(snap({SMALL_OD: 40}), unavailable=[outage])
    assert M5 in launched(before) and M5 not in launched(after)
    assert after.unavailable_offers == (M5,)
    assert set(launched(after)) & {C5, R5}
    assert any("capacity-failure cache" in r for r in after.reasons)


def test_unavailable_offer_keeps_its_live_nodes() -> None:
    nodes = [node(M5, jobs=1) for _ in range(3)] + [node(M5)]
    decision = run(
        snap({SMALL_OD: 40}, nodes, running={SMALL_OD: 3}),
        unavailable=[Outage("m5.2xlarge", ANY_ZONE, Market.ON_DEMAND)],
    )
    assert decision.wanted[M5] <= 4 and M5 not in launched(decision)


@pytest.mark.parametrize(("compensation", "stand_ins"), [(0.0, 0), (0.5, 2), (1.0, 4)])
def test_unavailable_spot_falls_back_to_on_demand_per_preemptible_compensation(
    compensation: float, stand_ins: int
) -> None:
    # GIVEN preemptible jobs that want 4 spot nodes, and the whole spot class refused
    s = cluster(preemptible_compensation=compensation)
    demand = snap({shape(16, 28, 3600, preemptible=True): 4})
    assert launched(run(demand, s)) == {SPOT: 4}
    outages = [Outage(t, ANY_ZONE, Market.SPOT) for t in ("c5.4xlarge", "c5a.4xlarge")]
    decision = run(demand, s, unavailable=outages)
    # THEN on-demand stands in for that fraction of them
    assert SPOT not in launched(decision)
    assert sum(launched(decision).values()) == stand_ins
    if stand_ins:
        assert any("preemptibleCompensation" in r for r in decision.reasons)


def test_zones_are_tried_in_order_and_skipped_where_refused() -> None:
    snapshot = replace(snap({SMALL_OD: 10}), zones=("us-west-2a", "us-west-2b"))
    decision = run(snapshot, unavailable=[Outage("m5.2xlarge", "us-west-2a", Market.ON_DEMAND)])
    m5 = next(a for a in decision.actions if isinstance(a, Launch) and a.offer_key == M5)
    assert [(o.instance_type, o.zone) for o in m5.options] == [("m5.2xlarge", "us-west-2b")]


def test_records_follow_ec2() -> None:
    gone = node(M5, jobs=2)
    fresh = node(M5, NodeState.PENDING, launched_at=NOW - LAUNCH_VISIBILITY_GRACE / 2)
    stopped = node(M5, jobs=1)
    stray = Instance(
        instance_id="i-stray",
        instance_type="m5.2xlarge",
        state=InstanceState.RUNNING,
        market=Market.ON_DEMAND,
        offer_key=M5,
    )
    snapshot = Snapshot(
        demand={SMALL_OD: DemandCount(queued=4)},
        nodes=(gone, fresh, stopped),
        instances=(instance_for(stopped, InstanceState.STOPPED), stray),
    )
    decision = run(snapshot)
    forget = next(a for a in decision.actions if isinstance(a, Forget))
    assert [n.instance_id for n in forget.nodes] == [gone.instance_id]  # the fresh one may not be visible yet
    adopt = next(a for a in decision.actions if isinstance(a, Adopt))
    assert [i.instance_id for i in adopt.instances] == ["i-stray"]
    set_state = next(a for a in decision.actions if isinstance(a, SetState))
    assert set_state.state is NodeState.STOPPED and set_state.nodes == (stopped,)


def test_nodes_of_an_offer_no_longer_listed_drain() -> None:
    old = node("t3.large")
    assert ids(run(snap({SMALL_OD: 4}, [old])), Drain) == {old.instance_id}


def test_scale_down_decays_once_per_scale_interval() -> None:
    s = cluster(beta_inertia=0.5)
    state = ScalerState(smoothed=MappingProxyType({M5: 8.0}))
    # WHEN a round runs within the interval of the last decay  THEN the estimate holds
    held = run(snap(), s, state=state, smoothed_at=NOW - 10)
    assert held.wanted[M5] == 8 and held.smoothed_at == NOW - 10
    # WHEN the interval has passed  THEN it decays one step, and the time is recorded
    decayed = run(snap(), s, state=state, smoothed_at=NOW - 60)
    assert decayed.wanted[M5] == 4 and decayed.smoothed_at == NOW


def test_growth_is_immediate_even_within_the_interval() -> None:
    state = ScalerState(smoothed=MappingProxyType({M5: 1.0}))
    decision = run(snap({shape(8, 28, 3600): 6}), cluster(beta_inertia=0.9), state=state, smoothed_at=NOW - 1)
    assert decision.wanted[M5] >= 6


def test_summary_is_plain_json() -> None:
    import json

    summary = run(snap({SMALL_OD: 10})).summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["actions"] and all("reason" in a for a in summary["actions"])  # type: ignore[union-attr]


# ---- properties --------------------------------------------------------------------------------

SHAPES = [SMALL_OD, SMALL_SPOT, BIG_MEM, shape(16, 30, 3600), shape(1, 2, 60, preemptible=True)]
KEYS = [SPOT, C5, M5, R5]
ALL_OUTAGES = [
    Outage(t, ANY_ZONE, m)
    for t, m in [
        ("c5.4xlarge", Market.SPOT),
        ("c5a.4xlarge", Market.SPOT),
        ("c5.4xlarge", Market.ON_DEMAND),
        ("m5.2xlarge", Market.ON_DEMAND),
        ("r5.2xlarge", Market.ON_DEMAND),
    ]
]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Snapshot, ClusterSettings, set[Outage]]:
    demand = draw(st.dictionaries(st.sampled_from(SHAPES), st.integers(0, 300), max_size=4))
    nodes = []
    for _ in range(draw(st.integers(0, 12))):
        key = draw(st.sampled_from([*KEYS, "t3.large"]))
        state = draw(st.sampled_from([NodeState.PENDING, NodeState.ACTIVE, NodeState.DRAINING, NodeState.STOPPED]))
        jobs = 0 if state is NodeState.STOPPED else draw(st.integers(0, 3))
        nodes.append(
            node(
                key,
                state,
                jobs=jobs,
                static=draw(st.booleans()) and state is NodeState.ACTIVE,
                heartbeat=draw(st.sampled_from([None, NOW - 500, NOW - 1])),
                draining_since=NOW - draw(st.sampled_from([1, 1000])) if state is NodeState.DRAINING else None,
                acknowledged=state is NodeState.DRAINING and draw(st.booleans()),
            )
        )
    running = {s: sum(1 for n in nodes for _ in n.running_jobs) for s in SHAPES[:1]}
    snapshot = snap(demand, nodes, running=running)
    lo = draw(st.lists(st.integers(0, 3), min_size=4, max_size=4))
    hi = [a + b for a, b in zip(lo, draw(st.lists(st.integers(0, 6), min_size=4, max_size=4)), strict=True)]
    settings_ = cluster(
        min_nodes=tuple(lo),
        max_nodes=tuple(hi),
        warm_pool_size=draw(st.integers(0, 2)),
        preemptible_compensation=draw(st.sampled_from([0.0, 0.5, 1.0])),
        beta_inertia=draw(st.sampled_from([0.0, 0.5])),
    )
    outages = set(draw(st.lists(st.sampled_from(ALL_OUTAGES), max_size=3)))
    return snapshot, settings_, outages


def live_counts(snapshot: Snapshot) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in snapshot.nodes:
        if n.state in (NodeState.PENDING, NodeState.ACTIVE):
            counts[n.offer_key] = counts.get(n.offer_key, 0) + 1
    return counts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.sampled_from([None, ScalerState(smoothed=MappingProxyType({M5: 6.0, SPOT: 3.0}))]))
def test_properties(scenario: tuple[Snapshot, ClusterSettings, set[Outage]], state: ScalerState | None) -> None:
    snapshot, settings_, outages = scenario
    state = state or ScalerState()
    decision = run(snapshot, settings_, state=state, unavailable=outages)
    after = apply(snapshot, decision)
    before_live, after_live = live_counts(snapshot), live_counts(after)
    by_id = {n.instance_id: n for n in snapshot.nodes}

    # Never drain, stop or terminate a busy or static node.
    for kind in (Drain, Stop, Terminate):
        for instance_id in ids(decision, kind):
            assert not by_id[instance_id].busy and not by_id[instance_id].static

    # Never outside min/max: launches stop at max, drains stop at min (an unavailable offer holds what it has).
    for offer in offers_for(settings_):
        n_before, n_after = before_live.get(offer.key, 0), after_live.get(offer.key, 0)
        assert n_after <= max(offer.max_nodes, n_before)
        if n_after > n_before:
            assert n_after <= offer.max_nodes
        floor = offer.min_nodes if offer.key not in decision.unavailable_offers else min(offer.min_nodes, n_before)
        assert n_after >= min(floor, n_before) if n_after < n_before else True
        if offer.key not in decision.unavailable_offers:
            assert n_after >= offer.min_nodes

    # Re-deciding after acting is a no-op: within the round (same inputs, as the round's last pass does)...
    settled = run(after, settings_, state=state, unavailable=outages)
    assert settled.actions == ()
    # ... and in the next round, from the state that last pass saved.
    again = run(after, settings_, state=settled.state, unavailable=outages, smoothed_at=settled.smoothed_at)
    assert again.actions == ()


def _offer_keys(offers: Sequence[Offer]) -> list[str]:
    return [o.key for o in offers]


def test_offer_keys_are_the_ones_the_tests_use() -> None:
    assert _offer_keys(offers_for(cluster())) == KEYS


def test_launch_options_for_launch_cluster() -> None:
    (spot, *_) = offers_for(cluster())
    outage = Outage("c5.4xlarge", "us-west-2a", Market.SPOT)
    options = launch_options(spot, {outage}, ("us-west-2a", "us-west-2b"))
    assert [(o.instance_type, o.zone) for o in options] == [
        ("c5.4xlarge", "us-west-2b"),
        ("c5a.4xlarge", "us-west-2a"),
        ("c5a.4xlarge", "us-west-2b"),
    ]


@pytest.mark.parametrize(
    ("ec2", "state", "heartbeat", "expected"),
    [
        # EC2 is ending it, its agent still reports: no new work, but its jobs' processes may run on
        (InstanceState.SHUTTING_DOWN, NodeState.ACTIVE, NOW - 30, (SetState, NodeState.INTERRUPTED)),
        (InstanceState.STOPPING, NodeState.ACTIVE, NOW - 30, (SetState, NodeState.INTERRUPTED)),
        (InstanceState.SHUTTING_DOWN, NodeState.INTERRUPTED, NOW - 30, None),  # already marked: nothing to do
        (InstanceState.STOPPING, NodeState.DRAINING, NOW - 30, (SetState, NodeState.INTERRUPTED)),
        # ... and its agent is dead: nothing can end its jobs any more, so they go back now
        (InstanceState.SHUTTING_DOWN, NodeState.INTERRUPTED, NOW - AGENT_SILENCE_LIMIT - 1, (Forget, None)),
        (InstanceState.STOPPING, NodeState.ACTIVE, NOW - AGENT_SILENCE_LIMIT - 1, (SetState, NodeState.STOPPED)),
        # stopped, terminated (absent), or running with a silent agent: gone, its jobs go back
        (InstanceState.STOPPED, NodeState.INTERRUPTED, NOW - 30, (SetState, NodeState.STOPPED)),
        (None, NodeState.INTERRUPTED, NOW - 30, (Forget, None)),
        (InstanceState.RUNNING, NodeState.INTERRUPTED, NOW - AGENT_SILENCE_LIMIT - 1, (Evict, None)),
        (InstanceState.RUNNING, NodeState.INTERRUPTED, NOW - 30, None),  # warned, still running: wait
    ],
)
def test_a_busy_nodes_jobs_go_back_only_once_it_is_gone(
    ec2: InstanceState | None, state: NodeState, heartbeat: float, expected: tuple[type, NodeState | None] | None
) -> None:
    # GIVEN a busy node in ``state`` whose instance EC2 shows as ``ec2`` (None: terminated, not listed)
    busy = node(M5, state, jobs=2, heartbeat=heartbeat)
    instances = () if ec2 is None else (instance_for(busy, ec2),)
    # WHEN the scaler decides
    decision = run(Snapshot(demand={}, nodes=(busy,), instances=instances))
    # THEN the node's record changes as ``expected``; only Forget, Evict and SetState STOPPED return its jobs
    about = [a for a in decision.actions if isinstance(a, Forget | Evict | SetState)]
    if expected is None:
        assert about == []
        return
    (action,) = about
    assert type(action) is expected[0] and [n.instance_id for n in action.nodes] == [busy.instance_id]
    if isinstance(action, SetState):
        assert action.state is expected[1]


# ---- dead agents --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "heartbeat", "launched_ago", "static", "jobs", "evicted"),
    [
        (NodeState.ACTIVE, NOW - AGENT_SILENCE_LIMIT - 1, 3600, False, 3, True),  # silent: dead
        (NodeState.ACTIVE, NOW - AGENT_SILENCE_LIMIT + 60, 3600, False, 3, False),  # slow, not dead
        (NodeState.DRAINING, NOW - AGENT_SILENCE_LIMIT - 1, 3600, False, 1, True),
        (NodeState.PENDING, None, AGENT_BOOT_LIMIT + 1, False, 0, True),  # never reported
        (NodeState.PENDING, None, AGENT_BOOT_LIMIT - 60, False, 0, False),  # still booting
        (NodeState.ACTIVE, NOW - AGENT_SILENCE_LIMIT - 1, 3600, True, 2, True),  # static: jobs go back
        (NodeState.ACTIVE, NOW - AGENT_SILENCE_LIMIT - 1, 3600, True, 0, False),  # static, nothing to save
    ],
)
def test_a_node_whose_agent_is_silent_gives_its_jobs_back_and_is_replaced(
    state: NodeState, heartbeat: float | None, launched_ago: float, static: bool, jobs: int, evicted: bool
) -> None:
    # GIVEN a running node whose agent last reported at ``heartbeat``, with jobs that still need it
    record = node(M5, state, jobs=jobs, static=static, heartbeat=heartbeat, launched_at=NOW - launched_ago)
    snapshot = snap({SMALL_OD: 4}, [record], running={SMALL_OD: jobs} if jobs else None)
    # WHEN the scaler decides
    decision = run(snapshot)
    # THEN a dead agent's node is evicted (its jobs requeued); a non-static one is replaced by a launch
    assert [n.instance_id for a in of(decision, Evict) for n in a.nodes] == ([record.instance_id] if evicted else [])
    if evicted and not static:
        assert sum(launched(decision).values()) >= 1
    # AND deciding again after acting changes nothing
    assert run(apply(snapshot, decision)).actions == () or not evicted

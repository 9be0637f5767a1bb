"""Root volumes sized from the queue (``shared.domain.volumes``), and the launches that carry them."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from shared.domain.catalog import instance_type, root_volume_price
from shared.domain.cluster_state import DemandCount, Market, NodeRecord, NodeState
from shared.domain.decision import Decision, Instance, InstanceState, Launch, Snapshot
from shared.domain.jobs import Shape
from shared.domain.node_types import Offer, build_offers, parse_node_types
from shared.domain.policy import ScalerState
from shared.domain.quotas import QuotaView
from shared.domain.resources import Resources
from shared.domain.scaling import decide, offers_for
from shared.domain.scaling_fleet import ANY_ZONE
from shared.domain.settings import ClusterSettings
from shared.domain.units import GiB
from shared.domain.volumes import sized_offers, volume_needed
from shared.services.ports import Offering

REGION = "us-west-2"
NOW = 1_700_000_000.0


def shape(cores: float, memory_gib: float, disk_gib: float, *, preemptible: bool = True, wall: float = 600) -> Shape:
    wants = Resources(cores=cores, memory=int(memory_gib * GiB), disk=int(disk_gib * GiB))
    return Shape(resources=wants, wall_time=wall, preemptible=preemptible)


def offer(spec: str = "c5.4xlarge:0.30", node_storage_gib: int = 50) -> Offer:
    [only] = build_offers(parse_node_types(spec), region=REGION, node_storage=node_storage_gib * GiB)
    return only


def queued(*pairs: tuple[Shape, int]) -> dict[Shape, DemandCount]:
    return {s: DemandCount(queued=n) for s, n in pairs}


def test_a_node_gets_the_disk_its_cores_can_use() -> None:
    # GIVEN 40 one-core jobs of 10 GiB each, and a spot c5.4xlarge (16 vCPUs) offered with Toil's 50 GiB
    [sized] = sized_offers([offer()], queued((shape(1, 1, 10), 40)), largest=1024 * GiB, region=REGION)
    # THEN its volume holds sixteen of them and the system: 16 x 10 + 8 = 168 GiB, in 10 GiB steps 170
    assert sized.node_storage == 170 * GiB
    assert sized.usable.disk == 162 * GiB
    assert sized.usable.cores == 16
    # AND its price is the bid with the larger volume's
    assert sized.volume_price == pytest.approx(root_volume_price(170 * GiB, REGION))
    assert sized.hourly_price == pytest.approx(0.30 + 170 * 0.08 / 730)


def test_a_few_jobs_or_memory_bound_ones_keep_the_smallest_volume() -> None:
    base = offer()
    # three jobs need 38 GiB: less than node_storage, which stays (the same offer)
    assert sized_offers([base], queued((shape(1, 1, 10), 3)), largest=1024 * GiB, region=REGION) == [base]
    # 8 GiB-memory jobs: three fill a c5.4xlarge's usable memory, so 3 x 10 + 8 GiB is enough
    assert volume_needed(base, queued((shape(1, 8, 10), 40)), 1024 * GiB) == 50 * GiB


def test_the_largest_volume_caps_it_and_counts_are_per_shape() -> None:
    demand = queued((shape(1, 1, 10), 40), (shape(2, 1, 40), 40))
    # the 2-core jobs: 8 per node x 40 GiB = 320 + 8 → 330 GiB; capped at 200
    assert volume_needed(offer(), demand, 1024 * GiB) == 330 * GiB
    assert volume_needed(offer(), demand, 200 * GiB) == 200 * GiB
    # a largest volume no bigger than node_storage leaves every offer as it was
    assert sized_offers([offer()], demand, largest=50 * GiB, region=REGION) == [offer()]


def test_shapes_a_node_cannot_take_do_not_size_it() -> None:
    spot = offer()
    # on-demand-only jobs never run on a spot node; a job of 20 cores fits no c5.4xlarge
    assert volume_needed(spot, queued((shape(1, 1, 10, preemptible=False), 40)), 1024 * GiB) == 50 * GiB
    assert volume_needed(spot, queued((shape(20, 1, 10), 40)), 1024 * GiB) == 50 * GiB
    # a job asking more disk than node_storage gives is one a grown volume can take
    assert volume_needed(spot, queued((shape(1, 1, 300), 1)), 1024 * GiB) == 310 * GiB


def test_a_node_type_with_a_max_keeps_the_volume_it_was_given() -> None:
    # GIVEN the same queue that grows an uncapped c5.4xlarge's volume to 170 GiB
    demand = queued((shape(1, 1, 10), 40))
    [capped] = build_offers(parse_node_types("c5.4xlarge:0.30"), region=REGION, max_nodes=[8])
    # THEN with --maxNodes set for it, its nodes keep node_storage (the demo's waits grew with it: docs/simulate.md)
    assert volume_needed(capped, demand, 1024 * GiB) == 50 * GiB
    assert volume_needed(offer(), demand, 1024 * GiB) == 170 * GiB


def test_instance_store_types_keep_their_own_disks() -> None:
    gpu = offer("g4dn.xlarge")
    assert instance_type("g4dn.xlarge").instance_storage
    assert sized_offers([gpu], queued((shape(1, 1, 10), 40)), largest=1024 * GiB, region=REGION) == [gpu]


def _decide(
    settings: ClusterSettings, demand: dict[Shape, DemandCount], refused: Sequence[Offering] = ()
) -> list[Launch]:
    snapshot = Snapshot(demand=demand, nodes=(), instances=())
    decision = decide(snapshot, settings, offers_for(settings), ScalerState(), set(refused), now=NOW)
    return [a for a in decision.actions if isinstance(a, Launch)]


def test_a_launch_names_the_grown_volume_and_says_so() -> None:
    settings = ClusterSettings(name="t", node_types="c5.4xlarge:0.30", region=REGION).validate()
    # GIVEN 32 one-core jobs of 10 GiB, each longer than the target time  WHEN a round decides
    hour_long = shape(1, 1, 10, wall=3600)
    [launch] = _decide(settings, queued((hour_long, 32)))
    # THEN two nodes with 170 GiB volumes, where 50 GiB ones would have taken eight
    assert (launch.count, launch.node_storage) == (2, 170 * GiB)
    assert "with 170 GiB root volumes" in launch.reason
    # AND with the largest volume at node_storage, eight nodes of the launch template's volume
    kept = ClusterSettings(name="t", node_types="c5.4xlarge:0.30", region=REGION, max_node_storage=50 * GiB)
    [launch] = _decide(kept.validate(), queued((hour_long, 32)))
    assert (launch.count, launch.node_storage) == (8, None)
    assert "root volume" not in launch.reason


def _c5_spot_and_m5_24xlarge() -> list[Offer]:
    return build_offers(parse_node_types("c5.4xlarge:0.30,m5.24xlarge"), region=REGION, node_storage=50 * GiB)


def test_a_type_grows_only_for_jobs_it_holds_within_twice_the_cheapest_price_per_job() -> None:
    c5, m5 = _c5_spot_and_m5_24xlarge()
    small = queued((shape(1, 1, 10), 200))
    # GIVEN one-core jobs: a spot c5.4xlarge holds 16 for $0.32/h ($0.020 a job), an on-demand m5.24xlarge 96 for
    # $4.72/h with 970 GiB ($0.049 a job)
    # THEN the c5.4xlarge grows for them and the m5.24xlarge keeps its 50 GiB, more than twice the price per job
    assert [o.node_storage for o in sized_offers([c5, m5], small, largest=1024 * GiB, region=REGION)] == [
        170 * GiB,
        50 * GiB,
    ]
    assert volume_needed(m5, small, 1024 * GiB, among=[c5]) == 50 * GiB
    # AND alone, the m5.24xlarge is their cheapest home, and grows to hold 96 of them
    assert volume_needed(m5, small, 1024 * GiB) == 970 * GiB


def test_room_a_large_job_leaves_is_sized_for_the_small_jobs_that_could_fill_it() -> None:
    c5, m5 = _c5_spot_and_m5_24xlarge()
    # GIVEN a 64-core job only the m5.24xlarge holds, beside the one-core jobs a c5.4xlarge holds more cheaply
    demand = {**queued((shape(1, 1, 10), 200)), shape(64, 100, 10, preemptible=False): DemandCount(running=1)}
    sized = sized_offers([c5, m5], demand, largest=1024 * GiB, region=REGION)
    # THEN its volume holds the large job and 32 one-core jobs in the 32 cores it leaves: 10 + 320 + 8 → 340 GiB
    assert [o.node_storage for o in sized] == [170 * GiB, 340 * GiB]
    # AND with no c5.4xlarge able to launch, the m5.24xlarge is the one-core jobs' home again and holds 96
    homes = {m5.key}
    assert sized_offers([c5, m5], demand, largest=1024 * GiB, region=REGION, homes=homes)[1].node_storage == 970 * GiB


def test_a_round_sizes_a_type_for_the_jobs_whose_cheaper_type_ec2_refused() -> None:
    spec = "c5.4xlarge:0.30,m5.24xlarge"  # on-demand stands in for refused spot capacity
    settings = ClusterSettings(name="t", node_types=spec, region=REGION, preemptible_compensation=1.0).validate()
    demand = queued((shape(1, 1, 10, wall=3600), 96))
    # GIVEN 96 hour-long one-core jobs  WHEN a round decides: sixteen to a 170 GiB spot c5.4xlarge
    [launch] = _decide(settings, demand)
    assert (launch.offer_key, launch.count, launch.node_storage) == ("c5.4xlarge:spot", 6, 170 * GiB)
    # WHEN EC2 has refused spot c5.4xlarge everywhere: one m5.24xlarge whose volume holds all 96
    refused = [Offering(instance_type="c5.4xlarge", zone=ANY_ZONE, market=Market.SPOT)]
    [launch] = _decide(settings, demand, refused)
    assert (launch.offer_key, launch.count, launch.node_storage) == ("m5.24xlarge", 1, 970 * GiB)


def test_grown_volumes_past_the_regions_gp3_quota_are_launched_at_the_templates_size() -> None:
    settings = ClusterSettings(name="t", node_types="c5.4xlarge:0.30", region=REGION).validate()
    hour_long = queued((shape(1, 1, 10, wall=3600), 32))
    stopped = NodeRecord(
        instance_id="i-0stopped",
        offer_key="c5.4xlarge:spot",
        instance_type="c5.4xlarge",
        market=Market.SPOT,
        state=NodeState.STOPPED,
        node_storage=60 * GiB,
    )

    def round_with(view: QuotaView | None, nodes: Sequence[NodeRecord] = ()) -> Decision:
        instances = tuple(
            Instance(instance_id=n.instance_id, instance_type=n.instance_type, state=InstanceState.STOPPED,
                     market=n.market, offer_key=n.offer_key, node_storage=n.node_storage)
            for n in nodes
        )  # fmt: skip
        snapshot = Snapshot(demand=hour_long, nodes=tuple(nodes), instances=instances, quotas=view)
        return decide(snapshot, settings, offers_for(settings), ScalerState(), set(), now=NOW)

    def launches(decision: Decision) -> list[tuple[int, int | None]]:
        return [(a.count, a.node_storage) for a in decision.actions if isinstance(a, Launch)]

    # GIVEN 32 one-core jobs that two 170 GiB nodes hold (340 GiB)  WHEN the quota is unknown or leaves room
    assert launches(round_with(None)) == [(2, 170 * GiB)]
    assert launches(round_with(QuotaView(gp3_gib=500, gp3_elsewhere_gib=160))) == [(2, 170 * GiB)]
    # WHEN volumes outside the cluster leave it 300 GiB  THEN eight nodes at the template's 50 GiB, and it says why
    past = round_with(QuotaView(gp3_gib=500, gp3_elsewhere_gib=200))
    assert launches(past) == [(8, None)]
    assert past.reasons[0] == (
        "root volumes kept at 50 GiB: grown ones would take the cluster to 340 GiB of gp3, past the 300 GiB the "
        "region's gp3 storage quota (L-7A658B76) leaves it"
    )
    # AND the cluster's own volumes count, a stopped node's too (the round starts it, and launches the rest): its
    # 60 GiB and two grown nodes' 340 are past 360 GiB, and within 400
    assert launches(round_with(QuotaView(gp3_gib=500, gp3_elsewhere_gib=140), [stopped])) == [(7, None)]
    assert launches(round_with(QuotaView(gp3_gib=500, gp3_elsewhere_gib=100), [stopped])) == [(1, 170 * GiB)]

"""Toil's --nodeTypes syntax, equivalence classes kept whole, and the offers built from it."""

from __future__ import annotations

import pytest

from shared.domain.catalog import DEFAULT_NODE_STORAGE, instance_type, root_volume_price
from shared.domain.node_types import NodeTypeSpecError, build_offers, parse_node_types
from shared.domain.units import GiB

VOLUME = root_volume_price(DEFAULT_NODE_STORAGE, "us-east-1")  # every node's 50 GiB root volume, per hour


def test_toils_example() -> None:
    classes = parse_node_types("c5.4xlarge/c5a.4xlarge:0.42,t3.large")
    assert [(c.instance_types, c.bid) for c in classes] == [
        (("c5.4xlarge", "c5a.4xlarge"), 0.42),
        (("t3.large",), None),
    ]
    assert str(classes[0]) == "c5.4xlarge/c5a.4xlarge:0.42"


def test_an_equivalence_class_keeps_every_member_cheapest_first() -> None:
    [spot_class] = build_offers(parse_node_types("c5.4xlarge/c5a.4xlarge:0.42"), region="us-east-1")
    assert spot_class.spot and spot_class.hourly_price == pytest.approx(0.42 + VOLUME)
    assert set(spot_class.instance_types) == {"c5.4xlarge", "c5a.4xlarge"}
    [on_demand] = build_offers(parse_node_types("c5.4xlarge/c5a.4xlarge"), region="us-east-1")
    assert on_demand.instance_types[0] == "c5a.4xlarge"  # the cheaper member is tried first
    assert on_demand.hourly_price == pytest.approx(instance_type("c5a.4xlarge").price("us-east-1") + VOLUME)


def test_a_class_is_planned_with_what_every_member_has() -> None:
    [offer] = build_offers(parse_node_types("m5.2xlarge/r5.2xlarge"), region="us-east-1")
    assert offer.usable == instance_type("m5.2xlarge").usable()


def test_live_spot_prices_replace_the_bid_and_an_outbid_class_is_skipped() -> None:
    classes = parse_node_types("c5.4xlarge:0.42,m5.2xlarge:0.10")
    offers = build_offers(classes, region="us-east-1", spot_prices={"c5.4xlarge": 0.31, "m5.2xlarge": 0.15})
    assert [(o.key, o.hourly_price) for o in offers] == [("c5.4xlarge:spot", pytest.approx(0.31 + VOLUME))]


def test_a_bid_is_the_instances_and_a_live_price_at_the_bid_can_be_had() -> None:
    # GIVEN a live price equal to the bid: the volume is paid beside it, not out of it
    offers = build_offers(parse_node_types("c5.4xlarge:0.42"), region="us-east-1", spot_prices={"c5.4xlarge": 0.42})
    # THEN the class is offered, at the bid plus its root volume
    assert [(o.bid, o.hourly_price, o.volume_price) for o in offers] == [(0.42, pytest.approx(0.42 + VOLUME), VOLUME)]


def test_every_node_pays_for_its_root_volume_of_node_storage() -> None:
    # GIVEN 200 GiB root volumes  WHEN offers are built
    [offer] = build_offers(parse_node_types("m5.2xlarge"), region="us-east-1", node_storage=200 * GiB)
    # THEN the node's price is the instance's and four times the default volume's
    assert offer.volume_price == pytest.approx(4 * VOLUME)
    assert offer.hourly_price == pytest.approx(instance_type("m5.2xlarge").price("us-east-1") + 4 * VOLUME)


def test_min_and_max_align_with_node_types() -> None:
    offers = build_offers(parse_node_types("t3.large,c5.4xlarge"), region="us-west-2", min_nodes=[1], max_nodes=[3, 7])
    assert [(o.min_nodes, o.max_nodes) for o in offers] == [(1, 3), (0, 7)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "--nodeTypes is empty"),
        ("c5.4xlarg", "unknown instance type 'c5.4xlarg'; did you mean c5.4xlarge"),
        ("c5.4xlarge:cheap", "bid 'cheap' in 'c5.4xlarge:cheap' is not a positive price"),
        ("c5.4xlarge:-1", "is not a positive price"),
        ("c5.4xlarge,,t3.large", "has an empty entry"),
        ("c5.4xlarge/", "has an empty instance type"),
        ("c5.4xlarge,c5.4xlarge", "c5.4xlarge is listed twice as on-demand"),
        ("c5.4xlarge/c5.4xlarge", "names the same instance type twice"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(NodeTypeSpecError, match=message):
        parse_node_types(spec)


def test_spot_and_on_demand_of_one_type_may_both_be_offered() -> None:
    assert len(parse_node_types("c5.4xlarge:0.3,c5.4xlarge")) == 2


@pytest.mark.parametrize(
    ("lo", "hi", "message"),
    [([3], [2], "not a valid range"), ([0, 0, 0], [], "more entries"), ([-1], [], "not a valid range")],
)
def test_bad_min_max(lo: list[int], hi: list[int], message: str) -> None:
    with pytest.raises(NodeTypeSpecError, match=message):
        build_offers(parse_node_types("t3.large,c5.4xlarge"), region="us-east-1", min_nodes=lo, max_nodes=hi)

"""The instance catalog: well-known AWS facts, family shapes, usable capacity and lookup errors."""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations

import pytest

from shared.domain.catalog import (
    CATALOG,
    DEFAULT_NODE_STORAGE,
    REGIONS,
    InstanceType,
    UnknownInstanceTypeError,
    UnknownRegionError,
    instance_type,
    root_volume_price,
)
from shared.domain.resources import Resources
from shared.domain.units import GiB, MiB

REQUIRED_FAMILIES = (
    "t3",
    "c5",
    "c5a",
    "c6i",
    "c7i",
    "m5",
    "m6i",
    "m7i",
    "r5",
    "r6i",
    "r7i",
    "g4dn",
    "g5",
    "p3",
)


def _family(name: str) -> str:
    family = name.split(".", maxsplit=1)[0]
    # AWS lists p3dn.24xlarge among the P3 instances; it is the fourth P3 size
    return "p3" if family == "p3dn" else family


def _by_family() -> dict[str, list[InstanceType]]:
    families: dict[str, list[InstanceType]] = defaultdict(list)
    for itype in CATALOG.values():
        families[_family(itype.name)].append(itype)
    return families


# name: (vcpus, memory GiB, GPUs, instance storage GB, on-demand USD/h in both regions)
@pytest.mark.parametrize(
    ("name", "facts"),
    [
        ("t3.large", (2, 8, 0, 0, 0.0832)),
        ("c5.4xlarge", (16, 32, 0, 0, 0.68)),
        ("c5.9xlarge", (36, 72, 0, 0, 1.53)),
        ("c5a.large", (2, 4, 0, 0, 0.077)),
        ("c7i.large", (2, 4, 0, 0, 0.08925)),
        ("m5.large", (2, 8, 0, 0, 0.096)),
        ("m7i.large", (2, 8, 0, 0, 0.1008)),
        ("r5.large", (2, 16, 0, 0, 0.126)),
        ("r7i.large", (2, 16, 0, 0, 0.1323)),
        ("g4dn.xlarge", (4, 16, 1, 125, 0.526)),
        ("g5.xlarge", (4, 16, 1, 250, 1.006)),
        ("g5.12xlarge", (48, 192, 4, 3800, 5.672)),
        ("p3.2xlarge", (8, 61, 1, 0, 3.06)),
        ("p3dn.24xlarge", (96, 768, 8, 1800, 31.212)),
    ],
)
def test_well_known_facts(name: str, facts: tuple[int, float, int, int, float]) -> None:
    # GIVEN
    vcpus, memory_gib, gpus, storage_gb, price = facts

    # WHEN
    itype = instance_type(name)

    # THEN
    assert itype.name == name
    assert itype.vcpus == vcpus
    assert itype.memory == int(memory_gib * 2**30)
    assert itype.gpus == gpus
    assert itype.instance_storage == storage_gb * 10**9
    assert itype.price("us-east-1") == pytest.approx(price)
    assert itype.price("us-west-2") == pytest.approx(price)


def test_every_type_is_priced_in_every_region() -> None:
    assert REGIONS == ("us-east-1", "us-west-2")
    for itype in CATALOG.values():
        assert set(itype.on_demand_price) == set(REGIONS), itype.name
        assert all(itype.price(region) > 0 for region in REGIONS), itype.name


@pytest.mark.parametrize("family", REQUIRED_FAMILIES)
def test_every_required_family_has_at_least_four_sizes(family: str) -> None:
    assert len(_by_family()[family]) >= 4


@pytest.mark.parametrize("family", sorted(_by_family()))
def test_within_a_family_price_grows_with_vcpus(family: str) -> None:
    # GIVEN sizes of one family with the same number of GPUs (g4dn.16xlarge has more vCPUs than
    # g4dn.12xlarge but one GPU instead of four, and costs accordingly)
    sizes = _by_family()[family]

    # THEN more vCPUs cost more, and the same vCPUs (a .metal next to its largest size) cost the same
    for a, b in combinations(sizes, 2):
        if a.gpus != b.gpus:
            continue
        for region in REGIONS:
            if a.vcpus < b.vcpus:
                assert a.price(region) < b.price(region), (a.name, b.name)
            elif a.vcpus > b.vcpus:
                assert a.price(region) > b.price(region), (a.name, b.name)


def test_within_a_family_more_memory_never_costs_less() -> None:
    for family, sizes in _by_family().items():
        for a, b in combinations(sizes, 2):
            if a.gpus == b.gpus and a.vcpus == b.vcpus and a.memory < b.memory:
                assert a.price("us-east-1") <= b.price("us-east-1"), (family, a.name, b.name)


def test_usable_keeps_back_the_appliance_memory_and_gives_jobs_the_instance_store() -> None:
    # GIVEN an instance with an instance store
    itype = instance_type("g5.xlarge")

    # WHEN
    usable = itype.usable()

    # THEN memory loses 512 MiB plus 4%, disk is the whole instance store, cores and GPUs are all there
    expected_memory = 16 * GiB - 512 * MiB - int(16 * GiB * 0.04)
    assert usable == Resources(cores=4.0, memory=expected_memory, disk=250 * 10**9, accelerators=1)


def test_usable_disk_of_an_ebs_only_type_is_the_root_volume_less_the_os() -> None:
    # GIVEN an EBS-only instance
    itype = instance_type("c5.4xlarge")

    # WHEN
    default = itype.usable()
    bigger = itype.usable(node_storage=200 * GiB)

    # THEN
    assert default.disk == DEFAULT_NODE_STORAGE - 8 * GiB
    assert default.disk == 50 * GiB - 8 * GiB
    assert bigger.disk == 200 * GiB - 8 * GiB
    assert default.memory == 32 * GiB - 512 * MiB - int(32 * GiB * 0.04)
    assert default.cores == 16.0
    assert default.accelerators == 0


def test_node_storage_does_not_change_the_disk_of_an_instance_store_type() -> None:
    itype = instance_type("p3dn.24xlarge")
    assert itype.usable(node_storage=10 * GiB).disk == 1800 * 10**9


def test_usable_never_goes_negative() -> None:
    # GIVEN a tiny instance and a root volume smaller than the OS share
    usable = instance_type("t3.nano").usable(node_storage=4 * GiB)

    # THEN
    assert usable.memory == 0
    assert usable.disk == 0


def test_usable_fits_in_what_the_instance_has() -> None:
    for itype in CATALOG.values():
        usable = itype.usable()
        assert 0 <= usable.memory < itype.memory, itype.name
        assert usable.cores == itype.vcpus
        assert usable.accelerators == itype.gpus


def test_unknown_type_suggests_close_matches() -> None:
    # WHEN
    with pytest.raises(UnknownInstanceTypeError) as excinfo:
        instance_type("c5.4xlarg")

    # THEN
    message = str(excinfo.value)
    assert "'c5.4xlarg'" in message
    assert "did you mean" in message
    assert "c5.4xlarge" in message


def test_unknown_type_with_nothing_close_points_at_the_catalog() -> None:
    with pytest.raises(UnknownInstanceTypeError, match="shoal node-types"):
        instance_type("zz9.plural")


def test_unknown_type_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown instance type"):
        instance_type("m5.huge")


def test_unknown_region_raises_and_lists_the_known_regions() -> None:
    # WHEN
    with pytest.raises(UnknownRegionError) as excinfo:
        instance_type("m5.large").price("eu-west-1")

    # THEN
    message = str(excinfo.value)
    assert "'eu-west-1'" in message
    assert "us-east-1" in message
    assert "us-west-2" in message


def test_a_root_volume_costs_its_gib_at_the_gp3_price_of_a_month_of_730_hours() -> None:
    # GIVEN gp3 at $0.08 per GiB-month in both regions priced  WHEN  50 GiB, and one byte more (launched as 51 GiB)
    # THEN
    for region in REGIONS:
        assert root_volume_price(DEFAULT_NODE_STORAGE, region) == pytest.approx(50 * 0.08 / 730)
        assert root_volume_price(DEFAULT_NODE_STORAGE + 1, region) == pytest.approx(51 * 0.08 / 730)


def test_a_root_volume_in_an_unknown_region_names_the_known_ones() -> None:
    with pytest.raises(UnknownRegionError, match="no gp3 volume price in region 'eu-west-1'; known regions: us-east-1"):
        root_volume_price(DEFAULT_NODE_STORAGE, "eu-west-1")

"""The actuator on EC2 and the state table (moto): what a launch records, and what adopting an instance records."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from shared.adapters import aws
from shared.adapters.capacity_cache import DynamoCapacityCache
from shared.adapters.ec2_fleet import Ec2Fleet
from shared.adapters.memory_fleet import MemoryFleet
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.state_table import StateTable
from shared.domain.cluster_state import Market
from shared.domain.decision import Adopt, Launch, LaunchOption
from shared.domain.units import GiB
from shared.services.actuator import Actuator, FleetPorts
from shared.services.ports import LARGER_ROOT_VOLUMES

REGION = "us-west-2"
NOW = 1_700_000_000.0


@pytest.fixture
def ports(table: StateTable) -> FleetPorts:
    ec2 = aws.client("ec2", REGION)
    template: Any = ec2.create_launch_template(
        LaunchTemplateName="shoal-test-workers", LaunchTemplateData={"ImageId": "ami-12c6146b"}
    )
    fleet = Ec2Fleet(cluster="test", launch_template_id=template["LaunchTemplate"]["LaunchTemplateId"], client=ec2)
    return FleetPorts(fleet=fleet, nodes=DynamoNodeStore(table), capacity=DynamoCapacityCache(table))


def launch(node_storage: int | None) -> Launch:
    return Launch(
        offer_key="m5.2xlarge",
        count=2,
        market=Market.ON_DEMAND,
        bid=None,
        options=(LaunchOption(instance_type="m5.2xlarge", zone=None),),
        reason="test",
        node_storage=node_storage,
    )


def test_a_launchs_records_carry_the_root_volume_it_asked_for(ports: FleetPorts) -> None:
    # GIVEN a sized launch and an unsized one  WHEN the actuator carries them out
    actuator = Actuator(ports, now=NOW, capacity_failure_ttl=300.0)
    actuator.act([launch(300 * GiB), launch(None)], launch_key="r1", unavailable=set())
    # THEN the sized launch's nodes are recorded with its size, the others with none (the cluster's)
    assert actuator.tally.counts.launched == 4
    assert sorted(n.node_storage or 0 for n in ports.nodes.list_nodes()) == [0, 0, 300 * GiB, 300 * GiB]


def test_a_launch_the_volume_quota_shrank_is_recorded_at_the_clusters_size(ports: FleetPorts) -> None:
    # GIVEN a region whose EBS storage quota refuses larger root volumes (RunInstances answers VolumeLimitExceeded)
    client: Any = ports.fleet.client  # type: ignore[attr-defined]

    def refuse_sized(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        if any(key.startswith("BlockDeviceMapping") for key in params.get("body", {})):
            return FakeHttp(), {"Error": {"Code": "VolumeLimitExceeded", "Message": "injected"}}
        return None

    client.meta.events.register("before-call.ec2.RunInstances", refuse_sized)
    # WHEN the actuator carries out a sized launch
    actuator = Actuator(ports, now=NOW, capacity_failure_ttl=300.0)
    actuator.act([launch(300 * GiB)], launch_key="r1", unavailable=set())
    # THEN its nodes run, recorded with the cluster's volume (priced so), and the round reports the quota
    assert actuator.tally.counts.launched == 2
    assert [n.node_storage for n in ports.nodes.list_nodes()] == [None, None]
    assert actuator.tally.errors == ["launch m5.2xlarge as m5.2xlarge: VolumeLimitExceeded"]
    # AND rounds keep to the template's volume for a while (the quota is the region's, not the instance type's)
    assert ports.capacity.unavailable(NOW) == {LARGER_ROOT_VOLUMES}
    assert LARGER_ROOT_VOLUMES not in ports.capacity.unavailable(NOW + 301)


class FakeHttp:
    def __init__(self) -> None:
        self.status_code = 400
        self.headers: dict[str, str] = {}


def test_an_adopted_instance_is_recorded_with_the_root_volume_its_tag_names(ports: FleetPorts) -> None:
    # GIVEN sized nodes launched by a round that died before recording them
    (first, second) = ports.fleet.launch(launch(300 * GiB), idempotency_key="lost-round").instances
    # WHEN a later round adopts them as EC2 describes them
    actuator = Actuator(ports, now=NOW, capacity_failure_ttl=300.0)
    actuator.act(
        [Adopt(instances=tuple(ports.fleet.describe()), reason="no record")], launch_key="r2", unavailable=set()
    )
    # THEN their records carry the size the tag names
    assert {n.instance_id: n.node_storage for n in ports.nodes.list_nodes()} == {
        first.instance_id: 300 * GiB,
        second.instance_id: 300 * GiB,
    }


def test_the_in_memory_fleet_keeps_a_launchs_root_volume_as_ec2_does() -> None:
    fleet = MemoryFleet(zones=("us-west-2a",))
    option = LaunchOption(instance_type="c5.4xlarge", zone="us-west-2a")
    sized = Launch(offer_key="c5.4xlarge", count=1, market=Market.ON_DEMAND, bid=None, options=(option,), reason="t",
                   node_storage=170 * GiB)  # fmt: skip
    [instance] = fleet.launch(sized, idempotency_key="round-1").instances
    assert instance.node_storage == 170 * GiB
    # the same round's key with another size is another launch, as EC2's ClientToken makes it
    [other] = fleet.launch(replace(sized, node_storage=None), idempotency_key="round-1").instances
    assert other.instance_id != instance.instance_id and other.node_storage is None

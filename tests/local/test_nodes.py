"""The local cloud's nodes give each agent what a deployed worker's agent is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.ec2_fleet import CLUSTER_TAG, NODE_STORAGE_TAG
from shared.domain.resources import Resources
from shared.domain.scaling import offers_for
from shared.domain.settings import ClusterSettings
from shared.domain.units import GiB
from shared.local.clock import SimClock
from shared.local.nodes import InstanceView, LocalNodes, NodeEndpoints

ENDPOINTS = NodeEndpoints(
    queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
    dead_letter_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/dead",
    table_name="state",
    region="us-east-1",
)


def _nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, node_types: str | None) -> LocalNodes:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}.items():
        monkeypatch.setenv(name, value)
    offers = offers_for(ClusterSettings(name="t", node_types=node_types).validate()) if node_types else ()
    return LocalNodes(
        cluster="t", endpoints=ENDPOINTS, clock=SimClock(1.0), boot_delay=0.0, node_storage=0,
        work_root=tmp_path, offers=offers,
    )  # fmt: skip


def test_agents_leave_young_jobs_to_cheaper_node_types_as_deployed_ones_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the cluster's node types, as a deployed worker reads them from SHOAL_NODE_TYPES
    nodes = _nodes(tmp_path, monkeypatch, "c5.4xlarge:0.30,r5.2xlarge")
    # WHEN an agent starts on a spot c5.4xlarge and on an on-demand r5.2xlarge
    spot = nodes.agent_settings("i-1", "c5.4xlarge", spot=True, work=tmp_path).cheaper_first
    on_demand = nodes.agent_settings("i-2", "r5.2xlarge", spot=False, work=tmp_path).cheaper_first
    # THEN each knows its own price: the spot node its bid, the r5.2xlarge its on-demand price (each with its root
    # volume)
    assert spot is not None and spot.price == pytest.approx(0.30 + 50 * 0.08 / 730)
    assert on_demand is not None and on_demand.price > spot.price
    # AND the dearer node leaves a young one-core job to the cheaper type, which takes it at once
    one_core = Resources(cores=1, memory=2 * 2**30, disk=2**30)
    assert on_demand.leave(one_core, True, waited=0.0) is not None
    assert spot.leave(one_core, True, waited=0.0) is None
    # AND once the job has waited its hold-off, the dearer node takes it too
    assert on_demand.leave(one_core, True, waited=60.0) is None


def test_without_node_types_agents_take_any_job_that_fits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = _nodes(tmp_path, monkeypatch, None)
    assert nodes.agent_settings("i-1", "c5.4xlarge", spot=True, work=tmp_path).cheaper_first is None


def test_a_node_launched_with_a_grown_root_volume_gives_its_agent_that_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}.items():
        monkeypatch.setenv(name, value)
    nodes = LocalNodes(
        cluster="t", endpoints=ENDPOINTS, clock=SimClock(1.0), boot_delay=1e9, node_storage=50 * GiB,
        work_root=tmp_path,
    )  # fmt: skip
    # GIVEN an instance the launcher tagged with a 170 GiB root volume, and one it did not  WHEN the cloud sees them
    tags = {CLUSTER_TAG: "t", NODE_STORAGE_TAG: "170"}
    nodes.tick([InstanceView(instance_id="i-1", instance_type="c5.4xlarge", state="running", cluster="t", tags=tags),
                InstanceView(instance_id="i-2", instance_type="c5.4xlarge", state="running", cluster="t",
                             tags={CLUSTER_TAG: "t"})])  # fmt: skip
    # THEN the first node's agent gets that volume's disk (less the system's 8 GiB), the other the cluster's
    sized, plain = (nodes._nodes[i].node_storage for i in ("i-1", "i-2"))
    assert (sized, plain) == (170 * GiB, None)
    grown = nodes.agent_settings("i-1", "c5.4xlarge", spot=True, work=tmp_path, node_storage=sized)
    assert grown.capacity.disk == 162 * GiB
    assert nodes.agent_settings("i-2", "c5.4xlarge", spot=True, work=tmp_path).capacity.disk == 42 * GiB

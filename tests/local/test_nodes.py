"""The local cloud's nodes give each agent what a deployed worker's agent is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.domain.resources import Resources
from shared.domain.scaling import offers_for
from shared.domain.settings import ClusterSettings
from shared.local.clock import SimClock
from shared.local.nodes import LocalNodes, NodeEndpoints

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

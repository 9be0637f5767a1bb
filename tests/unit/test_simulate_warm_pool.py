"""The simulator bills a warm pool's stopped nodes for their root volumes, as EBS does."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.domain.catalog import root_volume_price
from shared.domain.settings import ClusterSettings
from shared.sim.engine import SimOptions, simulate
from shared.sim.trace import read_trace
from tests.unit.test_simulate import trace_line, write_trace

GiB = 2**30
GAP = 4 * 3600.0  # between the two jobs, the node waits stopped


@pytest.mark.parametrize("warm_pool_size", [0, 1])
def test_a_stopped_warm_pool_node_is_billed_for_its_root_volume(tmp_path: Path, warm_pool_size: int) -> None:
    # GIVEN one ten-minute job, another four hours later, on m5.2xlarge with 1 TiB root volumes
    lines = [trace_line(i, i * GAP, cores=8, memory_gib=8, wall=600, spot=False) for i in range(2)]
    trace = read_trace(write_trace(tmp_path / "t.jsonl", lines))
    settings = ClusterSettings(
        name="sim", node_types="m5.2xlarge", node_storage=1024 * GiB, max_node_storage=1024 * GiB,
        warm_pool_size=warm_pool_size,
    ).validate()  # fmt: skip
    sim = simulate(trace, SimOptions(settings=settings))
    report = sim.report
    # THEN what ran is billed at its price, and without a warm pool nothing else
    hours = sum(float(h) for h in report["node_hours"].values())  # type: ignore[union-attr]
    running = hours * (0.384 + root_volume_price(1024 * GiB, settings.region))
    stopped = float(report["cost"]) - running  # type: ignore[arg-type]
    if warm_pool_size == 0:
        assert stopped == pytest.approx(0.0, abs=1e-3)
    else:  # AND the node kept stopped between the jobs, and after them, is billed its volume (not its instance)
        assert report["completed"] == 2 and report["peak_nodes"] == 1
        volume_hours = stopped / root_volume_price(1024 * GiB, settings.region)
        stopped_hours = float(report["simulated_seconds"]) / 3600 - hours  # type: ignore[arg-type]
        assert 0.8 * GAP / 3600 < volume_hours == pytest.approx(stopped_hours, abs=0.05)

"""An independent checker for plans: replays placements and proves them feasible.

It knows nothing of lanes or groups: only jobs, nodes, start times and capacities.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from shared.domain.jobs import Shape
from shared.domain.node_types import Offer
from shared.domain.resources import Resources


def check_feasible(
    placed: Iterable[tuple[Shape, Offer, int, float]],
    node_counts: Mapping[str, int],
    target_time: float,
) -> int:
    """Raise AssertionError on any violation; return the number of placed jobs."""
    by_node: dict[tuple[str, int], list[tuple[float, float, Resources]]] = defaultdict(list)
    offers: dict[str, Offer] = {}
    count = 0
    for shape, offer, node, start in placed:
        count += 1
        offers[offer.key] = offer
        assert start <= target_time + 1e-6, f"job starts at {start} > target {target_time}"
        assert start >= 0
        assert shape.preemptible or not offer.spot, "a non-preemptible job was placed on spot"
        assert 0 <= node < node_counts[offer.key], f"node {node} of {offer.key} is outside the plan"
        end = start + max(shape.wall_time, 1e-3)
        by_node[(offer.key, node)].append((start, end, shape.resources))
    for (key, node), intervals in by_node.items():
        usable = offers[key].usable
        # Sweep: at each start instant, sum what runs then (ends are exclusive).
        for instant, _, _ in intervals:
            total = Resources()
            for start, end, need in intervals:
                if start <= instant < end:
                    total = total + need
            assert total.fits_in(usable), f"{key} node {node} over capacity at t={instant}: {total} > {usable}"
    return count

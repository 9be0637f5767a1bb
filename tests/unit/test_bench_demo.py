"""bench_demo's load check: busy and quiet p95 waits within 10 % of each other and both within the target, and
the spinning processes that make a machine busy start and stop with the block."""

from __future__ import annotations

import pytest

from benchmarks.bench_demo import cpu_load, load_verdict


@pytest.mark.parametrize(
    ("quiet", "busy", "ok", "says"),
    [
        ([1620.0, 1580.0, 1680.0], [1700.0, 1640.0, 1660.0], True, "busy/quiet 1.025 (within 10%); both within"),
        ([1500.0, 1500.0, 1500.0], [1680.0, 1700.0, 1650.0], False, "busy/quiet 1.120 (outside 10%)"),
        ([1750.0], [1850.0], False, "over the 30 min target"),
        ([1400.0, 1500.0], [1250.0, 1270.0], False, "busy/quiet 0.869 (outside 10%)"),
    ],
)
def test_the_load_verdict(quiet: list[float], busy: list[float], ok: bool, says: str) -> None:
    verdict, line = load_verdict(quiet, busy, 1800.0)
    assert verdict is ok
    assert says in line


def test_cpu_load_spins_for_the_block_only() -> None:
    with cpu_load(2) as spinners:
        assert len(spinners) == 2 and all(s.poll() is None for s in spinners)
    assert all(s.returncode is not None for s in spinners)
    with cpu_load(0) as none:
        assert none == []

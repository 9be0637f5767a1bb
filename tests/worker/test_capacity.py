"""Free-resource accounting: pure, table-driven and property-checked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.resources import Resources
from shared.domain.units import GiB
from shared.worker.capacity import CapacityLedger, Fit, shortfall

NODE = Resources(cores=4, memory=16 * GiB, disk=100 * GiB, accelerators=1)


@pytest.mark.parametrize(
    ("need", "expected"),
    [
        (Resources(cores=1, memory=GiB, disk=GiB), Fit.NOW),
        (Resources(cores=4, memory=16 * GiB, disk=100 * GiB, accelerators=1), Fit.NOW),
        (Resources(cores=5, memory=GiB, disk=GiB), Fit.NEVER),
        (Resources(cores=1, memory=17 * GiB, disk=GiB), Fit.NEVER),
        (Resources(cores=1, memory=GiB, disk=101 * GiB), Fit.NEVER),
        (Resources(cores=1, memory=GiB, disk=GiB, accelerators=2), Fit.NEVER),
    ],
)
def test_fit_on_an_empty_node(need: Resources, expected: Fit) -> None:
    # GIVEN an idle node  WHEN a job asks  THEN it fits now, or never when it is larger than the node
    assert CapacityLedger(NODE).fit(need) is expected


def test_a_job_that_fits_the_node_but_not_beside_the_running_ones_fits_later() -> None:
    # GIVEN a node with 3 of its 4 cores held
    ledger = CapacityLedger(NODE)
    assert ledger.reserve("a", Resources(cores=3, memory=GiB))
    # WHEN a 2-core job asks  THEN it fits later; a 1-core job fits now
    assert ledger.fit(Resources(cores=2)) is Fit.LATER
    assert ledger.fit(Resources(cores=1)) is Fit.NOW
    assert ledger.free() == Resources(cores=1, memory=15 * GiB, disk=100 * GiB, accelerators=1)


def test_reserve_refuses_what_does_not_fit_and_release_gives_it_back() -> None:
    # GIVEN a node holding the only accelerator
    ledger = CapacityLedger(NODE)
    assert ledger.reserve("gpu", Resources(cores=1, accelerators=1))
    # WHEN a second accelerator job and a duplicate id ask  THEN both are refused
    assert not ledger.reserve("gpu2", Resources(cores=1, accelerators=1))
    assert not ledger.reserve("gpu", Resources(cores=1))
    # WHEN the first is released  THEN the second fits
    ledger.release("gpu")
    assert ledger.reserve("gpu2", Resources(cores=1, accelerators=1))
    assert set(ledger.held) == {"gpu2"}


def test_a_node_with_no_free_cores_is_full() -> None:
    # GIVEN ten jobs of 0.1 core each on a 1-core node (floating sums must not leave a sliver)
    ledger = CapacityLedger(Resources(cores=1, memory=GiB))
    for index in range(10):
        assert ledger.reserve(str(index), Resources(cores=0.1))
    # THEN it is full and an eleventh job fits later
    assert ledger.is_full()
    assert ledger.fit(Resources(cores=0.1)) is Fit.LATER


def test_shortfall_names_what_is_missing() -> None:
    # GIVEN a job needing more memory and accelerators than are free  THEN the message names both
    text = shortfall(Resources(cores=1, memory=8, accelerators=1), Resources(cores=2, memory=4))
    assert "memory" in text and "accelerators" in text and "cores" not in text


jobs = st.lists(
    st.builds(
        Resources,
        cores=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
        memory=st.integers(0, 8).map(lambda n: n * GiB),
        disk=st.integers(0, 40).map(lambda n: n * GiB),
        accelerators=st.integers(0, 1),
    ),
    max_size=20,
)


@given(jobs)
def test_never_holds_more_than_the_node_has(needs: list[Resources]) -> None:
    # GIVEN any sequence of jobs  WHEN each is reserved if it fits  THEN free never goes negative
    ledger = CapacityLedger(NODE)
    for index, need in enumerate(needs):
        ledger.reserve(str(index), need)
        free = ledger.free()
        assert free.cores >= -1e-9 and free.memory >= 0 and free.disk >= 0 and free.accelerators >= 0
    # AND releasing everything gives the whole node back
    for index in range(len(needs)):
        ledger.release(str(index))
    assert ledger.free() == NODE

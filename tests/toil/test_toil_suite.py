"""Toil's own batch-system tests, run against ``ShoalBatchSystem`` on the local cloud.

``hidden.AbstractBatchSystemTest`` drives the batch system directly (issue, run, kill, environment,
resource checks); ``AbstractBatchSystemJobTest`` runs whole Toil workflows with ``--batchSystem shoal``
(core accounting under concurrency, OMP_NUM_THREADS). One agent whose node has ``cpuCount`` cores
(``min(cpu_count(), 4)``, what the concurrency test expects the cluster to hold) runs the jobs as real
processes. The workflow tests need Toil's plugin loader to find ``toil_batch_system_shoal`` on sys.path
(the repository root: ``pythonpath`` in pyproject).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from toil.batchSystems.abstractBatchSystem import AbstractBatchSystem
from toil.test.batchSystems.batchSystemTest import AbstractBatchSystemJobTest, hidden, numCores

import toil_batch_system_shoal
from tests.toil.local_shoal import LocalShoal, local_shoal

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shoal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalShoal]:
    with local_shoal() as cluster:
        cluster.start_agent(
            "i-toiltest0001", cores=AbstractBatchSystemJobTest.cpuCount, work_root=tmp_path_factory.mktemp("nodes")
        )
        yield cluster


class TestShoalBatchSystem(hidden.AbstractBatchSystemTest):
    @pytest.fixture(autouse=True)
    def _cluster(self, shoal: LocalShoal) -> None:
        self.shoal = shoal

    def supportsWallTime(self) -> bool:
        return True

    def createBatchSystem(self) -> AbstractBatchSystem:
        # The same limits Toil's other batch-system tests use.
        return toil_batch_system_shoal.ShoalBatchSystem(
            config=self.config, maxCores=numCores, maxMemory=1e9, maxDisk=2001
        )


class TestShoalBatchSystemJob(AbstractBatchSystemJobTest):
    @pytest.fixture(autouse=True)
    def _cluster(self, shoal: LocalShoal) -> None:
        self.shoal = shoal

    def getBatchSystemName(self) -> str:
        return "shoal"


def test_the_shim_is_where_the_loader_looks() -> None:
    assert Path(toil_batch_system_shoal.__file__).parent == Path(__file__).resolve().parents[2]

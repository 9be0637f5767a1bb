"""Issue 13: worker input that used to be accepted and then broke the agent.

``SHOAL_CORES=nan`` and friends are refused by the environment reader with a line naming the variable; a
job id of 3,000 characters (the agent took it, failed and returned it 574 times in 15 s) is refused by the
job parser, so the agent dead-letters it once, with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.worker.agent import Outcome
from shared.worker.config import WorkerConfig, WorkerConfigError
from tests.worker.conftest import Cluster
from tests.worker.test_main import base_env


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SHOAL_CORES", "nan"),
        ("SHOAL_CORES", "inf"),
        ("SHOAL_CORES", "0"),
        ("SHOAL_HEARTBEAT_INTERVAL", "nan"),
        ("SHOAL_HEARTBEAT_INTERVAL", "0"),
        ("SHOAL_HEARTBEAT_INTERVAL", "inf"),
        ("SHOAL_ACCELERATORS", "1e400"),
        ("SHOAL_VISIBILITY_TIMEOUT", "1e300"),
    ],
)
def test_a_non_finite_or_zero_setting_names_its_variable(tmp_path: Path, variable: str, value: str) -> None:
    # GIVEN the worker's environment with one hostile number
    env = base_env(tmp_path, **{variable: value})
    # WHEN read  THEN a one-line error names the variable (before: an agent with nan cores, or a busy loop)
    with pytest.raises(WorkerConfigError) as raised:
        WorkerConfig.from_env(env)
    assert str(raised.value).startswith(f"{variable}=") and "\n" not in str(raised.value)


def test_an_over_long_job_id_is_dead_lettered_once_with_the_reason(cluster: Cluster) -> None:
    # GIVEN a well-formed message whose job id is 3,000 characters
    job = {"id": "x" * 3000, "cores": 1, "memory": "1GiB", "disk": "1GiB", "wall_time": 60}
    body = json.dumps({"v": 1, "job": job})
    cluster.send_raw(body)
    agent = cluster.agent()
    # WHEN the agent receives it
    assert agent.step() == [Outcome.INVALID]
    # THEN it is dead-lettered once, saying why, and gone from the job queue
    [dead] = cluster.dead_letters()
    assert dead["body"] == body
    assert "field 'id' is 3000 bytes long; a job id may have at most 512" in dead["reason"]
    assert cluster.counts() == (0, 0)

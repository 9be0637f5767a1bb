"""``shoal-worker``: its settings from the environment, and the real process evacuating on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.domain.catalog import instance_type
from shared.domain.cheaper_first import HOLD_OFF
from shared.domain.resources import Resources
from shared.domain.units import GiB
from shared.worker.config import WorkerConfig, WorkerConfigError
from shared.worker.imds import ImdsClient
from tests.worker.conftest import wait_until
from tests.worker.fake_imds import FakeImds

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    server = FakeImds(instance_id="i-from-imds", region="eu-west-1").start()
    yield server
    server.stop()


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "SHOAL_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/jobs",
        "SHOAL_DLQ_URL": "https://sqs.eu-west-1.amazonaws.com/1/dlq",
        "SHOAL_TABLE_NAME": "shoal-state",
        "SHOAL_WORK_DIR": str(tmp_path / "work"),
        "SHOAL_IMDS_URL": "off",
        "SHOAL_NODE_ID": "i-env",
        "AWS_REGION": "eu-west-1",
    }
    env.update(extra)
    return env


def test_settings_from_the_environment_with_capacity_overrides(tmp_path: Path) -> None:
    # GIVEN the worker's variables with capacity in human units
    env = base_env(tmp_path, SHOAL_CORES="3.5", SHOAL_MEMORY="12GiB", SHOAL_DISK="100GiB", SHOAL_ACCELERATORS="1")
    # WHEN they are read
    config = WorkerConfig.from_env(env)
    # THEN every setting is taken, the work dir exists, and IMDS is off
    assert (config.queue_url, config.table_name, config.region) == (env["SHOAL_QUEUE_URL"], "shoal-state", "eu-west-1")
    assert config.agent.node_id == "i-env" and config.imds_url is None
    capacity = config.agent.capacity
    assert (capacity.cores, capacity.memory, capacity.disk, capacity.accelerators) == (3.5, 12 * GiB, 100 * GiB, 1)
    assert config.agent.work_root.is_dir()


def test_capacity_defaults_come_from_the_machine_and_the_cgroup(tmp_path: Path) -> None:
    # GIVEN a machine with 8 GiB and a container limited to 2 GiB
    meminfo, cgroup = tmp_path / "meminfo", tmp_path / "memory.max"
    meminfo.write_text(f"MemTotal:       {8 * GiB // 1024} kB\nMemFree: 1 kB\n")
    cgroup.write_text(f"{2 * GiB}\n")
    # WHEN capacity is not set  THEN it is the CPUs this process may use, the lower memory, the free disk
    config = WorkerConfig.from_env(base_env(tmp_path), meminfo=meminfo, cgroup_memory=cgroup)
    assert config.agent.capacity.cores == len(os.sched_getaffinity(0))
    assert config.agent.capacity.memory == 2 * GiB
    assert config.agent.capacity.disk > 0 and config.agent.capacity.accelerators == 0
    # AND without a cgroup limit ("max") it is MemTotal
    cgroup.write_text("max\n")
    assert (
        WorkerConfig.from_env(base_env(tmp_path), meminfo=meminfo, cgroup_memory=cgroup).agent.capacity.memory
        == 8 * GiB
    )


def test_node_id_and_region_come_from_instance_metadata(tmp_path: Path, imds: FakeImds) -> None:
    # GIVEN no node id or region in the environment, and IMDS reachable
    env = base_env(tmp_path, SHOAL_IMDS_URL=imds.url)
    del env["SHOAL_NODE_ID"], env["AWS_REGION"]
    # WHEN the settings are read  THEN IMDS supplies both
    config = WorkerConfig.from_env(env, imds=ImdsClient(imds.url))
    assert (config.agent.node_id, config.region, config.imds_url) == ("i-from-imds", "eu-west-1", imds.url)


def test_node_type_and_market_come_from_instance_metadata(tmp_path: Path, imds: FakeImds) -> None:
    # GIVEN the cluster's node types in the environment, an on-demand m5.24xlarge in IMDS ("normal" life cycle)
    env = base_env(
        tmp_path, SHOAL_IMDS_URL=imds.url, SHOAL_NODE_TYPES="c5.4xlarge:0.30,m5.24xlarge", AWS_REGION="us-east-1"
    )
    # WHEN the settings are read
    cost = WorkerConfig.from_env(env, imds=ImdsClient(imds.url)).agent.cheaper_first
    # THEN the agent knows what it costs (m5.24xlarge on demand) and leaves a young small job to spot
    # (with its 50 GiB root volume)
    assert cost is not None and cost.price == pytest.approx(
        instance_type("m5.24xlarge").price("us-east-1") + 50 * 0.08 / 730
    )
    small = Resources(cores=1, memory=GiB, disk=GiB)
    assert cost.leave(small, True, waited=0.0) is not None
    assert cost.leave(small, True, waited=HOLD_OFF) is None


def test_an_instance_type_missing_from_instance_metadata_is_named(tmp_path: Path, imds: FakeImds) -> None:
    del imds.paths["/latest/meta-data/instance-type"]
    env = base_env(tmp_path, SHOAL_IMDS_URL=imds.url, SHOAL_NODE_TYPES="m5.24xlarge", AWS_REGION="us-east-1")
    with pytest.raises(WorkerConfigError, match="SHOAL_INSTANCE_TYPE is not set and the instance type is not in"):
        WorkerConfig.from_env(env, imds=ImdsClient(imds.url))


def test_without_node_types_or_with_a_type_not_among_them_the_agent_takes_any_job(tmp_path: Path) -> None:
    assert WorkerConfig.from_env(base_env(tmp_path)).agent.cheaper_first is None
    env = base_env(tmp_path, SHOAL_NODE_TYPES="c5.4xlarge:0.30", SHOAL_INSTANCE_TYPE="t3.large", SHOAL_MARKET="spot")
    env["AWS_REGION"] = "us-east-1"
    assert WorkerConfig.from_env(env).agent.cheaper_first is None
    env["SHOAL_INSTANCE_TYPE"] = "c5.4xlarge"
    assert WorkerConfig.from_env(env).agent.cheaper_first is not None


NODE_TYPES = {"SHOAL_NODE_TYPES": "c5.4xlarge:0.30,m5.24xlarge", "SHOAL_INSTANCE_TYPE": "m5.24xlarge"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({**NODE_TYPES, "SHOAL_MARKET": "reserved"}, "SHOAL_MARKET='reserved' must be spot or on-demand"),
        ({**NODE_TYPES, "SHOAL_MARKET": ""}, "SHOAL_MARKET is not set and SHOAL_IMDS_URL=off"),
        ({**NODE_TYPES, "SHOAL_MARKET": "spot", "SHOAL_NODE_TYPES": "c5.4xlarge:x"}, "SHOAL_NODE_TYPES='c5.4xlarge:x'"),
        ({**NODE_TYPES, "SHOAL_MARKET": "spot"}, "SHOAL_NODE_TYPES=.*no gp3 volume price in region 'eu-west-1'"),
        (
            {**NODE_TYPES, "SHOAL_MARKET": "on-demand", "SHOAL_NODE_TYPES": "m5.24xlarge"},
            "no on-demand price for m5.24xlarge in region 'eu-west-1'",
        ),
        ({"SHOAL_QUEUE_URL": ""}, "SHOAL_QUEUE_URL is not set"),
        ({"SHOAL_TABLE_NAME": ""}, "SHOAL_TABLE_NAME is not set"),
        ({"SHOAL_NODE_ID": ""}, "SHOAL_NODE_ID is not set and SHOAL_IMDS_URL=off"),
        ({"SHOAL_CORES": "many"}, "SHOAL_CORES='many' is not a number"),
        ({"SHOAL_ACCELERATORS": "1.5"}, "SHOAL_ACCELERATORS='1.5' must be a whole number"),
        ({"SHOAL_MEMORY": "12 parsecs"}, "SHOAL_MEMORY: "),
        ({"SHOAL_VISIBILITY_TIMEOUT": "0"}, "visibility_timeout must be"),
    ],
)
def test_bad_settings_name_the_variable(tmp_path: Path, change: dict[str, str], message: str) -> None:
    # GIVEN one bad or missing variable  THEN the error names it
    with pytest.raises(WorkerConfigError, match=message.replace("(", r"\(")):
        WorkerConfig.from_env(base_env(tmp_path, **change))


def test_the_worker_process_evacuates_on_sigterm_and_exits_cleanly(tmp_path: Path) -> None:
    # GIVEN a real shoal-worker process (against moto inside it) running a long job
    started = tmp_path / "started"
    job = {
        "id": "long",
        "cores": 1,
        "memory": "64MiB",
        "disk": "1MiB",
        "wall_time": 60,
        "command": f"touch {started}; sleep 60",
    }
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SHOAL_", "AWS_"))},
        **base_env(tmp_path, SHOAL_NODE_ID="i-proc", SHOAL_POLL_WAIT="0", SHOAL_CORES="2", SHOAL_MEMORY="1GiB"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.worker.worker_process", json.dumps([job])],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: started.exists() or process.poll() is not None, timeout=30, what="the job to start")
        assert process.poll() is None, process.communicate()[0]
        # WHEN the container is stopped (SIGTERM)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    # THEN it exits 0 having put the job back in the queue, visible at once, and marked its node
    assert process.returncode == 0, output
    result = json.loads(output.split("RESULT ", 1)[1])
    assert result == {
        "exit_code": 0,
        "jobs": {"long": "QUEUED"},
        "visible": 1,
        "in_flight": 0,
        "node_state": "INTERRUPTED",
    }
    assert "evacuating 1 job(s): SIGTERM" in output

"""What ``shoal-worker`` reads from its environment, in one place, with errors that name the variable.

The worker user data sets these on the appliance container. Capacity defaults to what the machine
(or the container's cgroup) has; ``SHOAL_CORES``/``SHOAL_MEMORY``/``SHOAL_DISK``/``SHOAL_ACCELERATORS``
override it, with sizes in human units (``30GiB``).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.domain.resources import Resources
from shared.domain.units import UnitError, parse_size
from shared.worker.agent import AgentSettings, AgentSettingsError
from shared.worker.imds import IMDS_URL_VARIABLE, ImdsClient, ImdsError

DEFAULT_WORK_DIR = "/var/lib/shoal/work"
MAX_NUMBER = 1e9  # cores, seconds, accelerators: far beyond any machine, and still exact as an int
IMDS_OFF = "off"  # SHOAL_IMDS_URL=off: not on EC2 (local runs); no spot watch, node id and region from env

VARIABLES = (
    "SHOAL_QUEUE_URL",
    "SHOAL_DLQ_URL",
    "SHOAL_TABLE_NAME",
    "SHOAL_NODE_ID",
    "SHOAL_WORK_DIR",
    "SHOAL_CORES",
    "SHOAL_MEMORY",
    "SHOAL_DISK",
    "SHOAL_ACCELERATORS",
    "SHOAL_VISIBILITY_TIMEOUT",
    "SHOAL_POLL_WAIT",
    "SHOAL_HEARTBEAT_INTERVAL",
    "SHOAL_ENFORCE_MEMORY",
    "SHOAL_MAX_PREEMPTIONS",
    IMDS_URL_VARIABLE,
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


class WorkerConfigError(ValueError):
    """A worker setting missing or malformed; the message names the variable and how to fix it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    queue_url: str
    dead_letter_queue_url: str
    table_name: str
    region: str
    agent: AgentSettings
    imds_url: str | None  # None: IMDS off

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        imds: ImdsClient | None = None,
        meminfo: Path = Path("/proc/meminfo"),
        cgroup_memory: Path = Path("/sys/fs/cgroup/memory.max"),
    ) -> WorkerConfig:
        env = os.environ if environ is None else environ

        def need(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise WorkerConfigError(f"environment variable {name} is not set; the worker user data sets it")
            return value

        queue_url, dead_letter_queue_url, table_name = (
            need("SHOAL_QUEUE_URL"),
            need("SHOAL_DLQ_URL"),
            need("SHOAL_TABLE_NAME"),
        )
        imds_setting = env.get(IMDS_URL_VARIABLE, "").strip()
        client = None if imds_setting.lower() == IMDS_OFF else (imds or ImdsClient(imds_setting or None, environ=env))

        def from_imds(name: str, what: str, read: Callable[[ImdsClient], str]) -> str:
            value = env.get(name, "").strip()
            if value:
                return value
            if client is None:
                raise WorkerConfigError(f"{name} is not set and {IMDS_URL_VARIABLE}=off: set {name} to the {what}")
            try:
                return read(client)
            except ImdsError as error:
                raise WorkerConfigError(
                    f"{name} is not set and the {what} is not in instance metadata: {error}"
                ) from None

        work_root = Path(env.get("SHOAL_WORK_DIR", "").strip() or DEFAULT_WORK_DIR)
        try:
            work_root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WorkerConfigError(f"SHOAL_WORK_DIR {str(work_root)!r} cannot be created: {error}") from None

        region = env.get("AWS_REGION", "").strip() or from_imds("AWS_DEFAULT_REGION", "AWS region", ImdsClient.region)
        capacity = Resources(
            cores=_number(env, "SHOAL_CORES", default=float(_cpu_count()), positive=True),
            memory=_size(env, "SHOAL_MEMORY", default=lambda: _memory_bytes(meminfo, cgroup_memory)),
            disk=_size(env, "SHOAL_DISK", default=lambda: shutil.disk_usage(work_root).free),
            accelerators=int(_number(env, "SHOAL_ACCELERATORS", default=0.0, whole=True)),
        )
        try:
            agent = AgentSettings(
                node_id=from_imds("SHOAL_NODE_ID", "instance id", ImdsClient.instance_id),
                capacity=capacity,
                work_root=work_root,
                visibility_timeout=int(_number(env, "SHOAL_VISIBILITY_TIMEOUT", default=120.0, whole=True)),
                poll_wait=int(_number(env, "SHOAL_POLL_WAIT", default=20.0, whole=True)),
                heartbeat_interval=_number(env, "SHOAL_HEARTBEAT_INTERVAL", default=30.0, positive=True),
                enforce_memory=env.get("SHOAL_ENFORCE_MEMORY", "1").strip().lower() not in ("0", "false", "no"),
                max_preemptions=int(_number(env, "SHOAL_MAX_PREEMPTIONS", default=2.0, whole=True, positive=True)),
            )
        except AgentSettingsError as error:
            raise WorkerConfigError(str(error)) from None
        return cls(
            queue_url=queue_url,
            dead_letter_queue_url=dead_letter_queue_url,
            table_name=table_name,
            region=region,
            agent=agent,
            imds_url=None if client is None else client.base_url,
        )


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this container may use, not the host's
    except AttributeError:  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


def _memory_bytes(meminfo: Path, cgroup_memory: Path) -> int:
    """MemTotal, or the container's cgroup v2 limit when that is lower."""
    total = 0
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
            break
    try:
        limit = cgroup_memory.read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def _number(env: Mapping[str, str], name: str, *, default: float, whole: bool = False, positive: bool = False) -> float:
    """A finite number, >= 0 (> 0 when ``positive``); nan and inf are not numbers of anything here."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise WorkerConfigError(f"{name}={raw[:40]!r} is not a number") from None
    kind = f"{'whole ' if whole else ''}number {'> 0' if positive else '>= 0'}"
    if not math.isfinite(value):
        raise WorkerConfigError(f"{name}={raw[:40]!r} must be a finite {kind}")
    if value < 0 or (positive and value == 0) or (whole and not value.is_integer()):
        raise WorkerConfigError(f"{name}={raw[:40]!r} must be a {kind}")
    if value > MAX_NUMBER:
        raise WorkerConfigError(f"{name}={raw[:40]!r} is too large (at most {MAX_NUMBER:g})")
    return value


def _size(env: Mapping[str, str], name: str, *, default: Callable[[], int]) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default()
    try:
        return parse_size(raw)
    except UnitError as error:
        raise WorkerConfigError(f"{name}: {error}") from None

"""The one reader of Shoal's environment variables, with one kind of error: it names the variable.

Three units read their settings from the environment; each gets its own typed result, read here:

- the Lambda functions: ``read_function_environment`` → ``FunctionEnvironment`` (the stack writes it with
  ``FunctionEnvironment.to_env``, from the same settings model);
- ``shoal submit``, the Python API and the Toil plugin: ``read_submit_config`` (flags override variables);
- ``shoal-worker``: ``read_worker_environment`` (values only; ``shared.worker.config`` makes the agent's
  settings of them). Instance metadata fills the node id and region when the variables do not.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shared.domain.catalog import DEFAULT_NODE_STORAGE
from shared.domain.resources import Resources
from shared.domain.settings import ClusterSettings
from shared.domain.units import UnitError, parse_size
from shared.services.environment import FunctionEnvironment, FunctionEnvironmentError
from shared.services.submit import SubmitConfig, SubmitConfigError

MAX_NUMBER = 1e9  # cores, seconds, accelerators: far beyond any machine, and still exact as an int
IMDS_URL_VARIABLE = "SHOAL_IMDS_URL"
IMDS_OFF = "off"  # SHOAL_IMDS_URL=off: not on EC2 (local runs); no spot watch, node id and region from env
DEFAULT_WORK_DIR = "/var/lib/shoal/work"


class Environment:
    """Variables of one environment (``os.environ`` unless given); errors are ``error`` naming the variable."""

    def __init__(self, environ: Mapping[str, str] | None, error: Callable[[str], Exception]) -> None:
        self.env = os.environ if environ is None else environ
        self.error = error

    def get(self, name: str, default: str = "") -> str:
        return self.env.get(name, "").strip() or default

    def need(self, name: str, how: str) -> str:
        value = self.get(name)
        if not value:
            raise self.error(f"environment variable {name} is not set; {how}")
        return value

    def number(self, name: str, *, default: float, whole: bool = False, positive: bool = False) -> float:
        """A finite number, >= 0 (> 0 when ``positive``); nan and inf are not numbers of anything here."""
        raw = self.get(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise self.error(f"{name}={raw[:40]!r} is not a number") from None
        kind = f"{'whole ' if whole else ''}number {'> 0' if positive else '>= 0'}"
        if not math.isfinite(value):
            raise self.error(f"{name}={raw[:40]!r} must be a finite {kind}")
        if value < 0 or (positive and value == 0) or (whole and not value.is_integer()):
            raise self.error(f"{name}={raw[:40]!r} must be a {kind}")
        if value > MAX_NUMBER:
            raise self.error(f"{name}={raw[:40]!r} is too large (at most {MAX_NUMBER:g})")
        return value

    def size(self, name: str, *, default: Callable[[], int]) -> int:
        raw = self.get(name)
        if not raw:
            return default()
        try:
            return parse_size(raw)
        except UnitError as error:
            raise self.error(f"{name}: {error}") from None


# ---- the Lambda functions --------------------------------------------------------------------------------


def read_function_environment(environ: Mapping[str, str] | None = None) -> FunctionEnvironment:
    env = Environment(environ, FunctionEnvironmentError)
    deployed = "deploy with the Shoal stack"
    try:
        raw_settings = json.loads(env.need("SHOAL_CLUSTER_SETTINGS", deployed))
    except json.JSONDecodeError as error:
        raise FunctionEnvironmentError(f"SHOAL_CLUSTER_SETTINGS is not JSON: {error}") from None
    return FunctionEnvironment(
        cluster=ClusterSettings.from_mapping(raw_settings),
        table_name=env.need("SHOAL_TABLE_NAME", deployed),
        queue_url=env.need("SHOAL_QUEUE_URL", deployed),
        dead_letter_queue_url=env.need("SHOAL_DLQ_URL", deployed),
        launch_template_id=env.need("SHOAL_LAUNCH_TEMPLATE_ID", deployed),
        event_bus_name=env.get("SHOAL_EVENT_BUS_NAME", "default"),
        subnet_ids=tuple(s for s in env.get("SHOAL_SUBNET_IDS").split(",") if s),
        teardown_state_machine_arn=env.get("SHOAL_TEARDOWN_STATE_MACHINE_ARN"),
        cached_repository=env.get("SHOAL_CACHED_REPOSITORY"),
    )


# ---- shoal submit, the Python API, the Toil plugin -------------------------------------------------------


def read_submit_config(environ: Mapping[str, str] | None = None, **overrides: str | None) -> SubmitConfig:
    """Settings from ``overrides`` (e.g. CLI flags; None: not given), else the environment."""
    env = Environment(environ, SubmitConfigError)
    sources = {
        "table_name": ("--table", "SHOAL_TABLE_NAME"),
        "queue_url": ("--queue-url", "SHOAL_QUEUE_URL"),
        "cluster": ("--cluster", "SHOAL_CLUSTER_NAME"),
    }
    values: dict[str, str] = {}
    for field_name, (flag, variable) in sources.items():
        value = overrides.get(field_name) or env.env.get(variable)
        if not value:
            raise SubmitConfigError(f"no {field_name.replace('_', ' ')} given; pass {flag} or set {variable}")
        values[field_name] = value
    return SubmitConfig(
        **values,
        region=overrides.get("region") or env.env.get("SHOAL_REGION") or None,
        event_bus_name=overrides.get("event_bus_name") or env.env.get("SHOAL_EVENT_BUS_NAME") or "default",
    )


# ---- shoal-worker ----------------------------------------------------------------------------------------


class InstanceMetadata(Protocol):
    """Where a worker on EC2 learns its instance id and region (IMDSv2); raises ``LookupError`` if it cannot."""

    base_url: str

    def instance_id(self) -> str: ...

    def region(self) -> str: ...

    def instance_type(self) -> str: ...

    def lifecycle(self) -> str: ...  # "spot" or "on-demand"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerEnvironment:
    queue_url: str
    dead_letter_queue_url: str
    table_name: str
    region: str
    node_id: str
    capacity: Resources
    work_root: Path
    visibility_timeout: int
    poll_wait: int
    heartbeat_interval: float
    enforce_memory: bool
    max_preemptions: int  # spot reclaims a job may suffer before it runs on on-demand nodes only
    imds_url: str | None  # None: IMDS off
    # the cluster's node types, and this node's type and market: "" when SHOAL_NODE_TYPES is not set (then the
    # agent takes any job that fits; with it, it leaves young jobs to cheaper types: shared.domain.cheaper_first)
    node_types: str = ""
    node_storage: int = 0
    instance_type: str = ""
    spot: bool = False


def read_worker_environment(
    environ: Mapping[str, str] | None,
    *,
    error: Callable[[str], Exception],
    metadata: Callable[[str | None], InstanceMetadata],
    meminfo: Path = Path("/proc/meminfo"),
    cgroup_memory: Path = Path("/sys/fs/cgroup/memory.max"),
) -> WorkerEnvironment:
    """The worker's settings; ``metadata(url)`` opens instance metadata (url None: the default address)."""
    env = Environment(environ, error)
    user_data = "the worker user data sets it"
    queue_url, dead_letter_queue_url = env.need("SHOAL_QUEUE_URL", user_data), env.need("SHOAL_DLQ_URL", user_data)
    table_name = env.need("SHOAL_TABLE_NAME", user_data)
    imds_setting = env.get(IMDS_URL_VARIABLE)
    client = None if imds_setting.lower() == IMDS_OFF else metadata(imds_setting or None)

    def from_imds(name: str, what: str, read: Callable[[InstanceMetadata], str]) -> str:
        value = env.get(name)
        if value:
            return value
        if client is None:
            raise error(f"{name} is not set and {IMDS_URL_VARIABLE}=off: set {name} to the {what}")
        try:
            return read(client)
        except LookupError as failure:
            raise error(f"{name} is not set and the {what} is not in instance metadata: {failure}") from None

    work_root = Path(env.get("SHOAL_WORK_DIR", DEFAULT_WORK_DIR))
    try:
        work_root.mkdir(parents=True, exist_ok=True)
    except OSError as failure:
        raise error(f"SHOAL_WORK_DIR {str(work_root)!r} cannot be created: {failure}") from None
    region = env.get("AWS_REGION") or from_imds("AWS_DEFAULT_REGION", "AWS region", lambda c: c.region())
    node_types, node_storage, instance_type, spot = _node_type(env, from_imds)
    capacity = Resources(
        cores=env.number("SHOAL_CORES", default=float(_cpu_count()), positive=True),
        memory=env.size("SHOAL_MEMORY", default=lambda: _memory_bytes(meminfo, cgroup_memory)),
        disk=env.size("SHOAL_DISK", default=lambda: shutil.disk_usage(work_root).free),
        accelerators=int(env.number("SHOAL_ACCELERATORS", default=0.0, whole=True)),
    )
    return WorkerEnvironment(
        queue_url=queue_url,
        dead_letter_queue_url=dead_letter_queue_url,
        table_name=table_name,
        region=region,
        node_id=from_imds("SHOAL_NODE_ID", "instance id", lambda c: c.instance_id()),
        capacity=capacity,
        work_root=work_root,
        visibility_timeout=int(env.number("SHOAL_VISIBILITY_TIMEOUT", default=120.0, whole=True)),
        poll_wait=int(env.number("SHOAL_POLL_WAIT", default=20.0, whole=True)),
        heartbeat_interval=env.number("SHOAL_HEARTBEAT_INTERVAL", default=30.0, positive=True),
        enforce_memory=env.get("SHOAL_ENFORCE_MEMORY", "1").lower() not in ("0", "false", "no"),
        max_preemptions=int(env.number("SHOAL_MAX_PREEMPTIONS", default=2.0, whole=True, positive=True)),
        imds_url=None if client is None else client.base_url,
        node_types=node_types,
        node_storage=node_storage,
        instance_type=instance_type,
        spot=spot,
    )


def _node_type(env: Environment, from_imds: Callable[..., str]) -> tuple[str, int, str, bool]:
    """The cluster's node types, node storage, and this node's own type and market (spot?), when the user data
    names the node types; else nothing."""
    node_types = env.get("SHOAL_NODE_TYPES")
    if not node_types:
        return "", 0, "", False
    market = from_imds("SHOAL_MARKET", "instance market (spot or on-demand)", lambda c: c.lifecycle())
    if market not in ("spot", "on-demand"):
        raise env.error(f"SHOAL_MARKET={market[:40]!r} must be spot or on-demand")
    storage = env.size("SHOAL_NODE_STORAGE", default=lambda: DEFAULT_NODE_STORAGE)
    instance_type = from_imds("SHOAL_INSTANCE_TYPE", "instance type", lambda c: c.instance_type())
    return node_types, storage, instance_type, market == "spot"


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

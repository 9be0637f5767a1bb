"""Where the Toil batch system sends jobs: its ``--shoal*`` options, else the ``SHOAL_*`` environment.

The same variables ``shoal submit`` reads (``SubmitConfig``): ``SHOAL_TABLE_NAME``, ``SHOAL_QUEUE_URL``,
``SHOAL_CLUSTER_NAME``, ``SHOAL_REGION``, ``SHOAL_EVENT_BUS_NAME``. With only a cluster name, the table and
queue are looked up in the cluster stack's CloudFormation outputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.domain.units import UnitError, parse_duration
from shared.services.submit import SubmitConfig

DEFAULT_WALL_TIME = 600.0  # seconds: the scaler's estimate for a job that names no walltime (learned per name)
DEFAULT_POLL_INTERVAL = 1.0
# Toil saves the leader's environment in the job store (environment.pickle) and every worker applies it.
STATIC_AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def static_key_warning(environ: Mapping[str, str]) -> str | None:
    """What to tell a leader whose environment holds AWS keys (Toil would hand them to every job), or None."""
    found = [name for name in STATIC_AWS_KEYS if environ.get(name)]
    if not found:
        return None
    return (
        f"the leader's environment has {', '.join(found)}: Toil saves it in the job store (environment.pickle) and "
        "every worker loads it, so every job would run with these keys; give the leader an instance profile or "
        "keep the keys in ~/.aws files (docs/toil.md, step 3)"
    )


class ShoalToilConfigError(ValueError):
    """A Shoal setting of the Toil batch system is missing or malformed; names the option and variable."""


# option attribute (Toil's config) → (command-line flag, environment variable)
OPTIONS: Mapping[str, tuple[str, str]] = {
    "shoal_cluster": ("--shoalCluster", "SHOAL_CLUSTER_NAME"),
    "shoal_table": ("--shoalTable", "SHOAL_TABLE_NAME"),
    "shoal_queue_url": ("--shoalQueueUrl", "SHOAL_QUEUE_URL"),
    "shoal_region": ("--shoalRegion", "SHOAL_REGION"),
    "shoal_event_bus": ("--shoalEventBus", "SHOAL_EVENT_BUS_NAME"),
    "shoal_poll_interval": ("--shoalPollInterval", "SHOAL_TOIL_POLL_INTERVAL"),
    "shoal_default_wall_time": ("--shoalDefaultWallTime", "SHOAL_TOIL_DEFAULT_WALL_TIME"),
    "shoal_job_image": ("--shoalJobImage", "SHOAL_TOIL_JOB_IMAGE"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ShoalToilSettings:
    cluster: str | None
    table_name: str | None
    queue_url: str | None
    region: str | None
    event_bus_name: str
    poll_interval: float = DEFAULT_POLL_INTERVAL
    default_wall_time: float = DEFAULT_WALL_TIME
    job_image: str | None = None  # None: jobs run in the worker's own environment (the appliance)

    @classmethod
    def read(cls, option: Callable[[str], object], environ: Mapping[str, str] | None = None) -> ShoalToilSettings:
        """From ``option(attribute)`` (Toil's config; None: not given), else the environment."""
        env = os.environ if environ is None else environ

        def value(attribute: str) -> str | None:
            given = option(attribute)
            if given is not None and str(given).strip():
                return str(given).strip()
            return env.get(OPTIONS[attribute][1], "").strip() or None

        def seconds(attribute: str, default: float) -> float:
            raw = value(attribute)
            if raw is None:
                return default
            try:
                parsed = parse_duration(raw)
            except UnitError as error:
                flag, variable = OPTIONS[attribute]
                raise ShoalToilConfigError(f"{flag} / {variable}: {error}") from None
            if parsed <= 0:
                flag, variable = OPTIONS[attribute]
                raise ShoalToilConfigError(f"{flag} / {variable} must be positive, got {raw!r}")
            return parsed

        settings = cls(
            cluster=value("shoal_cluster"),
            table_name=value("shoal_table"),
            queue_url=value("shoal_queue_url"),
            region=value("shoal_region"),
            event_bus_name=value("shoal_event_bus") or "default",
            poll_interval=seconds("shoal_poll_interval", DEFAULT_POLL_INTERVAL),
            default_wall_time=seconds("shoal_default_wall_time", DEFAULT_WALL_TIME),
            job_image=value("shoal_job_image"),
        )
        if settings.cluster is None:
            raise ShoalToilConfigError(
                "no Shoal cluster given; pass --shoalCluster NAME or set SHOAL_CLUSTER_NAME "
                "(with SHOAL_TABLE_NAME and SHOAL_QUEUE_URL from the stack's outputs, or they are looked up)"
            )
        return settings

    def submit_config(self, lookup: Callable[[str, str | None], tuple[str, str, str]]) -> SubmitConfig:
        """Where submissions go; ``lookup(cluster, region)`` gives (table, queue url, region) from the stack."""
        assert self.cluster is not None  # read() insists
        table, queue_url, region = self.table_name, self.queue_url, self.region
        if table is None or queue_url is None:
            found_table, found_queue, found_region = lookup(self.cluster, region)
            table, queue_url, region = table or found_table, queue_url or found_queue, region or found_region
        return SubmitConfig(
            table_name=table,
            queue_url=queue_url,
            cluster=self.cluster,
            region=region,
            event_bus_name=self.event_bus_name,
        )

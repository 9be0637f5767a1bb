"""The cluster's settings for synthesis: ``shoal.toml`` (or ``-c settings=PATH``) plus ``-c`` overrides.

The file uses the settings' own names (``node_types``, ``min_nodes``, ...); ``-c`` overrides use Toil's
flag names (``-c cluster=NAME -c nodeTypes=...``, ``-c minNodes=0,2``) or the same snake_case names.
Precedence, lowest first: the file, ``TOIL_APPLIANCE_SELF`` from the environment, ``-c`` overrides.
Everything is validated before a construct exists, and every problem is a ``SettingsError`` whose
one-line message names the setting.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from cdk import constants
from shared.appliance import APPLIANCE_SELF, DOCKER_NAME, DOCKER_REGISTRY, ApplianceImageError, appliance_image
from shared.domain.settings import ClusterSettings, SettingsError

# -c names (Toil's flags) → settings names; the snake_case names are accepted as they are.
CONTEXT_ALIASES: Mapping[str, str] = {
    "cluster": "name",
    "clusterName": "name",
    "nodeTypes": "node_types",
    "minNodes": "min_nodes",
    "maxNodes": "max_nodes",
    "staticNodes": "static_nodes",
    "targetTime": "target_time",
    "betaInertia": "beta_inertia",
    "scaleInterval": "scale_interval",
    "preemptibleCompensation": "preemptible_compensation",
    "nodeStorage": "node_storage",
    "maxNodeStorage": "max_node_storage",
    "warmPoolSize": "warm_pool_size",
    "capacityFailureTtl": "capacity_failure_ttl",
    "applianceImage": "appliance_image",
    "workerNetwork": "worker_network",
    "jobStoreBucket": "job_store_bucket",
    "jobsMayReach": "jobs_may_reach",
    "maxHourlyCost": "max_hourly_cost",
    "idleLease": "idle_lease",  # "budget" and "lease" are the same in both spellings
    "maxPreemptions": "max_preemptions",
    "quotaTtl": "quota_ttl",
}
SETTINGS_FILE_CONTEXT = "settings"
LAYER_VERSION_CONTEXT = "powertoolsLayerVersion"
RESERVED_CONCURRENCY_CONTEXT = "scalerReservedConcurrency"
# A private ECR repository's image: the only kind an "endpoints" network (no internet) can pull.
ECR_IMAGE = re.compile(r"[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/")

ContextGetter = Callable[[str], Any]


class SettingsFileError(SettingsError):
    """The settings file is missing or is not TOML; the message names the file and line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StackSettings:
    """What the stack is built from: the validated cluster settings and the few deployment knobs."""

    cluster: ClusterSettings  # appliance_image holds the resolved image
    appliance_image: str
    powertools_layer_version: int
    # evaluate_scaling's reserved concurrency; 0: none (an account whose concurrency quota is still the new-account
    # 10 cannot reserve any, see docs/deploy.md)
    scaler_reserved_concurrency: int
    source: str  # where the settings came from, for messages: "shoal.toml + -c nodeTypes"

    @property
    def scale_interval_minutes(self) -> int:
        return int(self.cluster.scale_interval) // 60


def load_stack_settings(
    get_context: ContextGetter,
    *,
    base_dir: Path,
    environ: Mapping[str, str],
    version: str | None = None,
) -> StackSettings:
    """Read, merge and validate; raises ``SettingsError`` (one line, naming the setting) on any problem."""
    values, source = _merged_values(get_context, base_dir=base_dir, environ=environ)
    try:
        cluster = ClusterSettings.from_mapping(values)
    except SettingsError as error:
        raise SettingsError(f"{error} (settings from {source})") from None
    if cluster.scale_interval % 60:
        raise SettingsError(
            f"scale_interval must be a whole number of minutes for an EventBridge schedule, "
            f"got {cluster.scale_interval:g} s (settings from {source})"
        )
    image = _appliance_image(cluster, environ, version, source)
    cached = image.startswith(f"{constants.PULL_THROUGH_UPSTREAM}/")  # pulled through an ECR cache (cdk/workers.py)
    if cluster.worker_network == "endpoints" and not (ECR_IMAGE.match(image) or cached):
        raise SettingsError(
            f"worker_network 'endpoints' gives workers no internet, so they cannot pull {image!r}; use an image on "
            f"{constants.PULL_THROUGH_UPSTREAM} (cached through ECR) or in ECR (TOIL_APPLIANCE_SELF), "
            f"or worker_network 'nat' (settings from {source})"
        )
    return StackSettings(
        cluster=replace(cluster, appliance_image=image),
        appliance_image=image,
        powertools_layer_version=_positive(
            LAYER_VERSION_CONTEXT,
            get_context(LAYER_VERSION_CONTEXT),
            default=constants.POWERTOOLS_LAYER_VERSION,
            minimum=1,
        ),
        scaler_reserved_concurrency=_positive(
            RESERVED_CONCURRENCY_CONTEXT,
            get_context(RESERVED_CONCURRENCY_CONTEXT),
            default=constants.SCALER_RESERVED_CONCURRENCY,
            minimum=0,
        ),
        source=source,
    )


def _merged_values(
    get_context: ContextGetter, *, base_dir: Path, environ: Mapping[str, str]
) -> tuple[dict[str, object], str]:
    """The settings file's values with TOIL_APPLIANCE_SELF and every ``-c`` override on top, and where they
    came from (for messages)."""
    path_value = get_context(SETTINGS_FILE_CONTEXT)
    path = Path(str(path_value)) if path_value else Path(constants.SETTINGS_FILE)
    if not path.is_absolute():
        path = base_dir / path
    values: dict[str, object] = dict(_read_file(path, explicit=bool(path_value)))
    source = path.name if path.exists() else "-c"
    if APPLIANCE_SELF in environ:  # set but empty is a mistake, reported by the image rule
        values["appliance_image"] = environ[APPLIANCE_SELF]
    overridden: list[str] = []
    known = {f.name for f in fields(ClusterSettings)}
    for key in sorted(known | set(CONTEXT_ALIASES)):
        value = get_context(key)
        if value is None:
            continue
        values[CONTEXT_ALIASES.get(key, key)] = value
        overridden.append(key)
    if overridden:
        source = f"{source} + -c {', '.join(overridden)}"
    return values, source


def _read_file(path: Path, *, explicit: bool) -> Mapping[str, object]:
    if not path.exists():
        if explicit:
            raise SettingsFileError(f"settings file {path} does not exist; pass -c settings=PATH to an existing file")
        return {}  # everything comes from -c
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise SettingsFileError(f"settings file {path} is not valid TOML: {error}") from None
    except OSError as error:
        raise SettingsFileError(f"settings file {path} cannot be read: {error.strerror}") from None
    nested = [key for key, value in data.items() if isinstance(value, dict)]
    if nested:
        raise SettingsFileError(f"settings file {path}: [{nested[0]}] tables are not settings; use top-level keys")
    return data


def _appliance_image(cluster: ClusterSettings, environ: Mapping[str, str], version: str | None, source: str) -> str:
    choice = {k: environ[k] for k in (DOCKER_REGISTRY, DOCKER_NAME) if k in environ}
    if cluster.appliance_image is not None:
        choice[APPLIANCE_SELF] = cluster.appliance_image
    try:
        return appliance_image(choice, version)  # version: a tag other than the installed Toil's (tests)
    except ApplianceImageError as error:
        raise SettingsError(f"appliance image: {error} (settings from {source})") from None


def _positive(name: str, value: object, *, default: int, minimum: int) -> int:
    if value is None:
        return default
    text = str(value).strip()
    number = int(text) if text.isdigit() and len(text) <= 6 else -1
    if number < minimum:
        what = "a positive layer version number" if name == LAYER_VERSION_CONTEXT else f"a whole number >= {minimum}"
        raise SettingsError(f"{name} must be {what}, got {value!r}")
    return number

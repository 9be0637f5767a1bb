"""Cluster settings: the knobs Toil users know, validated once, shared by every part.

One frozen dataclass is the truth; edges (``shoal.toml``, CDK context, CLI flags, Lambda environment)
turn their text into it with ``from_mapping`` and get one-line errors naming the setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

from shared.domain.catalog import DEFAULT_MAX_NODE_STORAGE, DEFAULT_NODE_STORAGE, MAX_GP3_SIZE, REGIONS
from shared.domain.guardrail_settings import guardrail_problem, parse_dollars
from shared.domain.node_types import NodeTypeSpecError, build_offers, parse_node_types
from shared.domain.preemption import DEFAULT_MAX_PREEMPTIONS
from shared.domain.units import GiB, UnitError, parse_count, parse_counts, parse_duration, parse_gib

# Matched with fullmatch: "$" would also match before a trailing newline ("demo\n").
CLUSTER_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]|[a-z]")
# How workers reach AWS and the internet (docs/deploy.md prices each):
WORKER_NETWORKS = {
    "public": "public subnets: each worker has a public IPv4 address, no inbound rule",
    "nat": "private subnets behind one NAT gateway: no public address, internet through the NAT",
    "endpoints": "isolated private subnets with VPC endpoints for AWS only: no internet (the appliance from ECR)",
}


JOB_STORE_BUCKET = re.compile(r"[a-z0-9*][a-z0-9.*-]{1,61}[a-z0-9*]")
JOB_ALLOWANCES = ("docker", "metadata")  # shared/worker/isolation.py's SHOAL_JOBS_MAY_REACH


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it and says how to fix it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSettings:
    name: str
    node_types: str  # Toil's --nodeTypes
    region: str = "us-west-2"
    zone: str | None = None
    min_nodes: tuple[int, ...] = ()  # Toil's --minNodes, one per node type
    max_nodes: tuple[int, ...] = ()  # Toil's --maxNodes, one per node type
    static_nodes: tuple[int, ...] = ()  # launch-cluster's static workers per node type, never scaled in
    target_time: float = 1800.0  # seconds; Toil's --targetTime
    beta_inertia: float = 0.1  # Toil's --betaInertia
    scale_interval: float = 60.0  # seconds; Toil's --scaleInterval
    preemptible_compensation: float = 0.0  # Toil's --preemptibleCompensation
    node_storage: int = DEFAULT_NODE_STORAGE  # bytes; Toil's --nodeStorage: the smallest root volume
    max_node_storage: int = DEFAULT_MAX_NODE_STORAGE  # bytes; the largest root volume a round may give a node
    warm_pool_size: int = 0  # stopped nodes kept for a fast start
    capacity_failure_ttl: float = 600.0  # seconds an offering stays skipped after a capacity error
    appliance_image: str | None = None  # TOIL_APPLIANCE_SELF, when set
    worker_network: str = "public"  # one of WORKER_NETWORKS
    job_store_bucket: str | None = None  # the Toil job store's bucket jobs may use; None: NAME--toil (aws:REGION:NAME)
    jobs_may_reach: str = ""  # comma-separated JOB_ALLOWANCES: what a job's container may reach on its node
    # Guardrails (shared/domain/budget.py): None means no limit.
    max_hourly_cost: float | None = None  # USD/h the fleet may cost (on-demand prices, spot at its bid)
    budget: float | None = None  # USD the cluster may spend over its life; then it drains (BUDGET_EXHAUSTED)
    lease: float | None = None  # seconds from launch until TeardownCluster runs by itself
    idle_lease: float | None = None  # seconds with no job queued or running until TeardownCluster runs by itself
    max_preemptions: int = DEFAULT_MAX_PREEMPTIONS  # spot reclaims a job may suffer before it runs on-demand only
    quota_ttl: float = 300.0  # seconds the account's vCPU quotas (and Spot Placement Scores) are kept once read

    @property
    def largest_node_storage(self) -> int:
        """Bytes: the largest root volume a round may give a node (never below ``node_storage``)."""
        return max(self.node_storage, self.max_node_storage)

    @property
    def job_store_bucket_name(self) -> str:
        """The bucket of the job store ``aws:REGION:NAME`` (Toil 9: ``NAME--toil``) unless set."""
        return self.job_store_bucket or f"{self.name}--toil"

    def validate(self) -> ClusterSettings:
        """These settings, if every one can be used; else a ``SettingsError`` naming the first that cannot."""
        self._check_names()
        self._check_node_types()
        self._check_numbers()
        problem = guardrail_problem(self)
        if problem:
            raise SettingsError(problem)
        return self

    def _check_names(self) -> None:
        """The cluster's name, where it runs, its network, its job store and what its jobs may reach."""
        if not CLUSTER_NAME.fullmatch(self.name):
            raise SettingsError(
                f"cluster name {self.name!r} is not valid; use 1-32 lowercase letters, digits and dashes, "
                "starting with a letter"
            )
        if self.region not in REGIONS:
            raise SettingsError(f"region {self.region!r} has no prices in the catalog; use one of {', '.join(REGIONS)}")
        if self.zone is not None and not re.fullmatch(rf"{re.escape(self.region)}[a-z]", self.zone):
            raise SettingsError(f"zone {self.zone!r} is not a zone of region {self.region!r} (like {self.region}a)")
        if self.worker_network not in WORKER_NETWORKS:
            raise SettingsError(
                f"worker_network {self.worker_network!r} is not one of {', '.join(WORKER_NETWORKS)} "
                "(see docs/deploy.md for what each costs)"
            )
        if self.job_store_bucket is not None and not JOB_STORE_BUCKET.fullmatch(self.job_store_bucket):
            raise SettingsError(
                f"job_store_bucket {self.job_store_bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, "
                "'.', '-'; '*' as a wildcard), e.g. mycluster--toil for the job store aws:REGION:mycluster"
            )
        allowances = [a.strip() for a in self.jobs_may_reach.split(",") if a.strip()]
        if any(a not in JOB_ALLOWANCES for a in allowances):
            raise SettingsError(
                f"jobs_may_reach {self.jobs_may_reach!r} may list only {', '.join(JOB_ALLOWANCES)} "
                "(see docs/toil.md, 'What a job can touch')"
            )

    def _check_node_types(self) -> None:
        """The node types (Toil's --nodeTypes) priced in the region, and the node counts per type."""
        try:
            classes = parse_node_types(self.node_types)
            build_offers(
                classes,
                region=self.region,
                node_storage=self.node_storage,
                min_nodes=self.min_nodes,
                max_nodes=self.max_nodes,
            )
        except NodeTypeSpecError as error:
            raise SettingsError(str(error)) from None
        if len(self.static_nodes) > len(classes) or any(n < 0 for n in self.static_nodes):
            raise SettingsError("static_nodes needs one non-negative number per node type")

    def _check_numbers(self) -> None:
        """The scaler's numbers, each within its range."""
        checks = [
            (self.target_time >= 0, "target_time must be >= 0 seconds"),
            (0.0 <= self.beta_inertia < 1.0, "beta_inertia must be in [0, 1)"),
            (self.scale_interval >= 60, "scale_interval must be at least 60 seconds (EventBridge's finest rate)"),
            (0.0 <= self.preemptible_compensation <= 1.0, "preemptible_compensation must be in [0, 1]"),
            (self.node_storage >= 10 * GiB, "node_storage must be at least 10 GiB"),
            (
                self.max_node_storage <= MAX_GP3_SIZE,
                "max_node_storage must be at most 16384 GiB (gp3's largest volume); set it to node_storage to keep "
                "every root volume at node_storage",
            ),
            (self.warm_pool_size >= 0, "warm_pool_size must be >= 0"),
            (self.capacity_failure_ttl > 0, "capacity_failure_ttl must be > 0 seconds"),
            (
                1 <= self.max_preemptions <= 100,
                "max_preemptions must be a whole number from 1 to 100 (a job that must never run on spot says "
                "preemptible: false)",
            ),
            (60 <= self.quota_ttl <= 86400, "quota_ttl must be from 60 seconds to 24 hours"),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> ClusterSettings:
        """Settings from loosely typed values (TOML, CDK context, environment), validated."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingsError(f"unknown setting {unknown[0]!r}; known settings: {', '.join(sorted(known))}")
        for required in ("name", "node_types"):
            if not values.get(required):
                raise SettingsError(f"setting {required!r} is required")
        kwargs: dict[str, object] = {}
        for key, value in values.items():
            try:
                kwargs[key] = _coerce(key, value)
            except (ValueError, TypeError, OverflowError, UnitError) as error:
                raise SettingsError(f"setting {key!r}: {error}") from None
        return cls(**kwargs).validate()  # type: ignore[arg-type]

    def to_mapping(self) -> dict[str, object]:
        """Plain values that ``from_mapping`` reads back (for the Lambda environment and the table)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = ",".join(str(v) for v in value)
            elif f.name in _SIZES:  # a bare number would read back as GiB, Toil's unit
                value = f"{value // GiB}GiB" if value % GiB == 0 else f"{value}B"
            if value is not None and value != "":
                out[f.name] = value
        return out


_INT_LISTS = {"min_nodes", "max_nodes", "static_nodes"}
_DURATIONS = {"target_time", "scale_interval", "capacity_failure_ttl", "lease", "idle_lease", "quota_ttl"}
_DOLLARS = {"max_hourly_cost", "budget"}
_SIZES = {"node_storage", "max_node_storage"}


def _coerce(key: str, value: object) -> object:
    if key in _INT_LISTS:
        return parse_counts(value)
    if key in _DURATIONS:
        return parse_duration(value)
    if key in _SIZES:
        return parse_gib(value)  # Toil's --nodeStorage is in GiB; a string with a unit is taken as written
    if key in {"beta_inertia", "preemptible_compensation"}:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)  # nan and inf are refused by validate's range checks
    if key in {"warm_pool_size", "max_preemptions"}:
        return parse_count(value)
    if value is None:
        return None
    if key in _DOLLARS:
        return parse_dollars(value)
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value

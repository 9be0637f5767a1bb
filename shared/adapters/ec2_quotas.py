"""The account's EC2 vCPU quotas (Service Quotas) and Spot Placement Scores, read for the scaler and cached.

- ``ServiceQuotaReader.read``: ``GetServiceQuota`` (service code ``ec2``) for each quota code in
  ``shared.domain.quotas.QUOTA_CODES``, and one account-wide ``DescribeInstances`` (pending and running) for
  the vCPUs used outside the cluster. Kept for ``ttl`` seconds. A quota that cannot be read (not offered
  in the region, access denied, throttled past the retries) is left out: "no limit known", said once in
  the log, never an error for the round. The next read after ``ttl`` tries again. The region's gp3 storage
  quota (service code ``ebs``) likewise, with one ``DescribeVolumes`` for the gp3 GiB outside the cluster: root
  volumes a round grows are kept within it (``shared.domain.scaling``).
- ``SpotPlacementScorer.scores``: ``GetSpotPlacementScores`` per spot offer (its instance types together,
  one score per zone), kept for ``ttl`` seconds. Where the account may not call it (or the endpoint lacks
  it) the scores are empty and launches keep the price order; said once in the log.

Only this module reads these APIs; the round takes their answers through ``ports.QuotaSource`` and
``ports.PlacementScores``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from shared.adapters import aws
from shared.adapters.ec2_fleet import CLUSTER_TAG
from shared.domain.cluster_state import Market
from shared.domain.node_types import Offer
from shared.domain.quotas import GP3_QUOTA_CODE, QUOTA_CODES, QuotaView, quota_code, vcpus

log = logging.getLogger("shoal.quotas")
DEFAULT_TTL = 300.0
# Capacity asked about per offer: enough nodes to matter, few enough that a small account still gets scores.
PLACEMENT_TARGET_NODES = 10
# moto raises NotImplementedError in-process for an API it lacks, and its server answers an HTML 500 (botocore
# cannot parse it); a real endpoint answers with a ClientError.
_READ_ERRORS = (ClientError, BotoCoreError, ResponseParserError, NotImplementedError)


class _Once:
    """Log each distinct message once per process (a warm Lambda reads every round)."""

    def __init__(self) -> None:
        self.said: set[str] = set()

    def warn(self, message: str) -> None:
        if message not in self.said:
            self.said.add(message)
            log.warning("%s", message)


def _describe(error: BaseException) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'Unknown')}: {details.get('Message', '')}"
    return f"{type(error).__name__}: {error}"


class ServiceQuotaReader:
    """``QuotaSource`` on Service Quotas and EC2."""

    def __init__(
        self,
        *,
        cluster: str,
        region: str | None = None,
        ttl: float = DEFAULT_TTL,
        quotas_client: Any = None,
        ec2_client: Any = None,
    ) -> None:
        self.cluster = cluster
        self.ttl = ttl
        self.quotas = quotas_client if quotas_client is not None else aws.client("service-quotas", region)
        self.ec2 = ec2_client if ec2_client is not None else aws.client("ec2", region)
        self.once = _Once()
        self._cached: tuple[float, QuotaView | None] | None = None

    def read(self, now: float) -> QuotaView | None:
        if self._cached is not None and now < self._cached[0]:
            return self._cached[1]
        limits = self._limits()
        gp3 = self._gp3_gib()
        view = None
        if limits or gp3 is not None:
            view = QuotaView(
                limits=MappingProxyType(limits),
                used_elsewhere=MappingProxyType(self._used(limits) if limits else {}),
                gp3_gib=gp3,
                gp3_elsewhere_gib=self._gp3_elsewhere_gib() if gp3 is not None else 0.0,
            )
        self._cached = (now + self.ttl, view)
        return view

    def _gp3_gib(self) -> float | None:
        """The region's gp3 storage quota in GiB (Service Quotas gives TiB); None: not readable, said once."""
        try:
            response = self.quotas.get_service_quota(ServiceCode="ebs", QuotaCode=GP3_QUOTA_CODE)
        except _READ_ERRORS as error:
            self.once.warn(f"gp3 storage quota {GP3_QUOTA_CODE} not readable, no limit known: {_describe(error)}")
            return None
        value = response.get("Quota", {}).get("Value")
        if not isinstance(value, int | float):
            self.once.warn(f"gp3 storage quota {GP3_QUOTA_CODE} has no value, no limit known")
            return None
        return float(value) * 1024.0

    def _gp3_elsewhere_gib(self) -> float:
        """GiB of the region's gp3 volumes not tagged with this cluster (0 if they cannot be listed, said once)."""
        total = 0.0
        try:
            pages = self.ec2.get_paginator("describe_volumes").paginate(
                Filters=[{"Name": "volume-type", "Values": ["gp3"]}]
            )
            for page in pages:
                for volume in page.get("Volumes", []):
                    tags = {t.get("Key"): t.get("Value") for t in volume.get("Tags", [])}
                    if tags.get(CLUSTER_TAG) != self.cluster:
                        total += float(volume.get("Size", 0))
        except _READ_ERRORS as error:
            self.once.warn(f"cannot list the gp3 volumes, taken as none outside the cluster: {_describe(error)}")
            return 0.0
        return total

    def _limits(self) -> dict[str, float]:
        limits: dict[str, float] = {}
        unknown: dict[str, list[str]] = {}  # why → codes
        for code in sorted(set(QUOTA_CODES.values())):
            try:
                response = self.quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)
            except _READ_ERRORS as error:
                unknown.setdefault(_describe(error), []).append(code)
                continue
            value = response.get("Quota", {}).get("Value")
            if isinstance(value, int | float):
                limits[code] = float(value)
            else:
                unknown.setdefault("no value", []).append(code)
        if unknown:
            self.once.warn(
                "EC2 vCPU quotas not readable, no limit known (the fleet is not capped by them): "
                + "; ".join(f"{', '.join(codes)} ({why})" for why, codes in unknown.items())
            )
        return limits

    def _used(self, limits: dict[str, float]) -> dict[str, float]:
        """vCPUs of pending and running instances outside this cluster, per known quota code."""
        used: dict[str, float] = {}
        try:
            pages = self.ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
            )
            for page in pages:
                for reservation in page.get("Reservations", []):
                    for raw in reservation.get("Instances", []):
                        self._count(raw, limits, used)
        except _READ_ERRORS as error:
            self.once.warn(
                f"cannot count the account's running vCPUs, taken as none outside the cluster: {_describe(error)}"
            )
            return {}
        return used

    def _count(self, raw: dict[str, Any], limits: dict[str, float], used: dict[str, float]) -> None:
        tags = {t.get("Key"): t.get("Value") for t in raw.get("Tags", [])}
        if tags.get(CLUSTER_TAG) == self.cluster:
            return
        market = Market.SPOT if raw.get("InstanceLifecycle") == "spot" else Market.ON_DEMAND
        name = str(raw.get("InstanceType", ""))
        code = quota_code(name, market)
        if code is None or code not in limits:
            return
        cpu = raw.get("CpuOptions") or {}
        count = cpu.get("CoreCount", 0) * cpu.get("ThreadsPerCore", 1) if cpu.get("CoreCount") else vcpus(name)
        used[code] = used.get(code, 0.0) + float(count)


class SpotPlacementScorer:
    """``PlacementScores`` on EC2's ``GetSpotPlacementScores``."""

    def __init__(
        self,
        *,
        region: str,
        ttl: float = DEFAULT_TTL,
        ec2_client: Any = None,
    ) -> None:
        self.region = region
        self.ttl = ttl
        self.ec2 = ec2_client if ec2_client is not None else aws.client("ec2", region)
        self.once = _Once()
        self._cached: dict[tuple[str, ...], tuple[float, dict[str, int]]] = {}
        self._zone_names: dict[str, str] | None = None
        self._refused_until = 0.0

    def scores(self, offers: Sequence[Offer], zones: Sequence[str], now: float) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        if len(zones) < 2 or now < self._refused_until:
            return out  # nothing to order (one zone, or the launch template's choice), or not allowed lately
        for offer in offers:
            if not offer.spot:
                continue
            types = tuple(offer.instance_types)
            cached = self._cached.get(types)
            if cached is None or now >= cached[0]:
                by_zone = self._ask(types)
                if by_zone is None:
                    self._refused_until = now + self.ttl
                    return {}
                cached = (now + self.ttl, by_zone)
                self._cached[types] = cached
            wanted = {zone: score for zone, score in cached[1].items() if zone in zones}
            if wanted:
                out[offer.key] = wanted
        return out

    def _ask(self, types: tuple[str, ...]) -> dict[str, int] | None:
        """Scores by zone name; None when the call is refused (no permission, not offered)."""
        try:
            response = self.ec2.get_spot_placement_scores(
                InstanceTypes=list(types),
                TargetCapacity=PLACEMENT_TARGET_NODES,
                TargetCapacityUnitType="units",
                SingleAvailabilityZone=True,
                RegionNames=[self.region],
            )
            names = self._names()
        except _READ_ERRORS as error:
            self.once.warn(
                f"Spot Placement Scores not available, spot launches keep the price order: {_describe(error)}"
            )
            return None
        out: dict[str, int] = {}
        for entry in response.get("SpotPlacementScores", []):
            zone = names.get(str(entry.get("AvailabilityZoneId", "")))
            if zone is not None and isinstance(entry.get("Score"), int):
                out[zone] = int(entry["Score"])
        return out

    def _names(self) -> dict[str, str]:
        """Zone id (use1-az1) → zone name (us-east-1a): scores come by id, launches go by name."""
        if self._zone_names is None:
            response = self.ec2.describe_availability_zones()
            self._zone_names = {z["ZoneId"]: z["ZoneName"] for z in response.get("AvailabilityZones", [])}
        return self._zone_names

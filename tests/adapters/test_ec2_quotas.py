"""The quota and Spot Placement Score adapters against moto.

moto's Service Quotas backend knows only the ``vpc`` service: ``GetServiceQuota`` for ``ec2`` answers
NoSuchResourceException, which is the failure path ("no limit known", said once). For the reading path the
backend is given EC2 quotas (``ec2_quotas`` below patches moto's model, not boto3: the request still goes
through botocore and moto's response code). moto does not implement ``GetSpotPlacementScores`` at all, so
only its failure path is tested here; the ordering by scores is a domain test (tests/unit/test_quotas.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws
from moto.servicequotas.models import ServiceQuotasBackend

from shared.adapters import aws
from shared.adapters.ec2_fleet import CLUSTER_TAG, CallCounter
from shared.adapters.ec2_quotas import ServiceQuotaReader, SpotPlacementScorer
from shared.domain.scaling import offers_for
from shared.domain.settings import ClusterSettings
from tests.adapters.test_ec2_fleet import refuse

REGION = "us-east-1"
ON_DEMAND_STANDARD, SPOT_STANDARD, ON_DEMAND_G = "L-1216C47A", "L-34B43A08", "L-DB2E81BA"
GP3 = "L-7A658B76"  # the region's gp3 storage, in TiB (service code ebs)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def ec2_quotas(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """EC2 quota values moto's Service Quotas serves (change the dict to change the account's quotas)."""
    values = {ON_DEMAND_STANDARD: 640.0, SPOT_STANDARD: 256.0}
    original = ServiceQuotasBackend.get_service_quota

    def get_service_quota(self: ServiceQuotasBackend, service_code: str, quota_code: str) -> dict[str, Any]:
        if quota_code in values and service_code == ("ebs" if quota_code == GP3 else "ec2"):
            return {"ServiceCode": service_code, "QuotaCode": quota_code, "QuotaName": quota_code,
                    "Value": values[quota_code]}  # fmt: skip
        return original(self, service_code, quota_code)

    monkeypatch.setattr(ServiceQuotasBackend, "get_service_quota", get_service_quota)
    return values


def reader(ttl: float = 300.0) -> ServiceQuotaReader:
    return ServiceQuotaReader(cluster="test", region=REGION, ttl=ttl)


def run(ec2: Any, instance_type: str, count: int, *, cluster: str | None = None, spot: bool = False) -> None:
    request: dict[str, Any] = {
        "ImageId": "ami-12c6146b",
        "InstanceType": instance_type,
        "MinCount": count,
        "MaxCount": count,
    }
    if cluster:
        request["TagSpecifications"] = [{"ResourceType": "instance", "Tags": [{"Key": CLUSTER_TAG, "Value": cluster}]}]
    if spot:
        request["InstanceMarketOptions"] = {"MarketType": "spot"}
    ec2.run_instances(**request)


def test_without_ec2_quotas_in_the_region_no_limit_is_known_and_it_is_said_once(
    aws_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN moto's Service Quotas, which has no ec2 quotas (NoSuchResourceException for each code)
    quotas = reader(ttl=60)
    # WHEN read, and read again after the cache expired
    with caplog.at_level(logging.WARNING, logger="shoal.quotas"):
        first, second = quotas.read(0.0), quotas.read(120.0)
    # THEN nothing is known (nothing will be capped), and the log says so once, naming the codes
    assert first is None and second is None
    gp3 = [r.getMessage() for r in caplog.records if "gp3 storage quota L-7A658B76 not readable" in r.getMessage()]
    assert len(gp3) == 1
    said = [r.getMessage() for r in caplog.records if "vCPU quotas not readable" in r.getMessage()]
    assert (
        len(said) == 1
        and "L-1216C47A, L-34B43A08, L-3819A6DF, L-417A185B, L-7212CCBC, L-DB2E81BA (NoSuchResource" in said[0]
    )


def test_quotas_and_the_vcpus_used_outside_the_cluster_are_read_and_kept_for_the_ttl(
    aws_env: None, ec2_quotas: dict[str, float], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN instances of another workload (2 on-demand m5.2xlarge, 1 spot c5.xlarge, 1 g4dn) and 3 of ours
    ec2 = aws.client("ec2", REGION)
    run(ec2, "m5.2xlarge", 2)
    run(ec2, "c5.xlarge", 1, spot=True)
    run(ec2, "g4dn.xlarge", 1, cluster="another")
    run(ec2, "m5.2xlarge", 3, cluster="test")
    quotas = reader(ttl=300)
    counter = CallCounter()
    counter.attach(quotas.quotas, "service-quotas")
    # WHEN read
    with caplog.at_level(logging.WARNING, logger="shoal.quotas"):
        view = quotas.read(1000.0)
    # THEN the known quotas have their values, the others are unknown (said once), and only vCPUs outside
    # this cluster count as used elsewhere, per quota and market
    assert view is not None
    assert dict(view.limits) == {ON_DEMAND_STANDARD: 640.0, SPOT_STANDARD: 256.0}
    assert dict(view.used_elsewhere) == {ON_DEMAND_STANDARD: 16.0, SPOT_STANDARD: 4.0}
    assert view.room() == {ON_DEMAND_STANDARD: 624.0, SPOT_STANDARD: 252.0}
    assert sum("vCPU quotas not readable" in r.getMessage() for r in caplog.records) == 1
    # WHEN the quota is raised  THEN a read within the TTL keeps the cached view (no call), a later one sees it
    ec2_quotas[ON_DEMAND_STANDARD] = 1280.0
    calls = counter.total
    assert quotas.read(1299.0) is view and counter.total == calls
    later = quotas.read(1300.0)
    assert later is not None and later.limits[ON_DEMAND_STANDARD] == 1280.0


def volume(ec2: Any, gib: int, *, kind: str = "gp3", cluster: str | None = None) -> None:
    tags = [{"ResourceType": "volume", "Tags": [{"Key": CLUSTER_TAG, "Value": cluster}]}] if cluster else []
    ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=gib, VolumeType=kind, TagSpecifications=tags)


def test_the_gp3_storage_quota_and_the_gp3_outside_the_cluster_are_read(
    aws_env: None, ec2_quotas: dict[str, float], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a 50 TiB gp3 quota, gp3 volumes of another workload (100 and 200 GiB, one of another cluster), 500 GiB of
    # ours, and a gp2 volume (another quota)
    ec2_quotas[GP3] = 50.0
    ec2 = aws.client("ec2", REGION)
    volume(ec2, 100)
    volume(ec2, 200, cluster="another")
    volume(ec2, 500, cluster="test")
    volume(ec2, 1000, kind="gp2")
    # WHEN read  THEN the quota is in GiB, and only the gp3 outside this cluster counts as used elsewhere
    view = reader().read(0.0)
    assert view is not None
    assert (view.gp3_gib, view.gp3_elsewhere_gib, view.gp3_room_gib()) == (51200.0, 300.0, 50900.0)
    # WHEN the volumes cannot be listed  THEN the quota stands, none is taken as outside, and the log says so once
    failing = reader()
    refuse(failing.ec2, "UnauthorizedOperation", operation="DescribeVolumes")
    with caplog.at_level(logging.WARNING, logger="shoal.quotas"):
        view, again = failing.read(0.0), failing.read(1000.0)
    assert view is not None and again is not None
    assert (view.gp3_gib, view.gp3_elsewhere_gib) == (again.gp3_gib, again.gp3_elsewhere_gib) == (51200.0, 0.0)
    said = [r.getMessage() for r in caplog.records if "cannot list the gp3 volumes" in r.getMessage()]
    assert len(said) == 1 and "UnauthorizedOperation" in said[0]


def test_spot_placement_scores_refused_keep_the_price_order_said_once_and_not_asked_again_until_the_ttl(
    aws_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN moto, which does not implement GetSpotPlacementScores
    settings = ClusterSettings(name="test", node_types="c5.4xlarge/c5a.4xlarge:0.42,m5.2xlarge", region=REGION)
    scorer = SpotPlacementScorer(region=REGION, ttl=600)
    counter = CallCounter()
    counter.attach(scorer.ec2)
    zones = ("us-east-1a", "us-east-1b")
    with caplog.at_level(logging.WARNING, logger="shoal.quotas"):
        first = scorer.scores(offers_for(settings), zones, 0.0)
        again = scorer.scores(offers_for(settings), zones, 300.0)
        after = scorer.scores(offers_for(settings), zones, 600.0)
    # THEN no scores (launches keep the price order), one warning, and one call per TTL
    assert first == again == after == {}
    assert sum("Spot Placement Scores not available" in r.getMessage() for r in caplog.records) == 1
    assert counter.by_operation["GetSpotPlacementScores"] == 2
    # A single zone (or none) has nothing to order: no call at all
    assert SpotPlacementScorer(region=REGION).scores(offers_for(settings), ("us-east-1a",), 0.0) == {}

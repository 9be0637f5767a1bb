"""The EC2 fleet adapter against moto: tag filter, pagination, idempotent launches, error codes, bisection."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ec2.models.instances import StateReason

from shared.adapters import aws
from shared.adapters.ec2_fleet import (
    CLUSTER_TAG,
    LAUNCH_TAG,
    NODE_STORAGE_TAG,
    OFFER_TAG,
    ROOT_DEVICE,
    Ec2Fleet,
    client_token,
)
from shared.domain.cluster_state import Market
from shared.domain.decision import InstanceState, Launch, LaunchOption
from shared.domain.units import GiB

REGION = "us-west-2"


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield aws.client("ec2", REGION)


@pytest.fixture
def template(ec2: Any) -> str:
    response = ec2.create_launch_template(
        LaunchTemplateName="shoal-test-workers", LaunchTemplateData={"ImageId": "ami-12c6146b"}
    )
    return str(response["LaunchTemplate"]["LaunchTemplateId"])


def fleet(ec2: Any, template: str, **kwargs: Any) -> Ec2Fleet:
    return Ec2Fleet(cluster="test", launch_template_id=template, client=ec2, **kwargs)


def launch(
    offer: str = "m5.2xlarge",
    count: int = 2,
    *types: str,
    market: Market = Market.ON_DEMAND,
    zone: str | None = None,
    bid: float | None = None,
) -> Launch:
    names = types or (offer.split("/", maxsplit=1)[0].removesuffix(":spot"),)
    return Launch(
        offer_key=offer,
        count=count,
        market=market,
        bid=bid,
        options=tuple(LaunchOption(instance_type=t, zone=zone) for t in names),
        reason="test",
    )


class FakeHttp:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}


def refuse(client: Any, code: str, *, instance_type: str | None = None, operation: str = "RunInstances") -> list[str]:
    """Make EC2 answer ``code`` (for one instance type, or every call); returns the refused types."""
    refused: list[str] = []

    def handler(params: dict[str, Any], **_: Any) -> tuple[FakeHttp, dict[str, Any]] | None:
        body = params.get("body", {})
        if instance_type is None or body.get("InstanceType") == instance_type:
            refused.append(str(body.get("InstanceType")))
            error = {
                "Error": {"Code": code, "Message": f"injected {code}"},
                "ResponseMetadata": {"HTTPStatusCode": 500},
            }
            return FakeHttp(500), error
        return None

    client.meta.events.register(f"before-call.ec2.{operation}", handler)
    return refused


def test_describe_finds_only_this_clusters_live_instances(ec2: Any, template: str) -> None:
    # GIVEN two of ours (one stopped, one terminated), one of another cluster and an untagged one
    f = fleet(ec2, template)
    ours = f.launch(launch(count=3), idempotency_key="r1").instances
    ec2.stop_instances(InstanceIds=[ours[0].instance_id])
    ec2.terminate_instances(InstanceIds=[ours[1].instance_id])
    fleet(ec2, template).launch(launch(count=1), idempotency_key="other-cluster-but-same-key")
    Ec2Fleet(cluster="other", launch_template_id=template, client=ec2).launch(launch(count=1), idempotency_key="x")
    ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
    # WHEN described
    found = {i.instance_id: i for i in f.describe()}
    # THEN the stopped one is there, the terminated one and the others are not
    assert ours[0].instance_id in found and ours[1].instance_id not in found and ours[2].instance_id in found
    assert found[ours[0].instance_id].state in (InstanceState.STOPPING, InstanceState.STOPPED)
    assert found[ours[2].instance_id].offer_key == "m5.2xlarge"
    assert all(i.offer_key for i in found.values())


def test_describe_follows_every_page(ec2: Any, template: str) -> None:
    f = fleet(ec2, template, page_size=5)
    for n in range(12):  # moto pages by reservation: 12 reservations, 5 a page
        f.launch(launch(count=2), idempotency_key=f"round-{n}")
    f.calls.reset()
    assert len(f.describe()) == 24
    assert f.calls.by_operation["DescribeInstances"] == 3


def test_launch_tags_and_overrides(ec2: Any, template: str) -> None:
    f = fleet(ec2, template)
    result = f.launch(
        launch("c5.4xlarge/c5a.4xlarge:spot", 2, "c5.4xlarge", market=Market.SPOT, bid=0.42), idempotency_key="r1"
    )
    assert len(result.instances) == 2 and not result.failures
    raw = ec2.describe_instances(InstanceIds=[i.instance_id for i in result.instances])
    instance = raw["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert instance["InstanceType"] == "c5.4xlarge" and instance.get("InstanceLifecycle") == "spot"
    assert tags[CLUSTER_TAG] == "test" and tags[OFFER_TAG] == "c5.4xlarge/c5a.4xlarge:spot"
    assert tags["shoal:market"] == "spot" and tags[LAUNCH_TAG].startswith("shoal-")
    assert all(i.market is Market.SPOT for i in f.describe())


def test_a_retried_launch_returns_the_same_instances(ec2: Any, template: str) -> None:
    # GIVEN a launch made once  WHEN the same round (same key) launches again
    f = fleet(ec2, template)
    first = f.launch(launch(count=4), idempotency_key="round-7:0")
    again = f.launch(launch(count=4), idempotency_key="round-7:0")
    # THEN EC2 is asked once and the same instances come back
    assert {i.instance_id for i in again.instances} == {i.instance_id for i in first.instances}
    assert f.calls.by_operation["RunInstances"] == 1
    assert len(f.describe()) == 4
    # AND another round launches anew
    assert len(f.launch(launch(count=1), idempotency_key="round-8:0").instances) == 1


def test_client_token_fits_ec2s_limit() -> None:
    token = client_token(
        "x" * 300, launch("c5.4xlarge/c5a.4xlarge:spot"), LaunchOption(instance_type="c5a.4xlarge", zone="us-west-2a")
    )
    assert len(token) <= 64 and token.isascii()


def test_capacity_error_falls_back_to_the_next_option(ec2: Any, template: str) -> None:
    # GIVEN c5.4xlarge has no capacity
    f = fleet(ec2, template)
    refused = refuse(ec2, "InsufficientInstanceCapacity", instance_type="c5.4xlarge")
    # WHEN a class of two types launches
    result = f.launch(launch("c5.4xlarge/c5a.4xlarge", 3, "c5.4xlarge", "c5a.4xlarge"), idempotency_key="r")
    # THEN the next type is launched, and the failure says which offering and why, by code
    assert refused == ["c5.4xlarge"]
    assert [i.instance_type for i in result.instances] == ["c5a.4xlarge"] * 3
    (failure,) = result.failures
    assert (failure.instance_type, failure.code, failure.offering_error) == (
        "c5.4xlarge",
        "InsufficientInstanceCapacity",
        True,
    )


@pytest.mark.parametrize("code", ["SpotMaxPriceTooLow", "VcpuLimitExceeded", "Unsupported", "InsufficientCapacity"])
def test_offering_errors_are_classified_by_code(ec2: Any, template: str, code: str) -> None:
    f = fleet(ec2, template)
    refuse(ec2, code)
    result = f.launch(launch("m5.2xlarge", 1, "m5.2xlarge", "m5a.2xlarge"), idempotency_key="r")
    assert result.instances == ()
    assert [(x.code, x.offering_error) for x in result.failures] == [(code, True), (code, True)]


def test_other_errors_stop_the_launch_without_caching(ec2: Any, template: str) -> None:
    f = fleet(ec2, template)
    refuse(ec2, "UnauthorizedOperation")
    result = f.launch(launch("m5.2xlarge", 1, "m5.2xlarge", "m5a.2xlarge"), idempotency_key="r")
    assert [(x.code, x.offering_error) for x in result.failures] == [("UnauthorizedOperation", False)]
    assert f.calls.by_operation["RunInstances"] == 1


def test_zones_map_to_the_configured_subnets(ec2: Any, template: str) -> None:
    subnets = {s["AvailabilityZone"]: s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]}
    f = fleet(ec2, template, subnet_ids=[subnets["us-west-2b"], subnets["us-west-2a"]])
    assert f.zones() == ("us-west-2b", "us-west-2a")
    result = f.launch(launch(zone="us-west-2a"), idempotency_key="r")
    assert {i.zone for i in result.instances} == {"us-west-2a"}
    pinned = fleet(ec2, template, subnet_ids=list(subnets.values()), zone="us-west-2c")
    assert pinned.zones() == ("us-west-2c",)


def test_group_calls_are_one_call_each(ec2: Any, template: str) -> None:
    f = fleet(ec2, template)
    ids = [i.instance_id for i in f.launch(launch(count=40), idempotency_key="r").instances]
    f.calls.reset()
    assert set(f.stop(ids[:20]).done) == set(ids[:20])
    assert set(f.terminate(ids[20:]).done) == set(ids[20:])
    assert set(f.start(ids[:20]).done) == set(ids[:20])
    assert dict(f.calls.by_operation) == {"StopInstances": 1, "TerminateInstances": 1, "StartInstances": 1}
    assert f.calls.mutating == 3


def test_a_failing_batch_is_halved_to_isolate_the_bad_ids(ec2: Any, template: str) -> None:
    # GIVEN 15 instances and one id that does not exist
    f = fleet(ec2, template)
    ids = [i.instance_id for i in f.launch(launch(count=15), idempotency_key="r").instances]
    bad = "i-0000000000000dead"
    f.calls.reset()
    # WHEN terminating all 16
    result = f.terminate([*ids[:7], bad, *ids[7:]])
    # THEN the 15 are terminated and only the bad one is reported, in O(log n) calls
    assert set(result.done) == set(ids)
    assert [(x.instance_id, x.code) for x in result.failed] == [(bad, "InvalidInstanceID.NotFound")]
    assert f.calls.by_operation["TerminateInstances"] <= 2 * 4 + 1
    assert f.describe() == []


def test_a_failure_that_is_not_about_ids_fails_the_batch_once(ec2: Any, template: str) -> None:
    f = fleet(ec2, template)
    ids = [i.instance_id for i in f.launch(launch(count=8), idempotency_key="r").instances]
    refuse(ec2, "UnauthorizedOperation", operation="StopInstances")
    f.calls.reset()
    result = f.stop(ids)
    assert result.done == () and {x.code for x in result.failed} == {"UnauthorizedOperation"}
    assert f.calls.by_operation["StopInstances"] == 1


def test_throttling_is_retried_by_botocore_not_by_us(ec2: Any, template: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN EC2 throttles the first two DescribeInstances requests (botocore's backoff sleeps are skipped)
    from botocore.awsrequest import AWSResponse

    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda _seconds: None)
    sent: list[int] = []
    throttled = (
        b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
        b"</Error></Errors><RequestID>x</RequestID></Response>"
    )

    def throttle(request: Any, **_: Any) -> AWSResponse | None:
        sent.append(1)
        if len(sent) <= 2:
            return AWSResponse(request.url, 503, {}, _Raw(throttled))
        return None

    ec2.meta.events.register_first("before-send.ec2.DescribeInstances", throttle)
    f = fleet(ec2, template)
    # WHEN the fleet is described  THEN it succeeds: one call for us, three requests on the wire
    assert f.describe() == []
    assert len(sent) == 3 and f.calls.by_operation["DescribeInstances"] == 1


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def test_static_launches_are_tagged_static(ec2: Any, template: str) -> None:
    f = fleet(ec2, template)
    static = Launch(
        offer_key="m5.2xlarge",
        count=2,
        market=Market.ON_DEMAND,
        bid=None,
        options=(LaunchOption(instance_type="m5.2xlarge", zone=None),),
        reason="launch-cluster",
        static=True,
    )
    f.launch(static, idempotency_key="launch-cluster")
    f.launch(launch(count=1), idempotency_key="round")
    assert sorted(i.static for i in f.describe()) == [False, True, True]


def test_a_teardowns_inventory_sees_every_state_but_terminated(ec2: Any, template: str) -> None:
    f = fleet(ec2, template)
    ids = [i.instance_id for i in f.launch(launch(count=3), idempotency_key="r").instances]
    f.stop(ids[:1])
    f.terminate(ids[1:2])
    assert {i.instance_id for i in f.all_instances()} == {ids[0], ids[2]}
    spot = f.launch(launch("c5.4xlarge:spot", 1, "c5.4xlarge", market=Market.SPOT, bid=0.5), idempotency_key="s")
    assert len(spot.instances) == 1
    assert isinstance(f.open_spot_requests(), list)


# --- root volumes sized per launch -----------------------------------------------------------------


@pytest.fixture
def root_template(ec2: Any) -> str:
    """A launch template with the workers' root volume (cdk/launch_template.py): 64 GiB of encrypted gp3."""
    root = {"VolumeSize": 64, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}
    response = ec2.create_launch_template(
        LaunchTemplateName="shoal-test-root",
        LaunchTemplateData={
            "ImageId": "ami-12c6146b",
            "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": root}],
        },
    )
    return str(response["LaunchTemplate"]["LaunchTemplateId"])


def sent_run_requests(client: Any) -> list[dict[str, Any]]:
    """The parameters of every RunInstances call made through ``client``, as botocore sends them."""
    sent: list[dict[str, Any]] = []
    client.meta.events.register("provide-client-params.ec2.RunInstances", lambda params, **_: sent.append(dict(params)))
    return sent


def root_volumes(ec2: Any, instance_id: str) -> dict[str, tuple[int, str, bool]]:
    """Device → (GiB, type, encrypted) of the volumes EC2 attached to ``instance_id``."""
    volumes = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])["Volumes"]
    return {v["Attachments"][0]["Device"]: (v["Size"], v["VolumeType"], v["Encrypted"]) for v in volumes}


def test_a_sized_launch_gets_a_larger_root_volume_and_a_tag_naming_it(ec2: Any, root_template: str) -> None:
    # GIVEN the workers' template (64 GiB root)  WHEN a launch asks for 150.5 GiB a node
    # (moto 5 honours BlockDeviceMappings next to a launch template, so this is the volume EC2 made)
    f = fleet(ec2, root_template)
    result = f.launch(replace(launch(count=1), node_storage=int(150.5 * GiB)), idempotency_key="r1")
    (instance,) = result.instances
    # THEN its root device is one volume of the template's kind, rounded up to whole GiB
    assert root_volumes(ec2, instance.instance_id) == {ROOT_DEVICE: (151, "gp3", True)}
    # AND the tag says so in GiB, and reads back as bytes from the launch and from a describe
    raw = ec2.describe_instances(InstanceIds=[instance.instance_id])["Reservations"][0]["Instances"][0]
    assert {t["Key"]: t["Value"] for t in raw["Tags"]}[NODE_STORAGE_TAG] == "151"
    assert instance.node_storage == 151 * GiB
    assert [i.node_storage for i in f.describe()] == [151 * GiB]


def test_a_launch_without_node_storage_sends_the_request_it_always_did(ec2: Any, root_template: str) -> None:
    # GIVEN the workers' template  WHEN a launch names no node_storage
    f = fleet(ec2, root_template)
    sent = sent_run_requests(ec2)
    (instance,) = f.launch(launch(count=1), idempotency_key="r1").instances
    # THEN the request overrides no volume and adds no tag: the template's root volume is the node's
    (request,) = sent
    assert set(request) == {
        "LaunchTemplate",
        "InstanceType",
        "MinCount",
        "MaxCount",
        "ClientToken",
        "TagSpecifications",
    }
    instance_tags = {t["Key"] for t in request["TagSpecifications"][0]["Tags"]}
    assert instance_tags == {CLUSTER_TAG, OFFER_TAG, "shoal:market", LAUNCH_TAG, "Name"}
    assert root_volumes(ec2, instance.instance_id)[ROOT_DEVICE] == (64, "gp3", True)
    assert instance.node_storage is None and f.describe()[0].node_storage is None


def test_client_token_changes_with_node_storage_and_only_then() -> None:
    plain = launch()
    option = plain.options[0]
    # An unsized launch keeps the token it had before volumes were sized (a retried round must not launch again).
    assert client_token("r1", plain, option) == "shoal-ee0e888152a8f4e04ad2c858a06ea310d71d2276c9018a4b"
    # EC2 refuses a ClientToken reused with another volume (IdempotentParameterMismatch): each size has its own.
    tokens = {client_token("r1", replace(plain, node_storage=size), option) for size in (None, 100 * GiB, 200 * GiB)}
    assert len(tokens) == 3


@pytest.mark.parametrize("value", ["lots", "", "0", "-20", "1.5"])
def test_a_node_storage_tag_shoal_did_not_write_is_ignored(ec2: Any, template: str, value: str) -> None:
    # GIVEN a sized node whose tag was edited by hand  WHEN it is described  THEN its size is unknown, not a crash
    f = fleet(ec2, template)
    (instance,) = f.launch(replace(launch(count=1), node_storage=100 * GiB), idempotency_key="r1").instances
    ec2.create_tags(Resources=[instance.instance_id], Tags=[{"Key": NODE_STORAGE_TAG, "Value": value}])
    assert [i.node_storage for i in f.describe()] == [None]


def refuse_root_volumes(client: Any, *, sized_only: bool = True) -> list[bool]:
    """Make RunInstances answer ``VolumeLimitExceeded`` (the region's EBS storage quota), only for requests that
    override the root volume unless told otherwise; returns, per refused call, whether it overrode it."""
    refused: list[bool] = []

    def handler(params: dict[str, Any], **_: Any) -> tuple[FakeHttp, dict[str, Any]] | None:
        sized = any(key.startswith("BlockDeviceMapping") for key in params.get("body", {}))
        if sized or not sized_only:
            refused.append(sized)
            error = {"Error": {"Code": "VolumeLimitExceeded", "Message": "injected"}, "ResponseMetadata": {}}
            return FakeHttp(400), error
        return None

    client.meta.events.register("before-call.ec2.RunInstances", handler)
    return refused


def test_a_root_volume_the_storage_quota_refuses_is_launched_at_the_templates_size(
    ec2: Any, root_template: str
) -> None:
    # GIVEN a region whose gp3 storage quota is used up for larger volumes
    f = fleet(ec2, root_template)
    refused = refuse_root_volumes(ec2)
    # WHEN a round launches a node with a 300 GiB root volume
    sized = replace(launch(count=1), node_storage=300 * GiB)
    result = f.launch(sized, idempotency_key="r1")
    # THEN the node is launched with the template's volume and says so, and the refusal is reported (not as the
    # offering's: the instance type is not to blame, and the next type would meet the same quota)
    (instance,) = result.instances
    assert refused == [True]
    assert root_volumes(ec2, instance.instance_id)[ROOT_DEVICE] == (64, "gp3", True)
    assert instance.node_storage is None and f.describe()[0].node_storage is None
    assert [(x.code, x.offering_error) for x in result.failures] == [("VolumeLimitExceeded", False)]
    # AND the round retried launches nothing more: the smaller launch has its own token
    again = f.launch(sized, idempotency_key="r1")
    assert [i.instance_id for i in again.instances] == [instance.instance_id] and len(f.describe()) == 1


def test_a_launch_the_volume_quota_refuses_at_any_size_stops(ec2: Any, root_template: str) -> None:
    # GIVEN a quota that refuses every volume (the count of volumes, or a template as large as what is left)
    f = fleet(ec2, root_template)
    refused = refuse_root_volumes(ec2, sized_only=False)
    # WHEN a sized launch with two instance types to choose from is tried
    two_types = launch("c5.4xlarge", 1, "c5.4xlarge", "c5a.4xlarge")
    result = f.launch(replace(two_types, node_storage=300 * GiB), idempotency_key="r1")
    # THEN it tries the larger volume, then the template's, and not the second type: the quota is the region's
    assert refused == [True, False]
    assert result.instances == () and [x.instance_type for x in result.failures] == ["c5.4xlarge", "c5.4xlarge"]


def test_an_unsized_launch_refused_by_the_volume_quota_is_not_tried_again(ec2: Any, root_template: str) -> None:
    f = fleet(ec2, root_template)
    refused = refuse_root_volumes(ec2, sized_only=False)
    result = f.launch(launch(count=1), idempotency_key="r1")
    assert refused == [False] and result.instances == ()
    assert [(x.code, x.offering_error) for x in result.failures] == [("VolumeLimitExceeded", False)]


@pytest.mark.parametrize(
    ("code", "refused"),
    [("Client.VolumeLimitExceeded", True), ("Client.UserInitiatedShutdown", False), (None, False)],
)
def test_an_instance_ended_by_the_storage_quota_as_it_started_is_told_apart(
    ec2: Any, root_template: str, code: str | None, refused: bool
) -> None:
    # GIVEN a sized node EC2 accepted and then ended as it started, for the quota or for another reason
    f = fleet(ec2, root_template)
    (instance,) = f.launch(replace(launch(count=1), node_storage=300 * GiB), idempotency_key="r1").instances
    if code is not None:
        ec2.terminate_instances(InstanceIds=[instance.instance_id])
        moto_instance = ec2_backends[DEFAULT_ACCOUNT_ID][REGION].get_instance(instance.instance_id)
        moto_instance.state_reason = StateReason(f"{code}: injected", code)
    # THEN only the quota's refusal is read as one
    assert f.refused_root_volume(instance.instance_id) is refused


def test_an_instance_ec2_no_longer_knows_was_not_refused_a_volume(ec2: Any, root_template: str) -> None:
    # DescribeInstances answers InvalidInstanceID.NotFound: nothing is known, and the event is still handled
    assert fleet(ec2, root_template).refused_root_volume("i-0123456789abcdef0") is False

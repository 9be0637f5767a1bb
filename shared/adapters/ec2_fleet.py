"""The cluster's EC2 fleet: find it by tag, launch from the launch template, start, stop, terminate.

- Describe: one paginated DescribeInstances filtered by ``tag:shoal:cluster`` and the live states.
- Launch: RunInstances from the cluster's launch template with the instance type (and spot market)
  overridden, tagged with the cluster, offer, market and a launch token. The token is also the
  ClientToken, so EC2 launches once per (round, pass, offer, type, zone, market) however often the round
  is retried; before launching, instances already carrying the token are looked up, which gives the
  same guarantee where the ClientToken is not honoured (moto) or has been forgotten.
- A launch that names ``node_storage`` overrides the template's root volume with a larger one of the same
  kind and tags the instance ``shoal:node-storage`` (GiB), so an adopted node's size and price are known. If the
  region's EBS storage quota refuses it (``VolumeLimitExceeded``), that option is launched again with the template's
  volume, and the refusal is reported beside the nodes. EC2 can also accept the launch and end the instance as it
  starts (state reason ``Client.VolumeLimitExceeded``): ``refused_root_volume`` reads that reason for the
  instance-event handler.
- Errors are classified by EC2's error *code*, never its message: capacity, price, quota and
  unsupported-type codes mean "this offering, not now" (the caller caches it and the next option is
  tried); anything else stops this launch and is reported.
- Start/stop/terminate: one call per group (up to 1,000 ids). A call refused because of some ids is
  halved until the bad ids are isolated, so one gone instance never blocks the rest.
- Throttling and transient faults are retried by botocore's standard retry mode (``aws.client``).

``calls`` counts API calls by operation (a botocore ``before-call`` hook), for tests and benchmarks.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from shared.adapters import aws
from shared.adapters.ec2_errors import (
    OFFERING_ERROR_CODES,
    PER_INSTANCE_ERROR_CODES,
    VOLUME_QUOTA_CODES,
    VOLUME_QUOTA_STATE_REASONS,
    error_code,
)
from shared.domain.catalog import volume_gib
from shared.domain.cluster_state import Market
from shared.domain.decision import Instance, InstanceState, Launch, LaunchOption
from shared.domain.units import GiB
from shared.services.ports import BatchResult, InstanceFailure, LaunchFailure, LaunchResult

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import (
        BlockDeviceMappingTypeDef,
        FilterTypeDef,
        InstanceMarketOptionsRequestTypeDef,
        InstanceTypeDef,
        TagSpecificationTypeDef,
    )

CLUSTER_TAG = "shoal:cluster"
ROLE_TAG = "shoal:role"  # "leader" on the cluster's leader (launch-cluster --leaderNodeType); workers have none
LEADER_ROLE = "leader"
OFFER_TAG = "shoal:offer"
MARKET_TAG = "shoal:market"
LAUNCH_TAG = "shoal:launch"
STATIC_TAG = "shoal:static"
NODE_STORAGE_TAG = "shoal:node-storage"  # GiB of root volume, on a node launched with more than the template's
ROOT_DEVICE = "/dev/xvda"  # Amazon Linux 2023's root device: the launch template's and a sized launch's

LIVE_STATES = ("pending", "running", "stopping", "stopped")
INVENTORY_STATES = (*LIVE_STATES, "shutting-down")
BATCH_LIMIT = 1000  # instance ids in one Start/Stop/TerminateInstances call
DESCRIBE_PAGE_SIZE = 1000  # DescribeInstances' largest page
MUTATING_OPERATIONS = frozenset(
    {"RunInstances", "StartInstances", "StopInstances", "TerminateInstances", "CreateTags", "DeleteTags"}
)


class CallCounter:
    """API calls made through a client, by operation name (not counting botocore's own retries)."""

    def __init__(self) -> None:
        self.by_operation: Counter[str] = Counter()

    def attach(self, client: Any, service: str = "ec2") -> None:
        # before-parameter-build fires once per call, before any handler can answer it (or a retry repeats it).
        client.meta.events.register(f"before-parameter-build.{service}", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.by_operation[str(model.name)] += 1

    @property
    def total(self) -> int:
        return sum(self.by_operation.values())

    @property
    def mutating(self) -> int:
        return sum(n for op, n in self.by_operation.items() if op in MUTATING_OPERATIONS)

    def reset(self) -> None:
        self.by_operation.clear()


def client_token(idempotency_key: str, launch: Launch, option: LaunchOption) -> str:
    """A ClientToken (at most 64 ASCII characters) for one launch option of one round."""
    parts = [idempotency_key, launch.offer_key, option.instance_type, option.zone or "", str(launch.market)]
    if launch.node_storage is not None:  # EC2 refuses a token reused with another volume; None keeps old tokens
        parts.append(f"{volume_gib(launch.node_storage)}GiB")
    return "shoal-" + hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:48]


def root_block_device(node_storage: int) -> BlockDeviceMappingTypeDef:
    """The root volume of ``node_storage`` bytes: the launch template's (cdk/launch_template.py), resized."""
    return {
        "DeviceName": ROOT_DEVICE,
        "Ebs": {
            "VolumeSize": volume_gib(node_storage),
            "VolumeType": "gp3",
            "Encrypted": True,
            "DeleteOnTermination": True,
        },
    }


class Ec2Fleet:
    """``Fleet`` on EC2 for one cluster."""

    def __init__(
        self,
        *,
        cluster: str,
        launch_template_id: str,
        subnet_ids: Sequence[str] = (),
        zone: str | None = None,
        client: EC2Client | None = None,
        region: str | None = None,
        page_size: int = DESCRIBE_PAGE_SIZE,
    ) -> None:
        self.cluster = cluster
        self.launch_template_id = launch_template_id
        self.subnet_ids = tuple(subnet_ids)
        self.zone = zone  # the cluster's zone setting: only subnets there are used
        self.page_size = page_size
        self.client: EC2Client = client if client is not None else aws.client("ec2", region)
        self.calls = CallCounter()
        self.calls.attach(self.client)
        self._subnet_of_zone: dict[str, str] | None = None

    # --- observing --------------------------------------------------------------------------------

    def describe(self) -> list[Instance]:
        """The cluster's workers not yet terminated (a shutting-down node's jobs may still run); its leader
        (``shoal:role=leader``) is not the scaler's to adopt or scale in."""
        return self._describe([{"Name": "instance-state-name", "Values": list(INVENTORY_STATES)}], workers_only=True)

    def zones(self) -> tuple[str, ...]:
        return tuple(self._subnets())

    def all_instances(self) -> list[Instance]:
        """Every cluster instance not yet terminated, shutting-down ones included (a teardown's inventory)."""
        return self._describe([{"Name": "instance-state-name", "Values": list(INVENTORY_STATES)}])

    def open_spot_requests(self) -> list[str]:
        """Spot requests of the cluster that could still start an instance."""
        paginator = self.client.get_paginator("describe_spot_instance_requests")
        pages = paginator.paginate(
            Filters=[
                {"Name": f"tag:{CLUSTER_TAG}", "Values": [self.cluster]},
                {"Name": "state", "Values": ["open", "active"]},
            ]
        )
        return [r["SpotInstanceRequestId"] for page in pages for r in page.get("SpotInstanceRequests", [])]

    def _describe(self, filters: list[FilterTypeDef], *, workers_only: bool = False) -> list[Instance]:
        paginator = self.client.get_paginator("describe_instances")
        pages = paginator.paginate(
            Filters=[{"Name": f"tag:{CLUSTER_TAG}", "Values": [self.cluster]}, *filters],
            PaginationConfig={"PageSize": self.page_size},
        )
        return [
            _instance(raw)
            for page in pages
            for reservation in page.get("Reservations", [])
            for raw in reservation.get("Instances", [])
            if not (workers_only and {"Key": ROLE_TAG, "Value": LEADER_ROLE} in raw.get("Tags", []))
        ]

    def _subnets(self) -> dict[str, str]:
        """Zone → subnet for the configured subnets (one DescribeSubnets, once); {} without subnets."""
        if self._subnet_of_zone is None:
            mapping: dict[str, str] = {}
            if self.subnet_ids:
                response = self.client.describe_subnets(SubnetIds=list(self.subnet_ids))
                zone_of = {s["SubnetId"]: s["AvailabilityZone"] for s in response.get("Subnets", [])}
                for subnet_id in self.subnet_ids:  # the configured order is the preference order
                    zone = zone_of.get(subnet_id)
                    if zone and (self.zone is None or zone == self.zone) and zone not in mapping:
                        mapping[zone] = subnet_id
            elif self.zone:
                mapping[self.zone] = ""
            self._subnet_of_zone = mapping
        return self._subnet_of_zone

    # --- launching --------------------------------------------------------------------------------

    def launch(self, launch: Launch, *, idempotency_key: str) -> LaunchResult:
        failures: list[LaunchFailure] = []
        for option in launch.options:
            instances = self._launch_option(launch, option, idempotency_key, failures)
            if instances is None and launch.node_storage is not None and failures[-1].code in VOLUME_QUOTA_CODES:
                # The region's EBS storage quota refused the larger root volume: a node with the template's volume
                # still runs jobs that fit it, where no node runs none (the failure stays reported: raise the quota).
                unsized = replace(launch, node_storage=None)
                instances = self._launch_option(unsized, option, idempotency_key, failures)
            if instances is not None:
                return LaunchResult(instances=instances, failures=tuple(failures))
            if not failures[-1].offering_error:
                break  # not about this offering: the next one would fail the same way
        return LaunchResult(instances=(), failures=tuple(failures))

    def _launch_option(
        self, launch: Launch, option: LaunchOption, idempotency_key: str, failures: list[LaunchFailure]
    ) -> tuple[Instance, ...] | None:
        """The instances this option launched (or had launched under its token), or None with its failure noted."""
        token = client_token(idempotency_key, launch, option)
        earlier = self._launched_with(token)
        if earlier:
            return tuple(earlier)
        try:
            response = self.client.run_instances(**self._run_request(launch, option, token))
        except ClientError as error:
            code, message = error_code(error)
            if code == "IdempotentParameterMismatch":  # launched under this token with other parameters
                return tuple(self._launched_with(token))
            failures.append(
                LaunchFailure(
                    instance_type=option.instance_type,
                    zone=option.zone,
                    code=code,
                    message=message,
                    offering_error=code in OFFERING_ERROR_CODES,
                    volume_quota=code in VOLUME_QUOTA_CODES,
                )
            )
            return None
        # The size asked for, as its tag names it, not read back from the response (RunInstances need not echo tags).
        size = None if launch.node_storage is None else volume_gib(launch.node_storage) * GiB
        return tuple(replace(_instance(raw), node_storage=size) for raw in response.get("Instances", []))

    def _launched_with(self, token: str) -> list[Instance]:
        return self._describe(
            [
                {"Name": f"tag:{LAUNCH_TAG}", "Values": [token]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )

    def _run_request(self, launch: Launch, option: LaunchOption, token: str) -> dict[str, Any]:
        tags = [
            {"Key": CLUSTER_TAG, "Value": self.cluster},
            {"Key": OFFER_TAG, "Value": launch.offer_key},
            {"Key": MARKET_TAG, "Value": str(launch.market)},
            {"Key": LAUNCH_TAG, "Value": token},
            {"Key": "Name", "Value": f"shoal-{self.cluster}-{'static' if launch.static else 'worker'}"},
        ]
        if launch.static:
            tags.append({"Key": STATIC_TAG, "Value": "true"})
        if launch.node_storage is not None:
            tags.append({"Key": NODE_STORAGE_TAG, "Value": str(volume_gib(launch.node_storage))})
        tag_specifications: list[TagSpecificationTypeDef] = [
            {"ResourceType": "instance", "Tags": tags},  # type: ignore[typeddict-item]
            {"ResourceType": "volume", "Tags": [{"Key": CLUSTER_TAG, "Value": self.cluster}]},
        ]
        if launch.market is Market.SPOT:  # so a teardown finds the request too
            tag_specifications.append(
                {"ResourceType": "spot-instances-request", "Tags": [{"Key": CLUSTER_TAG, "Value": self.cluster}]}
            )
        request: dict[str, Any] = {
            "LaunchTemplate": {"LaunchTemplateId": self.launch_template_id, "Version": "$Default"},
            "InstanceType": option.instance_type,
            "MinCount": launch.count,
            "MaxCount": launch.count,
            "ClientToken": token,
            "TagSpecifications": tag_specifications,
        }
        if launch.node_storage is not None:
            request["BlockDeviceMappings"] = [root_block_device(launch.node_storage)]
        if launch.market is Market.SPOT:
            spot: InstanceMarketOptionsRequestTypeDef = {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
            }
            if launch.bid is not None:
                spot["SpotOptions"]["MaxPrice"] = f"{launch.bid:.4f}"
            request["InstanceMarketOptions"] = spot
        if option.zone is not None:
            subnet = self._subnets().get(option.zone)
            if subnet:
                request["SubnetId"] = subnet
            else:
                request["Placement"] = {"AvailabilityZone": option.zone}
        return request

    def refused_root_volume(self, instance_id: str) -> bool:
        try:
            response = self.client.describe_instances(InstanceIds=[instance_id])
        except ClientError:
            return False  # gone from EC2's memory, or not allowed: the next refusal tells again
        return any(
            raw.get("StateReason", {}).get("Code") in VOLUME_QUOTA_STATE_REASONS
            for reservation in response.get("Reservations", [])
            for raw in reservation.get("Instances", [])
        )

    # --- start, stop, terminate -------------------------------------------------------------------

    def start(self, instance_ids: Sequence[str]) -> BatchResult:
        return self._batch(lambda ids: self.client.start_instances(InstanceIds=ids), instance_ids)

    def stop(self, instance_ids: Sequence[str]) -> BatchResult:
        return self._batch(lambda ids: self.client.stop_instances(InstanceIds=ids), instance_ids)

    def terminate(self, instance_ids: Sequence[str]) -> BatchResult:
        return self._batch(lambda ids: self.client.terminate_instances(InstanceIds=ids), instance_ids)

    def _batch(self, call: Callable[[list[str]], object], instance_ids: Sequence[str]) -> BatchResult:
        done: list[str] = []
        failed: list[InstanceFailure] = []
        ids = list(dict.fromkeys(instance_ids))
        for start in range(0, len(ids), BATCH_LIMIT):
            self._bisect(call, ids[start : start + BATCH_LIMIT], done, failed)
        return BatchResult(done=tuple(done), failed=tuple(failed))

    def _bisect(
        self, call: Callable[[list[str]], object], ids: list[str], done: list[str], failed: list[InstanceFailure]
    ) -> None:
        try:
            call(ids)
        except ClientError as error:
            code, message = error_code(error)
            if len(ids) > 1 and code in PER_INSTANCE_ERROR_CODES:
                middle = len(ids) // 2
                self._bisect(call, ids[:middle], done, failed)
                self._bisect(call, ids[middle:], done, failed)
            else:
                failed.extend(InstanceFailure(instance_id=i, code=code, message=message) for i in ids)
            return
        done.extend(ids)


def _instance(raw: InstanceTypeDef) -> Instance:
    tags = {t.get("Key", ""): t.get("Value", "") for t in raw.get("Tags", [])}
    market_tag = tags.get(MARKET_TAG)
    if market_tag in (Market.SPOT, Market.ON_DEMAND):
        market = Market(market_tag)
    else:
        market = Market.SPOT if raw.get("InstanceLifecycle") == "spot" else Market.ON_DEMAND
    launch_time = raw.get("LaunchTime")
    state = raw["State"]["Name"]
    return Instance(
        instance_id=raw["InstanceId"],
        instance_type=raw["InstanceType"],
        # Descriptions are filtered by state and a launch answers "pending"; "terminated" is on its way out.
        state=InstanceState(state) if state in INVENTORY_STATES else InstanceState.SHUTTING_DOWN,
        market=market,
        offer_key=tags.get(OFFER_TAG) or None,
        zone=raw.get("Placement", {}).get("AvailabilityZone"),
        static=tags.get(STATIC_TAG, "").lower() == "true",
        launched_at=launch_time.timestamp() if isinstance(launch_time, datetime) else 0.0,
        node_storage=node_storage_of_tag(tags.get(NODE_STORAGE_TAG)),
    )


def node_storage_of_tag(tag: str | None) -> int | None:
    """Bytes from a ``shoal:node-storage`` tag; a value Shoal did not write (edited by hand) is ignored."""
    try:
        gib = int(tag) if tag is not None else 0
    except ValueError:
        return None
    return gib * GiB if gib > 0 else None

"""The in-memory twin of ``Ec2Fleet``: a whole scaling round runs against it without moto.

It keeps the ``Fleet`` contract: a launch tries its options in order and stops at the first EC2 accepts;
an option refused for capacity (``refuse``) is an offering error and the next option is tried; the same
idempotency key and option never launch twice; start, stop and terminate answer per instance id and never
raise. Instances launch ``pending``; ``settle()`` moves them on, as EC2 does a few seconds later. Nothing
here survives the process: tests and simulations only (left out of the Lambda asset and the node code).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from shared.domain.cluster_state import Market
from shared.domain.decision import Instance, InstanceState, Launch, LaunchOption
from shared.services.ports import BatchResult, InstanceFailure, LaunchFailure, LaunchResult, Now

if TYPE_CHECKING:
    from shared.adapters.ec2_fleet import Ec2Fleet
    from shared.services.ports import Fleet

CAPACITY_ERROR = "InsufficientInstanceCapacity"
NOT_FOUND = "InvalidInstanceID.NotFound"
_NEXT_STATE = {InstanceState.PENDING: InstanceState.RUNNING, InstanceState.STOPPING: InstanceState.STOPPED}


class MemoryFleet:
    """``Fleet`` in memory: ``instances`` by id (terminated ones are dropped), ``launches`` in call order."""

    def __init__(self, *, zones: Sequence[str] = (), clock: Now = lambda: 0.0) -> None:
        self._zones = tuple(zones)
        self._clock = clock
        self.instances: dict[str, Instance] = {}
        self.launches: list[Launch] = []  # every launch asked for, refused ones included
        self.terminated: list[str] = []
        self.volume_refused: set[str] = set()  # instances EC2 ended because the EBS storage quota refused their volume
        self._refused: dict[tuple[str, str | None, Market | None], str] = {}
        self._by_token: dict[str, tuple[str, ...]] = {}
        self._ids = itertools.count(1)

    # ── what a test arranges ────────────────────────────────────────────────────────────────────

    def refuse(self, instance_type: str, *, zone: str | None = None, market: Market | None = None) -> None:
        """Launches of ``instance_type`` (in ``zone``, in ``market``; None: any) fail for lack of capacity."""
        self._refused[(instance_type, zone, market)] = CAPACITY_ERROR

    def allow(self, instance_type: str) -> None:
        """Capacity for ``instance_type`` is back, everywhere."""
        self._refused = {key: code for key, code in self._refused.items() if key[0] != instance_type}

    def settle(self) -> None:
        """Pending instances run, stopping ones stop, shutting-down ones are gone."""
        for instance_id, instance in list(self.instances.items()):
            if instance.state is InstanceState.SHUTTING_DOWN:
                del self.instances[instance_id]
            elif instance.state in _NEXT_STATE:
                self.instances[instance_id] = replace(instance, state=_NEXT_STATE[instance.state])

    # ── Fleet ───────────────────────────────────────────────────────────────────────────────────

    def describe(self) -> list[Instance]:
        return list(self.instances.values())

    def zones(self) -> tuple[str, ...]:
        return self._zones

    def launch(self, launch: Launch, *, idempotency_key: str) -> LaunchResult:
        self.launches.append(launch)
        failures: list[LaunchFailure] = []
        for option in launch.options:
            token = f"{idempotency_key}|{launch.offer_key}|{option.instance_type}|{option.zone}|{launch.market}"
            token += f"|{launch.node_storage}" if launch.node_storage is not None else ""  # as EC2's token does
            if token in self._by_token:
                earlier = tuple(self.instances[i] for i in self._by_token[token] if i in self.instances)
                return LaunchResult(instances=earlier, failures=tuple(failures))
            code = self._refusal(option, launch.market)
            if code is not None:
                message = f"no capacity for {option.instance_type} in {option.zone or 'any zone'}"
                failures.append(
                    LaunchFailure(
                        instance_type=option.instance_type,
                        zone=option.zone,
                        code=code,
                        message=message,
                        offering_error=True,
                    )
                )
                continue
            instances = tuple(self._new_instance(launch, option) for _ in range(launch.count))
            self._by_token[token] = tuple(i.instance_id for i in instances)
            return LaunchResult(instances=instances, failures=tuple(failures))
        return LaunchResult(instances=(), failures=tuple(failures))

    def start(self, instance_ids: Sequence[str]) -> BatchResult:
        return self._batch(instance_ids, InstanceState.PENDING, from_states={InstanceState.STOPPED})

    def stop(self, instance_ids: Sequence[str]) -> BatchResult:
        return self._batch(instance_ids, InstanceState.STOPPING, from_states={InstanceState.RUNNING})

    def terminate(self, instance_ids: Sequence[str]) -> BatchResult:
        result = self._batch(instance_ids, InstanceState.SHUTTING_DOWN, from_states=set(InstanceState))
        self.terminated += result.done
        return result

    # ── inside ──────────────────────────────────────────────────────────────────────────────────

    def refused_root_volume(self, instance_id: str) -> bool:
        return instance_id in self.volume_refused

    def _refusal(self, option: LaunchOption, market: Market) -> str | None:
        for zone in (option.zone, None):
            for of_market in (market, None):
                code = self._refused.get((option.instance_type, zone, of_market))
                if code is not None:
                    return code
        return None

    def _new_instance(self, launch: Launch, option: LaunchOption) -> Instance:
        instance = Instance(
            instance_id=f"i-{next(self._ids):017x}",
            instance_type=option.instance_type,
            state=InstanceState.PENDING,
            market=launch.market,
            offer_key=launch.offer_key,
            zone=option.zone if option.zone is not None else (self._zones[0] if self._zones else None),
            static=launch.static,
            launched_at=self._clock(),
            node_storage=launch.node_storage,  # as the shoal:node-storage tag gives it back
        )
        self.instances[instance.instance_id] = instance
        return instance

    def _batch(self, instance_ids: Sequence[str], to: InstanceState, *, from_states: set[InstanceState]) -> BatchResult:
        done: list[str] = []
        failed: list[InstanceFailure] = []
        for instance_id in dict.fromkeys(instance_ids):
            instance = self.instances.get(instance_id)
            if instance is None:
                failed.append(InstanceFailure(instance_id=instance_id, code=NOT_FOUND, message="no such instance"))
            elif instance.state is to or instance.state in from_states:
                self.instances[instance_id] = replace(instance, state=to)
                done.append(instance_id)
            else:
                message = f"instance {instance_id} is {instance.state}: it cannot go to {to}"
                failed.append(InstanceFailure(instance_id=instance_id, code="IncorrectInstanceState", message=message))
        return BatchResult(done=tuple(done), failed=tuple(failed))


if TYPE_CHECKING:  # mypy checks that the twin and the EC2 adapter implement the same port

    def _implement_the_port(ec2: Ec2Fleet) -> None:
        fleets: list[Fleet] = [MemoryFleet(), ec2]
        del fleets

"""What the demo's driver watches each tick: the instances in EC2, and a sample of the timeline (queue, jobs,
nodes, node spans with their prices) for the report and the plot; and how its clock ran."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from shared.adapters.ec2_fleet import MARKET_TAG, OFFER_TAG
from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.scaling import node_hourly_price
from shared.local.clock import LockstepClock
from shared.local.nodes import LIVE, InstanceView, describe_instances
from shared.local.report import NodeSpan, Sample

if TYPE_CHECKING:
    from shared.local.demo import Demo

NOT_TERMINATED = ("pending", "running", "shutting-down", "stopping", "stopped")


def instances(demo: Demo) -> list[InstanceView]:
    """Every instance this run has seen, in its state now. EC2 keeps terminated instances listed, and
    describing them all each step grew to most of a step's time: this asks only for the others, and an
    instance that has left that list has been terminated."""
    # On the lockstep clock only a handler (a round, a launch step) changes EC2 between steps; chaos and
    # the state machines do it behind the demo's back.
    lockstep = isinstance(demo.clock, LockstepClock) and demo.options.chaos is None
    key = (sum(demo.lambdas.invocations.values()), demo._executing)
    if lockstep and key == demo._described and not demo._executing:
        return list(demo._known.values())
    demo._described = key
    views = describe_instances(demo.settings.region, demo._ec2, states=NOT_TERMINATED)
    seen = {view.instance_id for view in views}
    for instance_id, known in list(demo._known.items()):
        if instance_id not in seen and known.state != "terminated":
            demo._known[instance_id] = replace(known, state="terminated")
    demo._known.update((view.instance_id, view) for view in views)
    return list(demo._known.values())


def sample(demo: Demo, views: Sequence[InstanceView]) -> None:
    now = demo.clock.elapsed()
    counts: Counter[str] = Counter()
    for view in views:
        if view.cluster != demo.settings.name:
            continue
        span = demo.timeline.spans.get(view.instance_id)
        if view.state in LIVE:
            counts[view.instance_type] += 1
            if span is None:
                demo.timeline.spans[view.instance_id] = NodeSpan(
                    instance_id=view.instance_id,
                    instance_type=view.instance_type,
                    hourly_price=_price(demo, view),
                    started=now,
                )
        elif span is not None and span.ended is None:
            span.ended = now
    with demo.nodes.executions_log.open(encoding="utf-8") as log:
        done = sum(1 for _ in log)
    demo.timeline.samples.append(
        Sample(
            t=now,
            waiting=demo.queue.depth().visible,
            running=demo.nodes.busy_jobs(),
            done=done,
            nodes=dict(counts),
            booting=demo.nodes.booting(),
        )
    )


def _price(demo: Demo, view: InstanceView) -> float:
    offer_key = view.tags.get(OFFER_TAG, view.instance_type)
    market = Market.SPOT if view.tags.get(MARKET_TAG) == Market.SPOT else Market.ON_DEMAND
    record = NodeRecord(instance_id=view.instance_id, offer_key=offer_key, instance_type=view.instance_type,
                        market=market, state=NodeState.ACTIVE)  # fmt: skip
    offer = next((o for o in demo.offers if o.key == offer_key), None)
    return node_hourly_price(record, offer, demo.settings.region)


def clock_facts(demo: Demo) -> dict[str, object]:
    """How simulated time was kept, for the report."""
    if not isinstance(demo.clock, LockstepClock):
        return {"clock": "accelerated"}
    gate = demo.nodes.lockstep.gate if demo.nodes.lockstep is not None else None
    return {
        "clock": "lockstep",
        "clock_step_seconds": demo.clock.step,
        "clock_steps": demo.clock.steps,
        "clock_overruns": (gate.overruns if gate is not None else 0) + demo.settle_timeouts,
    }

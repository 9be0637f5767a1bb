"""The last steps of a scaling decision: wanted counts per offer turned into actions.

To grow: un-drain draining on-demand nodes first, then start stopped warm-pool nodes, then launch. To shrink: drain
idle, non-static nodes, the smallest root volume first and then the most expensive; never a busy one; drain busy
surplus nodes whose jobs are expected to end soon (consolidation: on-demand ones always, spot ones while nothing is
queued; never one running a long job, whose end is not known well enough: ``demand.CONSOLIDATE_JOBS_UP_TO``; never
one of the only type a queued job fits). Draining nodes that are confirmed idle are stopped (on-demand, while the warm
pool is below its size) or terminated.
"""

from collections.abc import Mapping, Sequence

from shared.domain import policy
from shared.domain.cluster_state import Market, NodeRecord
from shared.domain.decision import (
    Action,
    Drain,
    InstanceState,
    Launch,
    StartStopped,
    Stop,
    Terminate,
    Undrain,
)
from shared.domain.node_types import Offer
from shared.domain.resources import Resources
from shared.domain.scaling_fleet import Blocked, Fleet, Target, node_hourly_price
from shared.domain.settings import ClusterSettings
from shared.domain.units import GiB

# A surplus node still running jobs is drained when they are expected to end within this (and kept otherwise):
# short enough that its capacity is not missed, long enough to catch the jobs that keep a node alive.
CONSOLIDATE_WITHIN = 600.0


class Changes:
    """Turns wanted counts into actions, remembering what this decision already reuses."""

    def __init__(
        self, fleet: Fleet, blocked: Blocked, target: Target, settings: ClusterSettings, actions: list[Action]
    ) -> None:
        self.fleet, self.blocked, self.target, self.settings, self.actions = fleet, blocked, target, settings, actions
        self.reasons: list[str] = []
        self.starting: set[str] = set()
        self.undrained: set[str] = set()
        self.empties_at: Mapping[str, float] = {}
        self.queued = False  # are jobs queued (then only on-demand surplus is consolidated)
        self.now = 0.0
        self.waiting: Sequence[tuple[Resources, bool]] = ()  # what queued jobs need (and may they run on spot)

    def resize(self, key: str) -> None:
        offer = self.target.offers.get(key)
        want = self.target.wanted.get(key, 0)
        have = self.fleet.live.get(key, [])
        if want > len(have) and offer is not None:
            self._grow(offer, want, have)
        elif want < len(have):
            self._shrink(key, offer, want, have)

    def _grow(self, offer: Offer, want: int, have: Sequence[NodeRecord]) -> None:
        need = want - len(have)
        market = Market.SPOT if offer.spot else Market.ON_DEMAND
        # Busy draining nodes first: they are surely up and already paid for. Spot nodes stay drained: a
        # spot node may be draining because EC2 recommended rebalancing it, which its record cannot tell.
        back = sorted(
            (n for n in self.fleet.draining.get(offer.key, []) if n.market is Market.ON_DEMAND),
            key=lambda n: (not n.busy, n.instance_id),
        )[:need]
        if back:
            ids = tuple(n.instance_id for n in back)
            self.undrained.update(ids)
            need -= len(ids)
            self.actions.append(
                Undrain(
                    offer_key=offer.key,
                    instance_ids=ids,
                    reason=f"{offer.key}: want {want}, have {len(have)}; {len(ids)} draining nodes are wanted again",
                )
            )
        warm = sorted(
            (
                n
                for n in self.fleet.pool
                if n.offer_key == offer.key
                and self.fleet.ec2_state.get(n.instance_id) is InstanceState.STOPPED
                and not self.blocked.blocks(n.instance_type, n.zone, market)
            ),
            key=lambda n: n.instance_id,
        )[:need]
        if warm:
            ids = tuple(n.instance_id for n in warm)
            self.starting.update(ids)
            need -= len(ids)
            self.actions.append(
                StartStopped(
                    offer_key=offer.key,
                    instance_ids=ids,
                    reason=f"{offer.key}: {len(ids)} stopped warm-pool nodes start faster than new ones launch",
                )
            )
        options = self.target.options.get(offer.key, ())
        if need and options:
            reused = want - len(have) - need
            sized = offer.node_storage != self.settings.node_storage  # grown for the queue (shared.domain.volumes)
            self.actions.append(
                Launch(
                    offer_key=offer.key,
                    count=need,
                    market=market,
                    bid=offer.bid,
                    options=options,
                    node_storage=offer.node_storage if sized else None,
                    reason=f"{offer.key}: want {want}, have {len(have)} live"
                    + (f", {reused} reused" if reused else "")
                    + f"; launch {need} at ${offer.hourly_price:.4f}/h each"
                    + (f", with {offer.node_storage / GiB:g} GiB root volumes" if sized else ""),
                )
            )

    def _shrink(self, key: str, offer: Offer | None, want: int, have: Sequence[NodeRecord]) -> None:
        surplus = len(have) - want
        idle = [n for n in have if not n.static and not n.busy]
        if offer is not None and policy.could_start_queued(offer, self.waiting):
            # A queued job would start on it now (or once it has booted): draining it only to launch again
            # when the estimate moves back is the churn a burst of learned runtimes causes.
            if idle:
                self.reasons.append(f"{key}: {len(idle)} idle nodes kept: queued jobs fit them")
            idle = []
        # The smallest root volume first, then the most expensive; on a tie the newest (least likely to hold warm
        # caches).
        idle.sort(
            key=lambda n: (
                self._volume(n),
                -node_hourly_price(n, offer, self.settings.region),
                -n.launched_at,
                n.instance_id,
            )
        )
        chosen = idle[:surplus]
        why = "no longer offered" if offer is None else f"want {want}, have {len(have)} live"
        if chosen:
            self.actions.append(
                Drain(
                    offer_key=key,
                    instance_ids=tuple(n.instance_id for n in chosen),
                    reason=f"{key}: {why}; drain {len(chosen)} idle nodes, most expensive first",
                )
            )
        stragglers = self._stragglers(have, offer, surplus - len(chosen))
        if stragglers:
            self.actions.append(
                Drain(
                    offer_key=key,
                    instance_ids=tuple(n.instance_id for n in stragglers),
                    reason=f"{key}: {why}; drain {len(stragglers)} busy nodes whose jobs are expected to end within "
                    f"{CONSOLIDATE_WITHIN:.0f} s: they take no new work, finish what they run and leave",
                )
            )
        kept = surplus - len(chosen) - len(stragglers)
        if kept > 0:
            self.reasons.append(f"{key}: {kept} surplus nodes keep running: they are busy or static")

    def _stragglers(self, have: Sequence[NodeRecord], offer: Offer | None, count: int) -> list[NodeRecord]:
        """Busy surplus nodes to drain (consolidate): the jobs left on them end soon by their expected runtimes, so
        new work goes to the nodes that stay and these empty instead of being kept by a trickle of new jobs.
        Nothing is moved or killed: a drained node runs its jobs to their end. Spot nodes only while nothing is
        queued; on-demand ones whenever the plan wants fewer of them."""
        if count <= 0 or not self.empties_at:
            return []
        if offer is not None and policy.only_type_for_queued(offer, self.waiting, list(self.target.offers.values())):
            # A queued job that runs on this node type alone would start on one of these as its jobs end; drained,
            # it waits for a new one to boot (the demo's 48 GiB jobs waited up to 43 min).
            return []
        if self.queued and (offer is None or offer.spot):
            # A queued job would rather start on a busy spot node than wait for a new one (draining spot nodes while
            # jobs were queued cost more: nf-chipseq $17.96, nf-mag $87.37, against $16.91 and $83.97). A surplus
            # on-demand node is another matter: the plan put the queued jobs on cheaper nodes, and a trickle of
            # them would keep it alive (nf-mag: r5.4xlarge on demand kept busy by jobs that spot c5.4xlarge run
            # for a third of the price per job).
            return []
        # A busy node with no expected end (a long job, a record not read) is never one of them.
        soon = [
            n
            for n in have
            if n.busy and not n.static and n.instance_id in self.empties_at
            and self.empties_at[n.instance_id] - self.now <= CONSOLIDATE_WITHIN
        ]  # fmt: skip
        price = {n.instance_id: node_hourly_price(n, offer, self.settings.region) for n in soon}
        soon.sort(key=lambda n: (self._volume(n), -price[n.instance_id], self.empties_at[n.instance_id], n.instance_id))
        return soon[:count]

    def _volume(self, node: NodeRecord) -> int:
        """Its root volume, by which surplus nodes of one offer leave smallest first. A round grows volumes so that
        disk does not fill a node first; of two nodes that differ in it, the larger holds more of the jobs to come for
        the little its volume costs (draining the dearer, larger ones first cost nf-mag 4 %: docs/simulate.md,
        session 21). A node launched unsized has the cluster's volume."""
        return node.node_storage if node.node_storage is not None else self.settings.node_storage

    def retire(self, now: float) -> None:
        """Draining nodes that are idle leave: into the warm pool while it has room, else terminated."""
        offers, region, size = self.target.offers, self.settings.region, self.settings.warm_pool_size
        done = [
            n
            for group in self.fleet.draining.values()
            for n in group
            if n.instance_id not in self.undrained and not n.static and _confirmed_idle(n)
        ]
        kept_pool = [n for n in self.fleet.pool if n.instance_id not in self.starting and not n.static]
        unusable = [n for n in kept_pool if n.offer_key not in offers and not n.busy]
        kept_pool = [n for n in kept_pool if n.offer_key in offers]
        room = size - len(kept_pool)
        # Only on-demand nodes can be stopped (a one-time spot instance cannot); the cheapest are kept warm.
        stoppable = sorted(
            (n for n in done if n.market is Market.ON_DEMAND and n.offer_key in offers),
            key=lambda n: (node_hourly_price(n, offers.get(n.offer_key), region), n.instance_id),
        )
        to_stop = stoppable[: max(0, room)]
        stop_ids = {n.instance_id for n in to_stop}
        to_terminate = [n for n in done if n.instance_id not in stop_ids]
        if to_stop:
            self.actions.append(
                Stop(
                    instance_ids=tuple(n.instance_id for n in to_stop),
                    reason=f"{len(to_stop)} drained idle nodes join the warm pool ({len(kept_pool)} of {size} stopped)",
                )
            )
        if to_terminate:
            self.actions.append(
                Terminate(
                    instance_ids=tuple(n.instance_id for n in to_terminate),
                    reason=f"{len(to_terminate)} drained nodes are idle"
                    + (" and the warm pool is full" if size else ""),
                )
            )
        excess = sorted(
            (n for n in kept_pool if not n.busy),
            key=lambda n: (-node_hourly_price(n, offers.get(n.offer_key), region), n.instance_id),
        )
        retired = [*unusable, *excess[: max(0, -room)]]
        if retired:
            self.actions.append(
                Terminate(
                    instance_ids=tuple(n.instance_id for n in retired),
                    reason=f"warm pool above its size {size}, or holding node types no longer offered",
                )
            )


def _confirmed_idle(node: NodeRecord) -> bool:
    """No jobs, as reported by an agent that already knew of the drain.

    Only such a report counts. An agent that knows starts nothing more (it learns under the same lock that
    guards its starts), so its empty report stays true. A report merely *timed* after the drain is not
    enough: a round stamps the drain with the time it started, and a report written before the drain
    may carry a later time and miss jobs started since (a busy node was terminated that way). A draining
    node whose agent never reports is left to the dead-agent rule, which returns its jobs first.
    """
    return node.drain_acknowledged and not node.busy

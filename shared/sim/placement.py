"""Zones and Spot Placement Scores in the simulator (issue 15), kept apart from the engine's event loop.

The deployed round asks EC2's ``GetSpotPlacementScores`` once per spot offer and passes the scores (offer key →
zone → 1-10) into ``decide`` beside the zones its launcher may use; ``shared.domain.placement.rank`` then orders
that offer's launch options by score, best zone first. The simulator has zones only when asked: the zones named
by ``--placement-scores TYPE@ZONE=SCORE`` and ``--capacity-errors TYPE@ZONE=RATE``. Then every launch option
carries a zone, a capacity error is drawn per (type, zone) and cached for that zone only, and the same scores go
into the real ``decide`` each round, so the launch goes where they point.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from shared.domain.node_types import Offer

ZONE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+[a-z]$")  # us-west-2a
EXAMPLE = "c5.4xlarge@us-west-2a=9,c5.4xlarge@us-west-2b=3"


def parse_scores(text: str, offers: Sequence[Offer], region: str) -> dict[str, dict[str, int]]:
    """``TYPE@ZONE=SCORE,..`` → spot offer key → zone → score; ``ValueError`` names the flag and the fix.

    TYPE is any instance type of a spot offer (its scores are the offer's: EC2 scores its types together)."""
    out: dict[str, dict[str, int]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        target, sep, value = part.partition("=")
        name, at, zone = target.strip().partition("@")
        if not sep or not at:
            raise ValueError(f"--placement-scores takes TYPE@ZONE=SCORE, e.g. {EXAMPLE}; got {part!r}")
        if not ZONE.match(zone) or not zone.startswith(region):
            raise ValueError(f"--placement-scores: {zone!r} is not a zone of {region} like {region}a (in {part!r})")
        try:
            score = int(value)
        except ValueError:
            score = 0
        if not 1 <= score <= 10:
            raise ValueError(f"--placement-scores: a score is a whole number from 1 to 10, got {value!r} in {part!r}")
        offer = next((o for o in offers if o.spot and name in o.instance_types), None)
        if offer is None:
            spot = ", ".join(t for o in offers if o.spot for t in o.instance_types) or "none: add ':BID' to a type"
            raise ValueError(f"--placement-scores: {name!r} is not a spot node type of --node-types (spot: {spot})")
        out.setdefault(offer.key, {})[zone] = score
    return out


def zones_named(scores: Mapping[str, Mapping[str, int]], capacity_errors: Iterable[str]) -> tuple[str, ...]:
    """The simulated zones: every zone a score or a ``TYPE@ZONE`` capacity error names, in name order."""
    named = {zone for by_zone in scores.values() for zone in by_zone}
    named.update(key.partition("@")[2] for key in capacity_errors if "@" in key)
    return tuple(sorted(named))


def capacity_error_rate(rates: Mapping[str, float], type_name: str, zone: str | None) -> float:
    """The chance a launch of ``type_name`` in ``zone`` is refused for capacity: the zone's rate, else the type's."""
    if zone is not None:
        rate = rates.get(f"{type_name}@{zone}")
        if rate is not None:
            return rate
    return rates.get(type_name, 0.0)


def score_reason(reasons: Iterable[str]) -> str | None:
    """The reason a decision gave for ordering launches by Spot Placement Score, if it gave one."""
    return next((r for r in reasons if "Spot Placement Score" in r), None)

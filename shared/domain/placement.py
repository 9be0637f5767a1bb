"""Spot launch order by Spot Placement Score: try the zones where EC2 says spot capacity is likeliest first.

EC2's ``GetSpotPlacementScores`` scores (1-10) how likely a spot request for a set of instance types
succeeds, per zone. The round asks once per spot offer (its instance types together) where the account
allows it, and passes the scores in; ``rank`` reorders that offer's launch options by its zones' scores,
best first, keeping the price order (cheapest type first) among options of equal score. Offers without
scores, options without a zone, and on-demand offers keep the price order.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.domain.decision import LaunchOption


def rank(
    options: Mapping[str, tuple[LaunchOption, ...]],
    scores: Mapping[str, Mapping[str, int]],
    reasons: list[str],
) -> dict[str, tuple[LaunchOption, ...]]:
    """``options`` per offer key, each spot offer's reordered by the scores of its zones (best first)."""
    out = dict(options)
    for key, by_zone in sorted(scores.items()):
        current = options.get(key)
        if not current or not by_zone:
            continue
        ranked = tuple(
            option
            for _, option in sorted(enumerate(current), key=lambda item: (-by_zone.get(item[1].zone or "", 0), item[0]))
        )
        out[key] = ranked
        if ranked != current:
            shown = ", ".join(f"{zone} {score}" for zone, score in sorted(by_zone.items(), key=lambda z: -z[1]))
            reasons.append(f"{key}: launch order by Spot Placement Score ({shown}), then price")
    return out

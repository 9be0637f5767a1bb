"""The decision log (``DECISION``/``{epoch ms, 15 digits}#{round id}``): why each round did what it did.

The sort key orders entries by time, so the newest are one backwards Query. Entries are stored as JSON
(whatever the round recorded, floats included) and expire after ``retention`` through the TTL attribute.
Recording the same round at the same time twice overwrites one item: a retried round logs once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from shared.adapters.state_table import StateTable, StateTableError, get_float, get_str, key, n, need_str, s, ttl

DECISION_PARTITION = "DECISION"
RETENTION = 7 * 24 * 3600.0


def decision_sort_key(round_id: str, now: float) -> str:
    return f"{round(now * 1000):015d}#{round_id}"


class DynamoDecisionLog:
    """``DecisionLog`` on the state table."""

    def __init__(self, table: StateTable, *, retention: float = RETENTION) -> None:
        self._table = table
        self._retention = retention

    def record(self, round_id: str, now: float, entry: Mapping[str, object]) -> None:
        self._table.put(
            {
                **key(DECISION_PARTITION, decision_sort_key(round_id, now)),
                "round_id": s(round_id),
                "at": n(now),
                "entry": s(json.dumps(dict(entry), sort_keys=True, default=str)),
                "expires_at": n(ttl(now + self._retention)),
            }
        )

    def recent(self, limit: int) -> list[dict[str, object]]:
        """The newest ``limit`` entries, newest first, each with its ``round_id`` and ``at`` added."""
        if limit <= 0:
            return []
        entries: list[dict[str, object]] = []
        for item in self._table.query(DECISION_PARTITION, newest_first=True, limit=limit):
            try:
                stored = json.loads(need_str(item, "entry"))
            except json.JSONDecodeError as error:
                raise StateTableError(
                    f"decision {get_str(item, 'sk')!r} in table {self._table.name!r} is not JSON: {error}"
                ) from None
            entry: dict[str, object] = stored if isinstance(stored, dict) else {"entry": stored}
            entry.setdefault("round_id", get_str(item, "round_id"))
            entry.setdefault("at", get_float(item, "at"))
            entries.append(entry)
        return entries

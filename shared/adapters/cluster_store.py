"""Cluster bookkeeping in the state table: settings and lifecycle status (``CLUSTER``/``SETTINGS``,
``CLUSTER``/``STATUS``) and the runtimes learned per job name (``RUNTIME``/``{job name}``).

The STATUS item's format (attribute names, the timestamp as text) is ``shared.formats.cluster_status``,
which the state machines that also write it are built from.

A status change may name the statuses it is allowed from (``expected``), so the launch and teardown
state machines cannot, say, mark a cluster ACTIVE that a teardown already started on. Runtimes are
two atomic counters per name (``count``, ``total_seconds``): concurrent agents never lose an update; each
scaling round reads them all (``demand_store.DynamoDemandStore.runtimes``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from shared.adapters.state_table import (
    StateTable,
    StateTableError,
    attr_names,
    get_float,
    get_int,
    get_str,
    key,
    n,
    need_str,
    s,
)
from shared.domain.cluster_state import ClusterStatus, ClusterStatusRecord
from shared.domain.runtimes import Runtimes
from shared.domain.settings import ClusterSettings, SettingsError
from shared.formats import cluster_status

SETTINGS_KEY = key("CLUSTER", "SETTINGS")
STATUS_KEY = key(cluster_status.PARTITION, cluster_status.SORT_KEY)
RUNTIME_PARTITION = "RUNTIME"


class DynamoClusterStore:
    """``ClusterStore`` on the state table."""

    def __init__(self, table: StateTable) -> None:
        self._table = table

    def put_settings(self, settings: ClusterSettings) -> None:
        self._table.put({**SETTINGS_KEY, "settings": s(json.dumps(settings.to_mapping(), sort_keys=True))})

    def get_settings(self) -> ClusterSettings | None:
        item = self._table.get(SETTINGS_KEY)
        if item is None:
            return None
        try:
            return ClusterSettings.from_mapping(json.loads(need_str(item, "settings")))
        except (json.JSONDecodeError, SettingsError) as error:
            raise StateTableError(f"cluster settings in table {self._table.name!r} are not valid: {error}") from None

    def set_status(
        self,
        status: ClusterStatus,
        *,
        reason: str | None,
        now: float,
        expected: Collection[ClusterStatus] | None = None,
    ) -> bool:
        item = {
            **STATUS_KEY,
            cluster_status.STATUS: s(status),
            cluster_status.UPDATED_AT: s(cluster_status.format_timestamp(now)),
        }
        if reason is not None:
            item[cluster_status.REASON] = s(reason)
        if expected is None:
            return self._table.put(item)
        allowed = sorted(set(expected))
        if not allowed:
            return False
        placeholders = {f":from{i}": s(value) for i, value in enumerate(allowed)}
        return self._table.put(
            item,
            condition=f"#{cluster_status.STATUS} IN ({', '.join(placeholders)})",
            names=attr_names(cluster_status.STATUS),
            values=placeholders,
        )

    def get_status(self) -> ClusterStatusRecord | None:
        item = self._table.get(STATUS_KEY)
        if item is None:
            return None
        return ClusterStatusRecord(
            status=ClusterStatus(need_str(item, cluster_status.STATUS)),
            reason=get_str(item, cluster_status.REASON),
            updated_at=self._updated_at(item),
        )

    def _updated_at(self, item: Mapping[str, Any]) -> float:
        """The text the state machines and ``set_status`` write (a number from older versions is taken too)."""
        text = get_str(item, cluster_status.UPDATED_AT)
        if text is None:
            return get_float(item, cluster_status.UPDATED_AT) or 0.0
        try:
            return cluster_status.parse_timestamp(text)
        except cluster_status.TimestampError as error:
            raise StateTableError(f"cluster status in table {self._table.name!r}: {error}") from None

    def record_runtime(self, name: str, seconds: float, count: int = 1) -> None:
        self._table.update(
            key(RUNTIME_PARTITION, name),
            "ADD #count :count, #total_seconds :seconds",
            names=attr_names("count", "total_seconds"),
            values={":count": n(count), ":seconds": n(max(0.0, float(seconds)))},
        )

    def runtimes(self) -> Runtimes:
        """What agents recorded per job name (jobs, seconds in all), and over every named job: one Query."""
        by_name: dict[str, tuple[int, float]] = {}
        for item in self._table.query(RUNTIME_PARTITION):
            count = get_int(item, "count") or 0
            if count > 0:
                by_name[need_str(item, "sk")] = (count, get_float(item, "total_seconds") or 0.0)
        return Runtimes.of_names(by_name)

    def average_runtimes(self) -> dict[str, float]:
        return {name: total / count for name, (count, total) in self.runtimes().by_name.items()}

"""A submitter's completion feed: the starts and ends of its jobs, read with one Query per poll.

A job that names a ``feed`` (``Job.feed``) has its start and its end announced in the state table's
``FEED#{feed}`` partition, by the same transaction that changes its record (``DynamoJobStore.start_job``,
``finish_job`` and a final ``fail_job``), so an announcement exists exactly when the change happened.
The submitter (the Toil batch system) reads the whole partition once per poll (one Query, however many
jobs it has out), handles what it finds and deletes it (``acknowledge``: batched deletes). What is left
unread is there next time, so a slow or restarted reader misses nothing; items carry a TTL so an
abandoned feed goes away by itself.

=================== ========================= ================================================================
pk                  sk                        holds
=================== ========================= ================================================================
``FEED#{feed}``     ``{job id}#START``        ``node``, ``at`` (when it started), ``attempt``
``FEED#{feed}``     ``{job id}#END``          ``status`` (SUCCEEDED/FAILED), ``at`` (when it ended),
                                              ``exit_code`` (absent: it never ran), ``reason``
=================== ========================= ================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.adapters.state_table import (
    TTL_ATTRIBUTE,
    StateTable,
    get_float,
    get_int,
    get_str,
    key,
    n,
    need_str,
    s,
    ttl,
)
from shared.domain.cluster_state import JobStatus
from shared.formats.job_feed import FeedEvent, FeedEventKind

if TYPE_CHECKING:
    from shared.adapters.state_table import Item

FEED_RETENTION = 7 * 24 * 3600.0  # seconds an unread announcement is kept
__all__ = ["FEED_RETENTION", "DynamoJobFeed", "FeedEvent", "FeedEventKind", "feed_item", "feed_partition"]


def feed_partition(feed: str) -> str:
    return f"FEED#{feed}"


def feed_item(feed: str, event: FeedEvent) -> Item:
    """The item announcing ``event`` (the job store writes it inside the job's transition)."""
    item: Item = {
        **key(feed_partition(feed), event.sort_key),
        "job_id": s(event.job_id),
        "kind": s(event.kind),
        "at": n(event.at),
        TTL_ATTRIBUTE: n(ttl(event.at + FEED_RETENTION)),
    }
    optional = {"node": event.node, "status": event.status, "reason": event.reason}
    item.update({name: s(value) for name, value in optional.items() if value is not None})
    if event.attempt is not None:
        item["attempt"] = n(event.attempt)
    if event.exit_code is not None:
        item["exit_code"] = n(event.exit_code)
    return item


def parse_feed_item(item: Item) -> FeedEvent:
    status = get_str(item, "status")
    return FeedEvent(
        job_id=need_str(item, "job_id"),
        kind=FeedEventKind(need_str(item, "kind")),
        at=get_float(item, "at") or 0.0,
        node=get_str(item, "node"),
        attempt=get_int(item, "attempt"),
        status=None if status is None else JobStatus(status),
        exit_code=get_int(item, "exit_code"),
        reason=get_str(item, "reason"),
    )


class DynamoJobFeed:
    """One submitter's feed: ``read`` what was announced, ``acknowledge`` what was handled."""

    def __init__(self, table: StateTable, feed: str) -> None:
        if not feed:
            raise ValueError("a feed needs a non-empty name")
        self._table = table
        self.feed = feed

    def read(self) -> list[FeedEvent]:
        """Every unacknowledged announcement (one Query, all pages): starts before ends."""
        events = [parse_feed_item(item) for item in self._table.query(feed_partition(self.feed))]
        return sorted(events, key=lambda e: (e.kind is FeedEventKind.END, e.at, e.job_id))

    def acknowledge(self, events: Sequence[FeedEvent]) -> None:
        """Delete handled announcements (25 a call)."""
        keys = {e.sort_key: key(feed_partition(self.feed), e.sort_key) for e in events}
        if keys:
            self._table.batch_write(deletes=list(keys.values()))

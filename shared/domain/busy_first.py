"""Busy nodes first: a node running no job leaves a young job, for a few seconds, to nodes already running some.

Nodes take queued jobs in whatever order the queue hands them out, so a job that arrives while one node sits idle
and another has room beside its jobs lands on either. On the idle node it keeps a node alive that the scaler was
about to remove; beside the other jobs it uses room that is paid for anyway, and the idle node empties out of the
fleet. A queue cannot rank its pollers (``cheaper_first`` says the same of node types), so the idle node holds back
for the job's first ``HOLD_OFF`` seconds in the queue: a busy node with room takes it meanwhile, and if none has
room, it starts on the idle node a moment late. A node just launched for queued jobs is not slowed: they have
waited through its boot.

The hold-off is shorter than the cheaper-first rule's, so the two compose into one order: busy nodes of the
cheapest suitable types, then idle ones of those types, then dearer types. With equal hold-offs an idle cheap
node and a busy dear one both left a small job, and when both hold-offs ended either took it, half the time the
dear one (the RICC week cost more than without the rule: docs/simulate.md, session 13).

Ordering the nodes further, fullest first or latest to empty first, cost more on the RICC week than leaving the busy
nodes in the queue's random order (docs/simulate.md, session 13).
"""

from __future__ import annotations

HOLD_OFF = 2.0  # seconds; less than cheaper_first.HOLD_OFF, so a cheaper idle node comes before a dearer busy one


def leave(*, idle: bool, waited: float) -> str | None:
    """Why an ``idle`` node leaves a job that has been ``waited`` seconds in the queue to busy nodes (None: it may
    take it)."""
    if not idle or waited >= HOLD_OFF:
        return None
    return f"this node runs no job; left to nodes already running some for its first {HOLD_OFF:g} s in the queue"

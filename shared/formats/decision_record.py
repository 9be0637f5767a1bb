"""One scaling round's entry in the decision log: written by the round, read by ``shoal status``.

``DecisionRecord`` is the one definition of the entry. The round (``shared/services/reconcile.py``)
builds it and stores ``to_json()``; readers turn a stored entry back into one with ``from_json``,
which takes entries written by older versions too (a missing part reads as empty, never as an error,
so ``shoal status`` always shows what is there). Each pass of ``decide`` is a ``PassSummary``, the
JSON ``Decision.summary()`` produces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from shared.domain.decision import Decision

JsonObject = Mapping[str, object]
_EMPTY: Mapping[str, int] = MappingProxyType({})


def _no_counts() -> Mapping[str, int]:
    return _EMPTY


@dataclass(frozen=True, slots=True, kw_only=True)
class PassSummary:
    """What one pass of ``decide`` saw, wanted and did, and why (``Decision.summary()``)."""

    queued_jobs: int = 0
    running_jobs: int = 0
    estimates: Mapping[str, int] = field(default_factory=_no_counts)  # offer key → nodes estimated
    wanted: Mapping[str, int] = field(default_factory=_no_counts)  # offer key → nodes wanted
    live: Mapping[str, int] = field(default_factory=_no_counts)  # offer key → nodes up
    hourly_cost: float = 0.0
    unavailable_offers: tuple[str, ...] = ()
    unplaceable_jobs: int = 0
    deferred_jobs: int = 0
    actions: tuple[JsonObject, ...] = ()  # ``describe_action`` of each, with its reason
    reasons: tuple[str, ...] = ()

    @classmethod
    def of(cls, decision: Decision) -> PassSummary:
        return cls.from_json(decision.summary())

    def to_json(self) -> dict[str, object]:
        return {
            "queued_jobs": self.queued_jobs,
            "running_jobs": self.running_jobs,
            "estimates": dict(self.estimates),
            "wanted": dict(self.wanted),
            "live": dict(self.live),
            "hourly_cost": self.hourly_cost,
            "unavailable_offers": list(self.unavailable_offers),
            "unplaceable_jobs": self.unplaceable_jobs,
            "deferred_jobs": self.deferred_jobs,
            "actions": [dict(a) for a in self.actions],
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_json(cls, value: object) -> PassSummary:
        entry = value if isinstance(value, Mapping) else {}
        return cls(
            queued_jobs=_int(entry.get("queued_jobs")),
            running_jobs=_int(entry.get("running_jobs")),
            estimates=_counts(entry.get("estimates")),
            wanted=_counts(entry.get("wanted")),
            live=_counts(entry.get("live")),
            hourly_cost=_float(entry.get("hourly_cost")) or 0.0,
            unavailable_offers=_strings(entry.get("unavailable_offers")),
            unplaceable_jobs=_int(entry.get("unplaceable_jobs")),
            deferred_jobs=_int(entry.get("deferred_jobs")),
            actions=_objects(entry.get("actions")),
            reasons=_strings(entry.get("reasons")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionRecord:
    """Why a round did what it did: its first pass, the fallback passes, what it did and what failed."""

    round_id: str
    at: float  # when the round ran (epoch seconds)
    trigger: str = ""
    passes: int = 0
    smoothed_at: float | None = None  # when the demand estimate was last smoothed (the next round's input)
    decision: PassSummary = field(default_factory=PassSummary)  # what the round decided and why
    later_passes: tuple[PassSummary, ...] = ()  # the fallback after refused launches, and the settled state
    done: tuple[JsonObject, ...] = ()  # actions carried out, in order
    launch_failures: tuple[JsonObject, ...] = ()
    errors: tuple[str, ...] = ()
    left_for_next_round: tuple[JsonObject, ...] = ()
    hourly_cost: float = 0.0  # of the nodes running after the round
    decide_seconds: float = 0.0
    round_seconds: float = 0.0

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the round decided what it did (its first pass's reasons)."""
        return self.decision.reasons

    def to_json(self) -> dict[str, object]:
        return {
            "round_id": self.round_id,
            "at": self.at,
            "trigger": self.trigger,
            "passes": self.passes,
            "smoothed_at": self.smoothed_at,
            "decision": self.decision.to_json(),
            "later_passes": [p.to_json() for p in self.later_passes],
            "done": [dict(a) for a in self.done],
            "launch_failures": [dict(f) for f in self.launch_failures],
            "errors": list(self.errors),
            "left_for_next_round": [dict(a) for a in self.left_for_next_round],
            "hourly_cost": self.hourly_cost,
            "decide_seconds": self.decide_seconds,
            "round_seconds": self.round_seconds,
        }

    @classmethod
    def from_json(cls, entry: JsonObject) -> DecisionRecord:
        """An entry as the decision log returns it (with ``round_id`` and ``at``), old or new."""
        later = entry.get("later_passes")
        return cls(
            round_id=str(entry.get("round_id") or ""),
            at=_float(entry.get("at")) or 0.0,
            trigger=str(entry.get("trigger") or ""),
            passes=_int(entry.get("passes")),
            smoothed_at=_float(entry.get("smoothed_at")),
            decision=PassSummary.from_json(entry.get("decision")),
            later_passes=tuple(PassSummary.from_json(p) for p in later) if isinstance(later, list) else (),
            done=_objects(entry.get("done")),
            launch_failures=_objects(entry.get("launch_failures")),
            errors=_strings(entry.get("errors")),
            left_for_next_round=_objects(entry.get("left_for_next_round")),
            hourly_cost=_float(entry.get("hourly_cost")) or 0.0,
            decide_seconds=_float(entry.get("decide_seconds")) or 0.0,
            round_seconds=_float(entry.get("round_seconds")) or 0.0,
        )


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, Sequence) and not isinstance(value, str) else ()


def _objects(value: object) -> tuple[JsonObject, ...]:
    return tuple(v for v in value if isinstance(v, Mapping)) if isinstance(value, list) else ()


def _counts(value: object) -> Mapping[str, int]:
    if not isinstance(value, Mapping):
        return _EMPTY
    return MappingProxyType({str(k): int(v) for k, v in value.items() if isinstance(v, int | float)})

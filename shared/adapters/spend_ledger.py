"""The spend ledger (``SCALER``/``SPEND``) in the state table, and the teardown a lease starts (Step Functions).

The ledger is the scaler's own record of what the cluster spent (``shared.domain.budget``): each round
accrues it and saves it with a condition on the accrual time it loaded, so two rounds cannot both add the
same minutes. The round saves with an UpdateItem that leaves ``lease_expires_at`` alone, so a renewal by
``launch-cluster --lease`` between a round's load and save is kept. Beside the ledger the round writes
what ``shoal status`` shows (budget, cap, the leases' ends, the vCPU quotas and the cluster's use of each, the
jobs reclaimed from spot): the status command needs no cluster settings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws
from shared.adapters.state_table import StateTable, attr_names, get_float, get_int, get_number_map, key, n, number_map
from shared.domain.budget import Spend
from shared.domain.quotas import QuotaUse
from shared.services.guardrails import GuardView, TeardownStartError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef
    from mypy_boto3_stepfunctions import SFNClient

LEDGER_KEY = key("SCALER", "SPEND")
# Attribute names of the item.
SPENT, AT, RATE, STARTED_AT, BUSY_AT = "spent", "at", "rate", "started_at", "busy_at"
LEASE_EXPIRES_AT = "lease_expires_at"  # written only by a renewal
BUDGET, MAX_HOURLY_COST, SHOWN_LEASE_END, IDLE_EXPIRES_AT = "budget", "max_hourly_cost", "lease_end", "idle_end"
# The quotas (number maps keyed by quota code; absent: not recorded) and the preemption counts status shows.
QUOTA_LIMIT, QUOTA_ELSEWHERE, QUOTA_CLUSTER = "quota_limit", "quota_elsewhere", "quota_cluster"
PLACEMENT_SCORES = "placement_scores"  # a number map keyed "OFFER_KEY|ZONE" (absent: not recorded)
PREEMPTED_JOBS, ON_DEMAND_ONLY_JOBS, MAX_PREEMPTIONS = "preempted_jobs", "on_demand_only_jobs", "max_preemptions"


class DynamoSpendLedger:
    """``SpendLedger`` on the state table."""

    def __init__(self, table: StateTable) -> None:
        self._table = table

    def load(self) -> Spend:
        item = self._table.get(LEDGER_KEY)
        if item is None:
            return Spend()
        return Spend(
            spent=get_float(item, SPENT) or 0.0,
            at=get_float(item, AT),
            rate=get_float(item, RATE) or 0.0,
            started_at=get_float(item, STARTED_AT),
            busy_at=get_float(item, BUSY_AT),
            lease_expires_at=get_float(item, LEASE_EXPIRES_AT),
        )

    def save(self, spend: Spend, *, previous: Spend, view: GuardView) -> bool:
        values: dict[str, AttributeValueTypeDef] = {}
        sets: list[str] = []
        removes: list[str] = []
        fields: Mapping[str, float | None] = {
            SPENT: spend.spent,
            AT: spend.at,
            RATE: spend.rate,
            STARTED_AT: spend.started_at,
            BUSY_AT: spend.busy_at,
            BUDGET: view.budget,
            MAX_HOURLY_COST: view.max_hourly_cost,
            SHOWN_LEASE_END: view.lease_expires_at,
            IDLE_EXPIRES_AT: view.idle_expires_at,
            PREEMPTED_JOBS: view.preempted_jobs,
            ON_DEMAND_ONLY_JOBS: view.on_demand_only_jobs,
            MAX_PREEMPTIONS: view.max_preemptions,
        }
        for name, value in fields.items():
            if value is None:
                removes.append(f"#{name}")
            else:
                sets.append(f"#{name} = :{name}")
                values[f":{name}"] = n(value)
        quota_maps: dict[str, Mapping[str, float] | None] = {
            **_quota_maps(view.quotas),
            PLACEMENT_SCORES: _flat_scores(view.placement_scores),
        }
        for name, mapping in quota_maps.items():
            if mapping is None:
                removes.append(f"#{name}")
            else:
                sets.append(f"#{name} = :{name}")
                values[f":{name}"] = number_map(mapping)
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        if previous.at is None:
            condition = "attribute_not_exists(#at)"
        else:
            condition = "#at = :previous_at"
            values[":previous_at"] = n(previous.at)
        return (
            self._table.update(
                LEDGER_KEY, expression, condition=condition, names=attr_names(*fields, *quota_maps), values=values
            )
            is not None
        )

    def renew_lease(self, expires_at: float, *, now: float) -> None:
        self._table.update(
            LEDGER_KEY,
            "SET #lease_expires_at = :expires, #lease_end = :expires, #busy_at = :now",
            names=attr_names(LEASE_EXPIRES_AT, SHOWN_LEASE_END, BUSY_AT),
            values={":expires": n(expires_at), ":now": n(now)},
        )

    def view(self) -> GuardView | None:
        item = self._table.get(LEDGER_KEY)
        if item is None:
            return None
        return GuardView(
            spent=get_float(item, SPENT) or 0.0,
            budget=get_float(item, BUDGET),
            max_hourly_cost=get_float(item, MAX_HOURLY_COST),
            rate=get_float(item, RATE) or 0.0,
            lease_expires_at=get_float(item, SHOWN_LEASE_END),
            idle_expires_at=get_float(item, IDLE_EXPIRES_AT),
            quotas=_quotas(item),
            preempted_jobs=get_int(item, PREEMPTED_JOBS) or 0,
            on_demand_only_jobs=get_int(item, ON_DEMAND_ONLY_JOBS) or 0,
            max_preemptions=get_int(item, MAX_PREEMPTIONS),
            placement_scores=_scores(item),
            at=get_float(item, AT),
        )


def _flat_scores(scores: Mapping[str, Mapping[str, int]] | None) -> dict[str, float] | None:
    if scores is None:
        return None
    return {f"{offer}|{zone}": float(score) for offer, zones in scores.items() for zone, score in zones.items()}


def _scores(item: Mapping[str, object]) -> dict[str, dict[str, int]] | None:
    if PLACEMENT_SCORES not in item:
        return None  # written before the scores were recorded
    out: dict[str, dict[str, int]] = {}
    for flat, score in get_number_map(item, PLACEMENT_SCORES).items():
        offer, _, zone = flat.rpartition("|")
        out.setdefault(offer, {})[zone] = int(score)
    return out


def _quota_maps(quotas: tuple[QuotaUse, ...] | None) -> dict[str, dict[str, float] | None]:
    if quotas is None:
        return dict.fromkeys((QUOTA_LIMIT, QUOTA_ELSEWHERE, QUOTA_CLUSTER))
    return {
        QUOTA_LIMIT: {q.code: q.limit for q in quotas},
        QUOTA_ELSEWHERE: {q.code: q.elsewhere for q in quotas},
        QUOTA_CLUSTER: {q.code: q.cluster for q in quotas},
    }


def _quotas(item: Mapping[str, object]) -> tuple[QuotaUse, ...] | None:
    if QUOTA_LIMIT not in item:
        return None  # written before quotas were recorded
    elsewhere, cluster = get_number_map(item, QUOTA_ELSEWHERE), get_number_map(item, QUOTA_CLUSTER)
    return tuple(
        QuotaUse(code=code, limit=limit, elsewhere=elsewhere.get(code, 0.0), cluster=cluster.get(code, 0.0))
        for code, limit in sorted(get_number_map(item, QUOTA_LIMIT).items())
    )


class StepFunctionsTeardown:
    """``TeardownStarter``: one execution of TeardownCluster per lease expiry, named after it."""

    def __init__(
        self,
        machine_arn: str,
        region: str,
        *,
        client: SFNClient | None = None,
        options: Mapping[str, object] | None = None,  # TeardownCluster's input beyond the reason (poll_seconds...)
    ) -> None:
        self.machine_arn = machine_arn
        self.options = dict(options or {})
        self.client: SFNClient = client if client is not None else aws.client("stepfunctions", region)

    def start_teardown(self, *, reason: str, key: float) -> bool:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(key))
        name = f"lease-{stamp}"
        try:
            self.client.start_execution(
                stateMachineArn=self.machine_arn, name=name, input=json.dumps({**self.options, "reason": reason})
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                return False  # this expiry's teardown was started by an earlier round
            raise TeardownStartError(f"StartExecution of {self.machine_arn}: {error}") from None
        except BotoCoreError as error:
            raise TeardownStartError(f"StartExecution of {self.machine_arn}: {error}") from None
        return True

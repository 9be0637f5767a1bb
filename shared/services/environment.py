"""What every Shoal Lambda function reads from its environment, in one place.

The CDK stack sets exactly these variables (``ENVIRONMENT_VARIABLES``) from the same settings model,
and a test checks that nothing the code reads is missing from the stack.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.domain.settings import ClusterSettings, SettingsError


class FunctionEnvironmentError(SettingsError):
    """A Lambda environment variable missing or malformed; names the variable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionEnvironment:
    cluster: ClusterSettings
    table_name: str
    queue_url: str
    dead_letter_queue_url: str
    launch_template_id: str
    event_bus_name: str = "default"
    subnet_ids: tuple[str, ...] = ()
    teardown_state_machine_arn: str = ""  # the scaler starts it when a lease runs out ("" : never)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FunctionEnvironment:
        env = os.environ if environ is None else environ

        def need(name: str) -> str:
            value = env.get(name)
            if not value:
                raise FunctionEnvironmentError(f"environment variable {name} is not set; deploy with the Shoal stack")
            return value

        try:
            raw_settings = json.loads(need("SHOAL_CLUSTER_SETTINGS"))
        except json.JSONDecodeError as error:
            raise FunctionEnvironmentError(f"SHOAL_CLUSTER_SETTINGS is not JSON: {error}") from None
        return cls(
            cluster=ClusterSettings.from_mapping(raw_settings),
            table_name=need("SHOAL_TABLE_NAME"),
            queue_url=need("SHOAL_QUEUE_URL"),
            dead_letter_queue_url=need("SHOAL_DLQ_URL"),
            launch_template_id=need("SHOAL_LAUNCH_TEMPLATE_ID"),
            event_bus_name=env.get("SHOAL_EVENT_BUS_NAME", "default"),
            subnet_ids=tuple(s for s in env.get("SHOAL_SUBNET_IDS", "").split(",") if s),
            teardown_state_machine_arn=env.get("SHOAL_TEARDOWN_STATE_MACHINE_ARN", ""),
        )

    def to_env(self) -> dict[str, str]:
        return {
            "SHOAL_CLUSTER_SETTINGS": json.dumps(self.cluster.to_mapping(), sort_keys=True),
            "SHOAL_TABLE_NAME": self.table_name,
            "SHOAL_QUEUE_URL": self.queue_url,
            "SHOAL_DLQ_URL": self.dead_letter_queue_url,
            "SHOAL_LAUNCH_TEMPLATE_ID": self.launch_template_id,
            "SHOAL_EVENT_BUS_NAME": self.event_bus_name,
            "SHOAL_SUBNET_IDS": ",".join(self.subnet_ids),
            "SHOAL_TEARDOWN_STATE_MACHINE_ARN": self.teardown_state_machine_arn,
        }


# Every variable a function may read; the stack must set each one.
ENVIRONMENT_VARIABLES = (
    "SHOAL_CLUSTER_SETTINGS",
    "SHOAL_TABLE_NAME",
    "SHOAL_QUEUE_URL",
    "SHOAL_DLQ_URL",
    "SHOAL_LAUNCH_TEMPLATE_ID",
    "SHOAL_EVENT_BUS_NAME",
    "SHOAL_SUBNET_IDS",
    "SHOAL_TEARDOWN_STATE_MACHINE_ARN",
)

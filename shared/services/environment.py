"""What every Shoal Lambda function finds in its environment: the type, and how the stack writes it.

The CDK stack sets exactly these variables (``to_env``, ``ENVIRONMENT_VARIABLES``) from the same settings
model; ``shared.wiring.settings.read_function_environment`` reads them back, and a test checks that nothing
the code reads is missing from the stack.
"""

from __future__ import annotations

import json
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
    cached_repository: str = ""  # the appliance's ECR pull-through repository, deleted by the teardown ("": none)

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
            "SHOAL_CACHED_REPOSITORY": self.cached_repository,
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
    "SHOAL_CACHED_REPOSITORY",
)

"""The two CloudFormation resource types moto has no model for, as small models of the local cloud.

- ``AWS::CloudWatch::Alarm``: a metric alarm in moto's CloudWatch (the router evaluates it).
- ``AWS::SQS::QueuePolicy``: the queues' Policy attribute.

moto finds models by subclass, so importing this module registers them (``moto_patches`` imports it and
clears moto's model caches when the local cloud starts).
"""

from __future__ import annotations

import json
from typing import Any

from moto.cloudwatch.models import cloudwatch_backends
from moto.core.common_models import CloudFormationModel
from moto.sqs.models import sqs_backends


class LocalAlarm(CloudFormationModel):
    """``AWS::CloudWatch::Alarm`` as a metric alarm in moto's CloudWatch (the router evaluates it)."""

    def __init__(self, name: str, arn: str) -> None:
        self.name = name
        self.arn = arn

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name == "Arn":
            return self.arn
        raise NotImplementedError(attribute_name)

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> LocalAlarm:
        p = cloudformation_json["Properties"]
        name = p.get("AlarmName", resource_name)
        alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=name,
            namespace=p.get("Namespace", ""),
            metric_name=p.get("MetricName", ""),
            comparison_operator=p["ComparisonOperator"],
            evaluation_periods=int(p.get("EvaluationPeriods", 1)),
            period=int(p.get("Period", 60)),
            threshold=float(p.get("Threshold", 0)),
            statistic=p.get("Statistic", ""),
            description=p.get("AlarmDescription", ""),
            dimensions=[{"Name": d["Name"], "Value": str(d["Value"])} for d in p.get("Dimensions", [])],
            alarm_actions=list(p.get("AlarmActions", [])),
            treat_missing_data=p.get("TreatMissingData"),
            tags=list(p.get("Tags", [])),
        )
        return cls(name, alarm.alarm_arn)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
    ) -> None:
        cloudwatch_backends[account_id][region_name].delete_alarms([resource_name])

    def delete(self, account_id: str, region_name: str) -> None:
        cloudwatch_backends[account_id][region_name].delete_alarms([self.name])

    def is_created(self) -> bool:
        return True


class LocalQueuePolicy(CloudFormationModel):
    """``AWS::SQS::QueuePolicy`` as the queues' Policy attribute."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SQS::QueuePolicy"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return False

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> LocalQueuePolicy:
        p = cloudformation_json["Properties"]
        backend = sqs_backends[account_id][region_name]
        for queue_url in p.get("Queues", []):
            queue_name = str(queue_url).rstrip("/").rsplit("/", 1)[-1]
            backend.set_queue_attributes(queue_name, {"Policy": json.dumps(p.get("PolicyDocument", {}))})
        return cls(resource_name)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
    ) -> None:
        return None

    def is_created(self) -> bool:
        return True

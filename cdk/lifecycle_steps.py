"""The building blocks of the lifecycle state machines: a Lambda step, a status write, the scaling rules'
switches, and the state machine itself with its log group and cdk-nag reasons.

Each takes the construct (``scope``) that owns the state, so the states' ids stay those of ``lifecycle``.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from cdk import constants
from cdk.nag import acknowledge
from shared.domain.cluster_state import ClusterStatus
from shared.formats import cluster_status, lifecycle
from shared.formats.lifecycle import LifecycleAction, result_path


def lambda_step(
    scope: Construct, function: lambda_.IFunction, name: str, action: LifecycleAction, comment: str
) -> tasks.LambdaInvoke:
    """Invoke the lifecycle Lambda for ``action``; its answer goes to the action's result path."""
    return tasks.LambdaInvoke(
        scope,
        name,
        comment=comment,
        lambda_function=function,
        payload_response_only=True,
        payload=sfn.TaskInput.from_object(
            {
                lifecycle.ACTION: action.value,
                lifecycle.INPUT: sfn.JsonPath.entire_payload,
                lifecycle.EXECUTION: sfn.JsonPath.string_at("$$.Execution.Name"),
            }
        ),
        result_path=result_path(action),
        retry_on_service_exceptions=False,
    ).add_retry(
        errors=["Lambda.TooManyRequestsException", "Lambda.ServiceException"],
        interval=Duration.seconds(2),
        backoff_rate=2,
        max_attempts=4,
    )


def record_status(
    scope: Construct, table: dynamodb.ITable, name: str, status: ClusterStatus, *, cause_path: str | None = None
) -> tasks.DynamoUpdateItem:
    """Set the cluster's STATUS item (``shared.formats.cluster_status``) to ``status``, with a reason."""
    reason = (
        tasks.DynamoAttributeValue.from_string(sfn.JsonPath.string_at(cause_path))
        if cause_path
        else tasks.DynamoAttributeValue.from_string(sfn.JsonPath.string_at("$$.Execution.Name"))
    )
    return tasks.DynamoUpdateItem(
        scope,
        name,
        comment=f"Set the cluster's status record to {status}.",
        table=table,
        key={
            constants.PK: tasks.DynamoAttributeValue.from_string(cluster_status.PARTITION),
            constants.SK: tasks.DynamoAttributeValue.from_string(cluster_status.SORT_KEY),
        },
        update_expression="SET #status = :status, #reason = :reason, #updated = :updated",
        expression_attribute_names={
            "#status": cluster_status.STATUS,
            "#reason": cluster_status.REASON,
            "#updated": cluster_status.UPDATED_AT,  # ISO 8601 text, as the state machine's context has it
        },
        expression_attribute_values={
            ":status": tasks.DynamoAttributeValue.from_string(status.value),
            ":reason": reason,
            ":updated": tasks.DynamoAttributeValue.from_string(sfn.JsonPath.string_at("$$.State.EnteredTime")),
        },
        result_path=sfn.JsonPath.DISCARD,
    ).add_retry(  # an idempotent write: retried on throttling or a passing fault
        errors=["States.TaskFailed"], interval=Duration.seconds(2), backoff_rate=2, max_attempts=4
    )


def each_rule(
    scope: Construct, rules: Sequence[events.IRule], verb: str, action: str
) -> tuple[sfn.Chain, list[tasks.CallAwsService]]:
    """One task per scaling rule, in sequence: simple to read, and there are only a handful."""
    task_list = [
        tasks.CallAwsService(
            scope,
            f"{verb} scaling rule {index + 1}",
            comment=f"{verb} the EventBridge rule that wakes the scaler.",
            service="eventbridge",
            action=action,
            parameters={"Name": rule.rule_name},
            iam_resources=[rule.rule_arn],
            iam_action=f"events:{action[0].upper()}{action[1:]}",
            result_path=sfn.JsonPath.DISCARD,
        ).add_retry(  # throttling or a passing fault: enabling or disabling a rule twice is harmless
            errors=["States.TaskFailed"], interval=Duration.seconds(2), backoff_rate=2, max_attempts=4
        )
        for index, rule in enumerate(rules)
    ]
    chain = sfn.Chain.start(task_list[0])
    for task in task_list[1:]:
        chain = chain.next(task)
    return chain, task_list


def ec2_arn(scope: Construct, resource: str) -> str:
    return Stack.of(scope).format_arn(service="ec2", resource=resource, resource_name="*")


def state_machine(
    scope: Construct,
    name: str,
    definition: sfn.IChainable,
    *,
    cluster_name: str,
    step_function: lambda_.IFunction,
    ec2_resources: tuple[str, ...],
) -> sfn.StateMachine:
    """The state machine, its log group, a Deny keeping its EC2 calls to the cluster's tagged resources, and
    the reasons for cdk-nag's IAM5 findings."""
    log_group = logs.LogGroup(
        scope, f"{name}Logs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
    )
    machine = sfn.StateMachine(
        scope,
        name,
        state_machine_name=f"shoal-{cluster_name}-{name}",
        definition_body=sfn.DefinitionBody.from_chainable(definition),
        timeout=Duration.hours(6),
        tracing_enabled=True,
        logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL),
        comment=f"Shoal {name} for cluster {cluster_name} ({Stack.of(scope).stack_name}).",
    )
    if ec2_resources:
        # EC2 ids are unknown until the inventory: deny touching anything not tagged for this cluster.
        machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="OnlyThisClustersResources",
                effect=iam.Effect.DENY,
                actions=["ec2:TerminateInstances", "ec2:CancelSpotInstanceRequests"],
                resources=["*"],
                conditions={"StringNotEquals": {f"aws:ResourceTag/{constants.CLUSTER_TAG}": cluster_name}},
            )
        )
    for finding, reason in _nag_reasons(scope, step_function, ec2_resources).items():
        acknowledge(machine, f"AwsSolutions-IAM5[{finding}]", reason)
    return machine


def _nag_reasons(scope: Construct, step_function: lambda_.IFunction, ec2_resources: tuple[str, ...]) -> dict[str, str]:
    prefix = f"arn:<AWS::Partition>:ec2:{Stack.of(scope).region}:<AWS::AccountId>"
    reasons = {
        "Resource::*": "X-Ray tracing and log delivery have no resource-level permissions"
        + ("; the other '*' is a Deny keeping EC2 calls to this cluster's tagged resources." if ec2_resources else "."),
        f"Resource::<{_logical_id(scope, step_function)}.Arn>:*": "CDK grants invoke on the lifecycle function's "
        "versions and aliases, of that one function only.",
    }
    for resource in ec2_resources:
        reasons[f"Resource::{prefix}:{resource}/*"] = (
            "Ids come from the tag-filtered inventory at run time; a Deny statement refuses any one without "
            "this cluster's tag."
        )
    return reasons


def _logical_id(scope: Construct, function: lambda_.IFunction) -> str:
    child = function.node.default_child
    return Stack.of(scope).get_logical_id(child) if child is not None else ""  # type: ignore[arg-type]

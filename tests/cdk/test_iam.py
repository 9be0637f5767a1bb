"""Least privilege, statement by statement: the control plane's role and the workers' role, exactly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match

from tests.cdk.conftest import CLUSTER, Synthesized

TABLE_ITEM_ACTIONS = [
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
]


def _ec2_arn(s: Synthesized, resource: str, name: str, *, account: str | None = None) -> Any:
    return s.resolve(s.stack.format_arn(service="ec2", resource=resource, resource_name=name, account=account))


def _arn(s: Synthesized, construct_attribute: object) -> Any:
    return s.resolve(construct_attribute)


def test_the_control_plane_role_has_exactly_these_statements(synthesized: Synthesized) -> None:
    s = synthesized
    stack = s.stack
    workers, state, network = stack.workers, stack.state, stack.network
    image_id = workers.image_id
    instance, volume = _ec2_arn(s, "instance", "*"), _ec2_arn(s, "volume", "*")
    cluster_request_tag = {"aws:RequestTag/shoal:cluster": CLUSTER}
    expected = [
        {
            "Sid": "DescribeFleet",
            "Effect": "Allow",
            "Action": [
                "ec2:DescribeInstances",
                "ec2:DescribeSpotInstanceRequests",
                "ec2:DescribeSubnets",
                "ec2:DescribeVolumes",
            ],
            "Resource": "*",
        },
        {
            "Sid": "ReadQuotas",
            "Effect": "Allow",
            "Action": "servicequotas:GetServiceQuota",
            "Resource": [
                *(
                    s.resolve(stack.format_arn(service="servicequotas", resource="ec2", resource_name=code))
                    for code in ("L-1216C47A", "L-34B43A08", "L-3819A6DF", "L-417A185B", "L-7212CCBC", "L-DB2E81BA")
                ),
                s.resolve(stack.format_arn(service="servicequotas", resource="ebs", resource_name="L-7A658B76")),
            ],
        },
        {
            "Sid": "SpotPlacementScores",
            "Effect": "Allow",
            "Action": ["ec2:DescribeAvailabilityZones", "ec2:GetSpotPlacementScores"],
            "Resource": "*",
        },
        {
            "Sid": "LaunchFromTheTemplate",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": [
                _ec2_arn(s, "launch-template", workers.launch_template.launch_template_id),
                _ec2_arn(s, "image", image_id, account=""),
                _ec2_arn(s, "security-group", workers.security_group.security_group_id),
                *(_ec2_arn(s, "subnet", subnet.subnet_id) for subnet in network.subnets),
                _ec2_arn(s, "network-interface", "*"),
                _ec2_arn(s, "spot-instances-request", "*"),
            ],
        },
        {
            "Sid": "LaunchOnlyTaggedWorkers",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": [instance, volume],
            "Condition": {"StringEquals": cluster_request_tag},
        },
        {
            "Sid": "TagOnlyAtLaunch",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": [instance, volume, _ec2_arn(s, "spot-instances-request", "*")],
            "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances", **cluster_request_tag}},
        },
        {
            "Sid": "StartStopTerminateOwnWorkers",
            "Effect": "Allow",
            "Action": ["ec2:StartInstances", "ec2:StopInstances", "ec2:TerminateInstances"],
            "Resource": instance,
            "Condition": {"StringEquals": {"aws:ResourceTag/shoal:cluster": CLUSTER}},
        },
        {
            "Sid": "PassOnlyTheWorkerRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": _arn(s, workers.role.role_arn),
            "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        },
        {
            "Sid": "QueueDepthAndReturns",
            "Effect": "Allow",
            "Action": ["sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"],
            "Resource": _arn(s, state.queue.queue_arn),
        },
        {
            "Sid": "ClusterState",
            "Effect": "Allow",
            "Action": TABLE_ITEM_ACTIONS,
            "Resource": _arn(s, state.table.table_arn),
        },
        {
            "Sid": "OnFailureDestination",
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": _arn(s, s.stack.control_plane.failure_queue.queue_arn),
        },
        {
            "Sid": "WriteLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [_arn(s, group.log_group_arn) for group in stack.control_plane.log_groups.values()],
        },
        {
            "Sid": "Tracing",
            "Effect": "Allow",
            "Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
            "Resource": "*",
        },
    ]
    # THEN the role the functions run as holds these statements and nothing else
    s.template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": Match.object_like(
                {"Statement": [Match.object_like({"Principal": {"Service": "lambda.amazonaws.com"}})]}
            ),
            "Policies": Match.exact(
                [{"PolicyName": "scaler", "PolicyDocument": {"Version": "2012-10-17", "Statement": expected}}]
            ),
            "ManagedPolicyArns": Match.absent(),
        },
    )
    # AND both functions run as that role
    s.template.resource_properties_count_is(
        "AWS::Lambda::Function",
        {"Role": s.resolve(stack.control_plane.role.role_arn)},
        len(stack.control_plane.functions),
    )


def test_the_worker_role_has_exactly_what_the_agent_needs(synthesized: Synthesized) -> None:
    s = synthesized
    workers, state = s.stack.workers, s.stack.state
    expected = [
        {
            "Sid": "TakeAndSettleJobs",
            "Effect": "Allow",
            "Action": ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage", "sqs:SendMessage"],
            "Resource": _arn(s, state.queue.queue_arn),
        },
        {
            "Sid": "DeadLetterJobs",
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": _arn(s, state.dead_letter_queue.queue_arn),
        },
        {
            "Sid": "ClusterState",
            "Effect": "Allow",
            "Action": TABLE_ITEM_ACTIONS,
            "Resource": _arn(s, state.table.table_arn),
        },
        {
            "Sid": "WriteLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            "Resource": _arn(s, workers.log_group.log_group_arn),
        },
        {
            "Sid": "StageFiles",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": _arn(s, s.stack.staging.bucket.arn_for_objects(f"shoal/{CLUSTER}/staging/*")),
        },
        {
            "Sid": "ListStagedFiles",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": _arn(s, s.stack.staging.bucket.bucket_arn),
            "Condition": {"StringLike": {"s3:prefix": [f"shoal/{CLUSTER}/staging/*"]}},
        },
        {
            "Sid": "ReadShoalCode",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": _arn(s, s.stack.code.read_statement().resources[0]),
        },
    ]
    s.template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": Match.object_like(
                {"Statement": [Match.object_like({"Principal": {"Service": "ec2.amazonaws.com"}})]}
            ),
            "Policies": Match.exact(
                [{"PolicyName": "agent", "PolicyDocument": {"Version": "2012-10-17", "Statement": expected}}]
            ),
            # SSM Session Manager is the only shell; the default image is public, so no ECR permission.
            "ManagedPolicyArns": Match.exact(
                [
                    {
                        "Fn::Join": [
                            "",
                            ["arn:", {"Ref": "AWS::Partition"}, ":iam::aws:policy/AmazonSSMManagedInstanceCore"],
                        ]
                    }
                ]
            ),
        },
    )
    # The launch template hands out exactly this role, through its instance profile.
    profile_id = next(iter(s.resources("AWS::IAM::InstanceProfile")))
    s.template.has_resource_properties("AWS::IAM::InstanceProfile", {"Roles": [s.resolve(workers.role.role_name)]})
    s.template.has_resource_properties(
        "AWS::EC2::LaunchTemplate",
        {"LaunchTemplateData": Match.object_like({"IamInstanceProfile": {"Arn": {"Fn::GetAtt": [profile_id, "Arn"]}}})},
    )


def _statements(s: Synthesized) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for logical_id, role in s.resources("AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            found += [(logical_id, st) for st in policy["PolicyDocument"]["Statement"]]
    for logical_id, policy in s.resources("AWS::IAM::Policy").items():
        found += [(logical_id, st) for st in policy["Properties"]["PolicyDocument"]["Statement"]]
    return found


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement.get("Action", [])
    return [action] if isinstance(action, str) else list(action)


def test_no_statement_anywhere_allows_a_wildcard_action(synthesized: Synthesized) -> None:
    statements = _statements(synthesized)
    assert statements
    for logical_id, statement in statements:
        if statement["Effect"] == "Deny":
            continue  # a Deny narrows; see the teardown's tag guard below
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement, logical_id
        for action in _actions(statement):
            assert "*" not in action, f"{logical_id}: {action}"


def test_pass_role_is_only_ever_for_the_worker_role(synthesized: Synthesized) -> None:
    worker_role = synthesized.resolve(synthesized.stack.workers.role.role_arn)
    passing = [st for _, st in _statements(synthesized) if "iam:PassRole" in _actions(st)]
    assert passing, "the scaler must be able to pass the worker role"
    for statement in passing:
        assert statement["Resource"] == worker_role
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}


def test_every_ec2_mutation_is_conditioned_on_the_cluster_tag(synthesized: Synthesized) -> None:
    mutations = {
        "ec2:RunInstances",
        "ec2:CreateTags",
        "ec2:StartInstances",
        "ec2:StopInstances",
        "ec2:TerminateInstances",
    }
    all_statements = _statements(synthesized)
    for logical_id, statement in all_statements:
        touched = mutations & set(_actions(statement))
        if not touched or statement["Effect"] == "Deny":
            continue
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        rendered = [str(r) for r in resources]
        creates_tagged = any(":instance/*" in r or ":volume/*" in r for r in rendered)
        if touched == {"ec2:RunInstances"} and not creates_tagged:
            continue  # the template, image, subnets, group: read by the launch, not created or changed by it
        if "Condition" not in statement:
            # The teardown's ids come from an inventory at run time: the same policy must deny every
            # resource without the cluster's tag for these actions.
            guards = [
                st for lid, st in all_statements
                if lid == logical_id and st["Effect"] == "Deny" and touched <= set(_actions(st))
                and st["Condition"]["StringNotEquals"].get("aws:ResourceTag/shoal:cluster") == CLUSTER
            ]  # fmt: skip
            assert guards, statement
            continue
        conditions = statement["Condition"]["StringEquals"]
        assert conditions.get("aws:RequestTag/shoal:cluster") == CLUSTER or (
            conditions.get("aws:ResourceTag/shoal:cluster") == CLUSTER
        ), statement


def _s3_resources(s: Synthesized, logical_id: str) -> list[Any]:
    out = []
    for owner, statement in _statements(s):
        if owner == logical_id and any(a.startswith("s3:") for a in _actions(statement)):
            resources = statement["Resource"]
            out += resources if isinstance(resources, list) else [resources]
    return out


def _logical_id(s: Synthesized, construct: Any) -> str:
    return str(s.stack.get_logical_id(construct.node.default_child))


def test_the_worker_reaches_its_code_and_staging_in_s3_and_may_act_as_the_job_role_only(
    synthesized: Synthesized,
) -> None:
    s = synthesized
    workers = s.stack.workers
    worker_role = _logical_id(s, workers.role)
    # THEN of S3 the worker role reaches exactly the code asset and its staging prefix
    assert _s3_resources(s, worker_role) == [
        _arn(s, s.stack.staging.bucket.arn_for_objects(f"shoal/{CLUSTER}/staging/*")),
        _arn(s, s.stack.staging.bucket.bucket_arn),
        _arn(s, s.stack.code.read_statement().resources[0]),
    ]
    # AND its one other policy lets it assume the job role, nothing else
    (policy,) = [
        p for p in s.resources("AWS::IAM::Policy").values() if {"Ref": worker_role} in p["Properties"]["Roles"]
    ]
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {
            "Sid": "ActAsJobRole",
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Resource": _arn(s, workers.job_role.role.role_arn),
        }
    ]


def test_jobs_reach_the_job_store_bucket_and_nothing_else(synthesized: Synthesized) -> None:
    s = synthesized
    job_role = s.stack.workers.job_role.role
    (role,) = [r for lid, r in s.resources("AWS::IAM::Role").items() if lid == _logical_id(s, job_role)]
    # THEN only the worker role may assume it
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"AWS": _arn(s, s.stack.workers.role.role_arn)}}
    ]
    # AND it reaches the job store's bucket (aws:REGION:CLUSTER is the bucket CLUSTER--toil) and its objects only
    (policy,) = role["Properties"]["Policies"]
    statements = policy["PolicyDocument"]["Statement"]
    bucket = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":s3:::{CLUSTER}--toil"]]}
    objects = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":s3:::{CLUSTER}--toil/*"]]}
    assert [st["Resource"] for st in statements] == [bucket, objects]
    assert all(a.startswith("s3:") for st in statements for a in _actions(st))
    assert "s3:CreateBucket" not in _actions(statements[0])  # the leader creates the job store, jobs do not


def _dynamodb_operations() -> set[str]:
    """Every DynamoDB operation the adapters' one client (``StateTable``) calls, as IAM actions."""
    source = (Path(__file__).resolve().parents[2] / "shared" / "adapters" / "state_table.py").read_text()
    calls = set(re.findall(r"self\.client\.([a-z_]+)\(", source))
    assert calls, "no client calls found: has StateTable moved?"
    return {"dynamodb:" + "".join(part.title() for part in call.split("_")) for call in calls}


def _table_actions(s: Synthesized, sid: str) -> set[str]:
    """The actions of every statement ``sid`` in the template's policies (one per role that has it)."""
    documents = [p["Properties"]["PolicyDocument"] for p in s.resources("AWS::IAM::Policy").values()]
    for role in s.resources("AWS::IAM::Role").values():
        documents += [p["PolicyDocument"] for p in role["Properties"].get("Policies", [])]
    found: list[set[str]] = []
    for document in documents:
        for statement in document["Statement"]:
            if statement.get("Sid") == sid:
                actions = statement["Action"]
                found.append({actions} if isinstance(actions, str) else set(actions))
    assert found, f"no statement {sid}"
    return set.intersection(*found)


def test_the_roles_allow_every_dynamodb_operation_the_adapters_call(synthesized: Synthesized) -> None:
    # Moto does not enforce IAM, so a call the roles do not allow passes every other test and fails on AWS
    # (BatchWriteItem did: node records, the completion feed's deletes, stale start markers).
    operations = _dynamodb_operations()
    assert {"dynamodb:BatchWriteItem", "dynamodb:TransactWriteItems"} <= operations
    # A transaction is authorised item by item (PutItem, UpdateItem, ...), not as TransactWriteItems.
    needed = operations - {"dynamodb:TransactWriteItems"}
    assert needed <= _table_actions(synthesized, "ClusterState")  # the control plane and the workers
    # The leader submits, cancels and reads its completion feed (deleting what it read); it deletes no item alone.
    assert needed - {"dynamodb:DeleteItem"} <= _table_actions(synthesized, "TrackJobs")

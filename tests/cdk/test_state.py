"""The job queue, its dead-letter queue and the state table: encrypted, durable, and sized to the functions."""

from __future__ import annotations

from aws_cdk.assertions import Match

from cdk import constants
from shared.adapters.state_table import PK, SK, TTL_ATTRIBUTE
from tests.cdk.conftest import CLUSTER, Synthesized


def test_every_queue_is_encrypted_and_refuses_plain_http(synthesized: Synthesized) -> None:
    queues = synthesized.resources("AWS::SQS::Queue")
    assert len(queues) == 4  # jobs, dead letters, failed invocations, undelivered events (issue 13)
    for queue in queues.values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
        assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    for logical_id in queues:
        synthesized.template.has_resource_properties(
            "AWS::SQS::QueuePolicy",
            {
                "Queues": [{"Ref": logical_id}],
                "PolicyDocument": Match.object_like(
                    {
                        "Statement": Match.array_with(
                            [
                                Match.object_like(
                                    {
                                        "Effect": "Deny",
                                        "Action": "sqs:*",
                                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                    }
                                )
                            ]
                        )
                    }
                ),
            },
        )


def test_the_job_queue_redrives_to_the_dead_letter_queue(synthesized: Synthesized) -> None:
    state = synthesized.stack.state
    synthesized.template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "QueueName": f"shoal-{CLUSTER}-jobs",
            "RedrivePolicy": {
                "deadLetterTargetArn": synthesized.resolve(state.dead_letter_queue.queue_arn),
                "maxReceiveCount": constants.MAX_RECEIVE_COUNT,
            },
        },
    )


def test_queue_visibility_is_at_least_six_times_the_longest_function_timeout(synthesized: Synthesized) -> None:
    # The rule (AWS's, for Lambda consumers of a queue): visibility timeout >= 6 x the function timeout, so a
    # message is never handed out twice while a function invocation and its retries may still hold it.
    timeouts = [f["Properties"]["Timeout"] for f in synthesized.resources("AWS::Lambda::Function").values()]
    (job_queue,) = [
        q for q in synthesized.resources("AWS::SQS::Queue").values() if q["Properties"]["QueueName"].endswith("-jobs")
    ]
    assert job_queue["Properties"]["VisibilityTimeout"] >= 6 * max(timeouts)


def test_the_table_is_on_demand_encrypted_recoverable_and_expires_items(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": f"shoal-{CLUSTER}-state",
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
            "AttributeDefinitions": [
                {"AttributeName": PK, "AttributeType": "S"},
                {"AttributeName": SK, "AttributeType": "S"},
            ],
            "SSESpecification": {"SSEEnabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
        },
    )


def test_destroying_the_stack_leaves_no_state_behind(synthesized: Synthesized) -> None:
    for resource_type in ("AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::Logs::LogGroup"):
        for logical_id, resource in synthesized.resources(resource_type).items():
            assert resource.get("DeletionPolicy") == "Delete", logical_id


def test_the_staging_bucket_is_private_encrypted_and_empties_itself(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LifecycleConfiguration": {
                "Rules": Match.array_with([Match.object_like({"ExpirationInDays": 1, "Status": "Enabled"})])
            },
        },
    )
    outputs = synthesized.template_json["Outputs"]
    assert "StagingBucketName" in outputs

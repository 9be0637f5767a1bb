"""Secure by default, provably: cdk-nag's AwsSolutions pack and cfn-lint on the synthesized template."""

from __future__ import annotations

import json

from aws_cdk import Validations
from cfnlint.api import ManualArgs, lint

from tests.cdk.conftest import CLUSTER, REGION, Synthesized

# Every acknowledged cdk-nag finding, by construct. Adding one is a deliberate change to this table.
ACKNOWLEDGED = {
    ("Workers/Role", "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]"),
    ("ControlPlane/Role", "AwsSolutions-IAM5[Resource::*]"),
    *(
        ("ControlPlane/Role", f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:{REGION}:<AWS::AccountId>:{r}/*]")
        for r in ("instance", "volume", "network-interface", "spot-instances-request")
    ),
    ("ControlPlane/EvaluateScaling", "AwsSolutions-L1"),
    ("ControlPlane/OnInstanceEvent", "AwsSolutions-L1"),
    ("ControlPlane/LifecycleStep", "AwsSolutions-L1"),
    ("Staging/Bucket", "AwsSolutions-S1"),
    ("ControlPlane/FailedInvocations", "AwsSolutions-SQS3"),  # itself a dead-letter destination (issue 13)
    ("Triggers/UndeliveredEvents", "AwsSolutions-SQS3"),
    ("Workers/Role", f"AwsSolutions-IAM5[Resource::<StagingBucketF0D7AEDD.Arn>/shoal/{CLUSTER}/staging/*]"),
    ("Workers/Jobs/Role", f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{CLUSTER}--toil/*]"),
    ("Leader/Role", f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{CLUSTER}--toil/*]"),
    ("Leader/Role", "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]"),
    *(
        (f"Lifecycle/{machine}", f"AwsSolutions-IAM5[{finding}]")
        for machine in ("LaunchCluster", "TeardownCluster")
        for finding in ("Resource::*", "Resource::<ControlPlaneLifecycleStep7519542F.Arn>:*")
    ),
    *(
        (
            "Lifecycle/TeardownCluster",
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:{REGION}:<AWS::AccountId>:{r}/*]",
        )
        for r in ("instance", "spot-instances-request")
    ),
}


def test_cdk_nag_finds_nothing_unacknowledged(synthesized: Synthesized) -> None:
    # The synth in the fixture would have raised on any finding; the report says so too.
    report = json.loads((synthesized.outdir / "validation-report.json").read_text())
    assert all(plugin.get("conclusion") != "failure" for plugin in report["pluginReports"]), report


def test_every_acknowledgment_is_listed_and_gives_a_reason(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    found = set()
    for construct in stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type != Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                continue
            for rule, reason in entry.data.items():
                if not rule.startswith("AwsSolutions::"):
                    continue  # CDK's own acknowledgments of CloudFormation validation quirks
                assert len(reason.split()) >= 8, f"{rule}: give the reason in a sentence"
                found.add(
                    (construct.node.path.removeprefix(f"{stack.node.path}/"), rule.removeprefix("AwsSolutions::"))
                )
    assert found == ACKNOWLEDGED


def test_cfn_lint_finds_no_errors(synthesized: Synthesized) -> None:
    matches = lint(json.dumps(synthesized.template_json), config=ManualArgs(regions=[REGION]))
    # W3005 (a DependsOn that a GetAtt already implies) is how CDK writes templates: noise.
    problems = [f"{m.rule.id} {m.message}" for m in matches if m.rule.id != "W3005"]
    errors = [p for p in problems if p.startswith("E")]
    assert not errors, errors
    assert not problems, problems


def test_every_taggable_resource_carries_the_cluster_tag(synthesized: Synthesized) -> None:
    tagged_types = {
        "AWS::SQS::Queue",
        "AWS::DynamoDB::Table",
        "AWS::Lambda::Function",
        "AWS::Events::Rule",
        "AWS::CloudWatch::Alarm",
        "AWS::EC2::VPC",
        "AWS::EC2::Subnet",
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::FlowLog",
        "AWS::IAM::Role",
        "AWS::Logs::LogGroup",
    }
    seen = set()
    for logical_id, resource in synthesized.template_json["Resources"].items():
        tags = resource.get("Properties", {}).get("Tags")
        if resource["Type"] in tagged_types:
            assert tags is not None, logical_id
        if tags is not None:
            seen.add(resource["Type"])
            assert {"Key": "shoal:cluster", "Value": CLUSTER} in tags, logical_id
    assert tagged_types <= seen


def test_every_lifecycle_task_has_a_comment_and_a_retry(synthesized: Synthesized) -> None:
    from shared.cli.graph import definitions_from_template

    definitions = definitions_from_template(synthesized.template_json)
    assert len(definitions) == 2

    def states(definition: dict[str, object]) -> dict[str, dict[str, object]]:
        found: dict[str, dict[str, object]] = {}
        for name, state in definition["States"].items():  # type: ignore[attr-defined]
            found[name] = state
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if processor:
                found.update(states(processor))
        return found

    for definition in definitions.values():
        for name, state in states(definition).items():
            assert state.get("Comment"), f"{name} has no comment"
            assert name[0].isupper() and " " in name, f"{name!r} does not read as a sentence"
            if state["Type"] == "Task":
                assert state.get("Retry"), f"task {name!r} has no retry"

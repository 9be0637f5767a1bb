"""The leader's launch template and role: submit rights and the job store, a login shell where Toil just works."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from tests.cdk.conftest import CLUSTER, REGION, Synthesized


def _logical_id(s: Synthesized, construct: Any) -> str:
    return str(s.stack.get_logical_id(construct.node.default_child))


def _template_data(s: Synthesized) -> dict[str, Any]:
    template = s.resources("AWS::EC2::LaunchTemplate")[_logical_id(s, s.stack.leader.launch_template)]
    data: dict[str, Any] = template["Properties"]["LaunchTemplateData"]
    return data


def _user_data(s: Synthesized) -> str:
    parts = _template_data(s)["UserData"]["Fn::Base64"]["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else f"<{sorted(p)[0]}>" for p in parts)


def test_the_leader_role_may_submit_and_own_the_job_store_and_nothing_of_the_workers(
    synthesized: Synthesized,
) -> None:
    s = synthesized
    (role,) = [r for lid, r in s.resources("AWS::IAM::Role").items() if lid == _logical_id(s, s.stack.leader.role)]
    (policy,) = role["Properties"]["Policies"]
    statements = {st["Sid"]: st for st in policy["PolicyDocument"]["Statement"]}
    assert list(statements) == [
        "SubmitJobs",
        "TrackJobs",
        "AnnounceDemand",
        "JobStoreBucket",
        "JobStoreObjects",
        "ReadShoalCode",
    ]
    # submit only: send to the queue, never receive or delete (that is the agents')
    assert statements["SubmitJobs"]["Action"] == "sqs:SendMessage"
    assert statements["SubmitJobs"]["Resource"] == s.resolve(s.stack.state.queue.queue_arn)
    assert "dynamodb:DeleteItem" not in statements["TrackJobs"]["Action"]
    # the job store: Toil on the leader creates (and with --clean deletes) the bucket CLUSTER--toil
    assert "s3:CreateBucket" in statements["JobStoreBucket"]["Action"]
    assert statements["JobStoreBucket"]["Resource"] == {
        "Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":s3:::{CLUSTER}--toil"]]
    }
    # and nothing that launches, passes roles or touches EC2
    actions = [
        a for st in statements.values() for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    ]
    assert not [a for a in actions if a.startswith(("ec2:", "iam:", "sts:"))]


def test_the_leader_needs_no_metadata_hop_and_has_a_terminating_encrypted_root(synthesized: Synthesized) -> None:
    data = _template_data(synthesized)
    assert data["MetadataOptions"] == {
        "HttpTokens": "required",
        "HttpPutResponseHopLimit": 1,
        "HttpEndpoint": "enabled",
    }
    assert data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    assert data["InstanceInitiatedShutdownBehavior"] == "terminate"


def test_a_login_shell_on_the_leader_has_toil_and_the_plugin_configured(synthesized: Synthesized) -> None:
    script = _user_data(synthesized)
    # Toil at the installed version (the appliance's), with the plugin's code from the asset
    assert f"toil[cwl,aws]=={metadata.version('toil')}" in script
    assert "/opt/shoal/agent.zip" in script
    for line in (
        f"export SHOAL_CLUSTER_NAME={CLUSTER}",
        f"export SHOAL_REGION={REGION}",
        "export SHOAL_TABLE_NAME='<Ref>'",
        "export SHOAL_QUEUE_URL='<Ref>'",
        "export PYTHONPATH=/opt/shoal/agent",
        "export PATH=/opt/shoal/venv/bin:$PATH",
    ):
        assert line in script, line
    assert "grep -q shoalCluster /tmp/toil-help" in script  # boot fails loudly if Toil's loader misses the plugin
    assert "AWS_ACCESS_KEY_ID" not in script  # the instance role, never a key Toil would save in the job store


def test_the_stack_tells_launch_cluster_where_to_start_the_leader(synthesized: Synthesized) -> None:
    outputs = synthesized.template_json["Outputs"]
    assert outputs["LeaderLaunchTemplateId"]["Value"] == {
        "Ref": _logical_id(synthesized, synthesized.stack.leader.launch_template)
    }
    assert "Ref" in outputs["LeaderSubnetId"]["Value"]

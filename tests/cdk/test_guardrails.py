"""The guardrails in the stack: the budget alarm at 80 %, the spend widgets, the scaler's right to start the
teardown when a lease runs out; and bad guardrail settings as one line at synth, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Match, Template

from cdk.settings_loader import load_stack_settings
from cdk.stack import build_app
from shared.domain.settings import SettingsError
from shared.services import telemetry
from tests.cdk.conftest import CLUSTER, REPO_ROOT, SETTINGS_TOML, Synthesized, write_settings

GUARDED = SETTINGS_TOML + 'budget = 500\nmax_hourly_cost = "$40"\nlease = "12h"\nidle_lease = "2h"\n'


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Template, dict[str, Any]]:
    settings = write_settings(tmp_path_factory.mktemp("guarded"), GUARDED)
    app = App(outdir=str(tmp_path_factory.mktemp("cdk.out")), context={"settings": str(settings)})
    stack = build_app(app, environ={})
    template_json = app.synth().get_stack_by_name(stack.stack_name).template  # cdk-nag runs here
    return Template.from_json(template_json), json.loads(json.dumps(template_json))


def test_a_budget_has_an_alarm_at_80_percent_of_it(guarded: tuple[Template, dict[str, Any]]) -> None:
    template, _ = guarded
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": f"shoal-{CLUSTER}-budget-80-percent",
            "MetricName": telemetry.METRIC_SPENT,
            "Namespace": telemetry.METRICS_NAMESPACE,
            "Dimensions": [{"Name": "cluster", "Value": CLUSTER}, {"Name": "service", "Value": "shoal"}],
            "Statistic": "Maximum",
            "Threshold": 400,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        },
    )


def test_the_dashboard_shows_spend_against_the_budget_and_the_cap(guarded: tuple[Template, dict[str, Any]]) -> None:
    _, template_json = guarded
    (dashboard,) = [r for r in template_json["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    body = "".join(part if isinstance(part, str) else "TOKEN" for part in parts)  # tokens sit inside strings
    widgets = {w["properties"].get("title"): w["properties"] for w in json.loads(body)["widgets"]}
    spend = widgets["Spend against the budget (BUDGET_EXHAUSTED at the line)"]
    assert spend["annotations"]["horizontal"] == [{"label": "budget", "value": 500, "yAxis": "left"}]
    assert spend["metrics"][0][:2] == [telemetry.METRICS_NAMESPACE, telemetry.METRIC_SPENT]
    cost = widgets["Fleet price per hour against maxHourlyCost"]
    assert cost["annotations"]["horizontal"] == [{"label": "maxHourlyCost", "value": 40, "yAxis": "left"}]


def test_with_a_lease_the_scaler_may_start_only_this_clusters_teardown(
    guarded: tuple[Template, dict[str, Any]],
) -> None:
    template, template_json = guarded
    machine_name = f"shoal-{CLUSTER}-TeardownCluster"
    template.has_resource_properties("AWS::StepFunctions::StateMachine", {"StateMachineName": machine_name})
    arn = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":states:us-east-1:",
                {"Ref": "AWS::AccountId"},
                f":stateMachine:{machine_name}",
            ],
        ]
    }
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "Policies": [
                {
                    "PolicyName": "scaler",
                    "PolicyDocument": {
                        "Statement": Match.array_with(
                            [
                                {
                                    "Sid": "StartTheTeardownWhenTheLeaseEnds",
                                    "Effect": "Allow",
                                    "Action": "states:StartExecution",
                                    "Resource": arn,
                                }
                            ]
                        )
                    },
                }
            ]
        },
    )
    functions = [r for r in template_json["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert functions and all(
        f["Properties"]["Environment"]["Variables"]["SHOAL_TEARDOWN_STATE_MACHINE_ARN"] == arn for f in functions
    )
    settings = json.loads(functions[0]["Properties"]["Environment"]["Variables"]["SHOAL_CLUSTER_SETTINGS"])
    assert (settings["budget"], settings["max_hourly_cost"], settings["lease"], settings["idle_lease"]) == (
        500.0,
        40.0,
        43200.0,
        7200.0,
    )


def test_without_guardrails_there_is_no_budget_alarm_nor_teardown_right(synthesized: Synthesized) -> None:
    alarms = synthesized.resources("AWS::CloudWatch::Alarm").values()
    assert not [a for a in alarms if "budget" in a["Properties"]["AlarmName"]]
    assert "states:StartExecution" not in json.dumps(synthesized.resources("AWS::IAM::Role"))


def load(context: dict[str, str], directory: Path) -> Any:
    write_settings(directory)
    return load_stack_settings(
        {"settings": "cluster.toml", **context}.get, base_dir=directory, environ={}, version="0.1.0"
    )


@pytest.mark.parametrize(
    ("context", "fragment"),
    [
        ({"maxHourlyCost": "-1"}, "setting 'max_hourly_cost': '-1' is not an amount of dollars"),
        ({"maxHourlyCost": "0"}, "setting 'max_hourly_cost': '0' is not a positive amount of dollars"),
        ({"maxHourlyCost": "forty"}, "setting 'max_hourly_cost'"),
        ({"maxHourlyCost": "0.1"}, "max_hourly_cost (-c maxHourlyCost) $0.1/h is below what min_nodes"),
        ({"budget": "-5"}, "setting 'budget'"),
        ({"lease": "banana"}, "setting 'lease': 'banana' is not a duration"),
        ({"idleLease": "30s"}, "idle_lease (-c idleLease) must be at least the scale interval (120 s)"),
        ({"lease": "-1h"}, "setting 'lease'"),
    ],
)
def test_a_bad_guardrail_is_one_line_naming_it(context: dict[str, str], fragment: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as raised:
        load(context, tmp_path)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("context", [{"maxHourlyCost": "-1"}, {"lease": "banana"}])
def test_synth_with_a_bad_guardrail_exits_2(context: dict[str, str], tmp_path: Path) -> None:
    settings = write_settings(tmp_path)
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "CDK_CONTEXT_JSON": json.dumps({"settings": str(settings), **context}),
            "CDK_OUTDIR": str(tmp_path / "out"),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    (name,) = context
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and name in result.stderr + "maxHourlyCost lease"
    assert {"maxHourlyCost": "max_hourly_cost", "lease": "'lease'"}[name] in result.stderr
    assert not list((tmp_path / "out").glob("*.template.json"))

"""``shoal graph`` draws an ASL definition; here from a small hand-written template."""

from __future__ import annotations

import json
from pathlib import Path

from shared.cli.graph import definitions_from_template, to_dot
from shared.cli.main import main

DEFINITION = {
    "StartAt": "Record the cluster as launching",
    "States": {
        "Record the cluster as launching": {"Type": "Task", "Comment": "status", "Next": "Are the nodes running?"},
        "Are the nodes running?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.running", "BooleanEquals": True, "Next": "Done"}],
            "Default": "Wait for static nodes to run",
        },
        "Wait for static nodes to run": {"Type": "Wait", "Seconds": 10, "Next": "Are the nodes running?"},
        "Terminate each batch": {
            "Type": "Map",
            "ItemProcessor": {"StartAt": "Terminate", "States": {"Terminate": {"Type": "Task", "End": True}}},
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed"}],
            "Next": "Done",
        },
        "Failed": {"Type": "Fail", "Cause": "x"},
        "Done": {"Type": "Succeed"},
    },
}


def test_every_state_and_transition_is_drawn() -> None:
    dot = to_dot("Launch", DEFINITION)
    assert dot.startswith('digraph "Launch" {')
    assert '"Are the nodes running?" -> "Done" [label="$.running BooleanEquals true"];' in dot
    assert '"Are the nodes running?" -> "Wait for static nodes to run" [label="otherwise"];' in dot
    assert '"Terminate each batch" -> "Failed" [label="on States.ALL"];' in dot
    assert 'subgraph "cluster_Terminate each batch"' in dot
    assert dot.count("shape=diamond") == 1


def test_definitions_are_read_from_a_synthesized_template(tmp_path: Path) -> None:
    # GIVEN a template whose definition CDK wrote as Fn::Join with references
    text = json.dumps(DEFINITION)
    head, tail = text.split('"status"')
    template = {
        "Resources": {
            "Launch": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {"DefinitionString": {"Fn::Join": ["", [head, '"', {"Ref": "Fn"}, '"', tail]]}},
            },
            "Other": {"Type": "AWS::SQS::Queue", "Properties": {}},
        }
    }
    assert (
        definitions_from_template(template)["Launch"]["States"]["Record the cluster as launching"]["Comment"] == "${Fn}"
    )
    # WHEN the command draws it into a folder
    path = tmp_path / "t.json"
    path.write_text(json.dumps(template))
    assert main(["graph", "--template", str(path), "--out", str(tmp_path / "dot")]) == 0
    # THEN one DOT file per state machine
    assert (tmp_path / "dot" / "Launch.dot").read_text().startswith('digraph "Launch"')


def test_a_missing_template_is_a_clear_error(tmp_path: Path, capsys: object) -> None:
    assert main(["graph", "--template", str(tmp_path / "none.json")]) == 2

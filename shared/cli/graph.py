"""``shoal graph``: draw a state machine from its Amazon States Language, as Graphviz DOT.

The definitions come from the synthesized template (``cdk.out``), the same ones the stack deploys, so
users can read the launch and teardown flows without the AWS console. ``dot -Tsvg`` (Graphviz) turns
the output into a picture.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

_SHAPES = {"Task": "box", "Choice": "diamond", "Wait": "ellipse", "Map": "box3d", "Parallel": "box3d",
           "Pass": "box", "Succeed": "doublecircle", "Fail": "doubleoctagon"}  # fmt: skip


class GraphInputError(ValueError):
    """A template or definition that cannot be drawn."""


def to_dot(name: str, definition: Mapping[str, Any]) -> str:
    lines = [f"digraph {_quote(name)} {{", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];']
    lines.append('  "__start__" [shape=circle, label="", width=0.2, style=filled, fillcolor=black];')
    lines.append(f'  "__start__" -> {_quote(definition["StartAt"])};')
    lines.extend(_states(definition["States"], indent="  "))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _states(states: Mapping[str, Mapping[str, Any]], indent: str) -> Iterator[str]:
    for state_name, state in states.items():
        kind = state.get("Type", "Task")
        label = _quote(state_name) if kind == "Task" else _quote(state_name)[:-1] + f'\\n({kind})"'
        shape, tooltip = _SHAPES.get(kind, "box"), _quote(state.get("Comment", ""))
        yield f"{indent}{_quote(state_name)} [shape={shape}, label={label}, tooltip={tooltip}];"
        for target, edge_label in _edges(state):
            attributes = f" [label={_quote(edge_label)}]" if edge_label else ""
            yield f"{indent}{_quote(state_name)} -> {_quote(target)}{attributes};"
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if kind == "Map" and processor:
            yield f"{indent}subgraph {_quote('cluster_' + state_name)} {{"
            yield f"{indent}  label={_quote('each item: ' + state_name)}; style=dashed;"
            yield from _states(processor["States"], indent + "  ")
            yield f"{indent}}}"
            yield f"{indent}{_quote(state_name)} -> {_quote(processor['StartAt'])} [style=dotted];"


def _edges(state: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if "Next" in state:
        yield state["Next"], ""
    for choice in state.get("Choices", []):
        yield choice["Next"], _describe_choice(choice)
    if "Default" in state:
        yield state["Default"], "otherwise"
    for catch in state.get("Catch", []):
        yield catch["Next"], "on " + ", ".join(catch.get("ErrorEquals", ["error"]))


def _describe_choice(choice: Mapping[str, Any]) -> str:
    variable = str(choice.get("Variable", ""))
    for key, value in choice.items():
        if key not in ("Variable", "Next"):
            return f"{variable} {key} {json.dumps(value)}"[:60]
    return variable


def _quote(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def definitions_from_template(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """State machine definitions in a synthesized CloudFormation template, by logical id.

    CDK writes ``DefinitionString`` as ``Fn::Join`` of strings and references; references become
    readable placeholders so the flow can be drawn offline.
    """
    found: dict[str, dict[str, Any]] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::StepFunctions::StateMachine":
            continue
        raw = resource["Properties"].get("DefinitionString")
        text = raw if isinstance(raw, str) else _join(raw)
        found[logical_id] = json.loads(text)
    return found


def _join(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_join(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return f"${{{value['Ref']}}}"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    return "${token}"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("graph", help="draw the launch and teardown state machines as Graphviz DOT")
    parser.add_argument("--template", type=Path, help="a synthesized template (default: the one in cdk.out/)")
    parser.add_argument("--out", type=Path, help="write NAME.dot files into this folder instead of stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = sys.stdout if out is None else out  # read per call: a default would bind the stdout of import time
    try:
        template_path = args.template or _default_template()
        template = json.loads(template_path.read_text(encoding="utf-8"))
        if not isinstance(template, dict):
            raise GraphInputError(f"{template_path} is not a CloudFormation template (a JSON object)")
        definitions = definitions_from_template(template)
    except OSError as error:
        print(
            f"shoal graph: cannot read {error.filename or 'the template'}: {error.strerror or error}", file=sys.stderr
        )
        return 2
    except GraphInputError as error:
        print(f"shoal graph: {error}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # JSON and Unicode errors are ValueErrors
        print(f"shoal graph: --template {template_path}: not a synthesized template ({error!s:.200})", file=sys.stderr)
        return 2
    if not definitions:
        print(f"shoal graph: no state machines in {template_path}; run `make synth` first", file=sys.stderr)
        return 2
    try:
        dots = {logical_id: to_dot(logical_id, definition) for logical_id, definition in definitions.items()}
    except (KeyError, TypeError, AttributeError) as error:
        print(f"shoal graph: {template_path}: a state machine definition lacks {error}; is it a synthesized template?",
              file=sys.stderr)  # fmt: skip
        return 2
    if not args.out:
        for dot in dots.values():
            out.write(dot)
        return 0
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        written = []
        for logical_id, dot in dots.items():
            path = args.out / f"{logical_id}.dot"
            path.write_text(dot, encoding="utf-8")
            written.append(path)
    except OSError as error:
        print(f"shoal graph: cannot write --out {args.out}: {error.strerror or error}", file=sys.stderr)
        return 2
    for path in written:
        out.write(f"wrote {path}\n")
    return 0


def _default_template() -> Path:
    templates = sorted(Path("cdk.out").glob("*.template.json"))
    if not templates:
        raise GraphInputError("no template in cdk.out/; run `make synth` first or pass --template")
    return templates[0]

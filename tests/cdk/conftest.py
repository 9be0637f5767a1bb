"""One synthesis per test session: the cluster stack from a known settings file, cdk-nag included.

Synthesis takes seconds, so every template assertion shares this one (``synthesized``). The settings
differ from the example ``shoal.toml`` on purpose (a 2-minute interval, 64 GiB of storage) so the
tests see values flow through rather than defaults.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_NODE = REPO_ROOT / "node_modules" / ".bin" / "node"
if PROJECT_NODE.exists():  # the project's Node 22 (package.json): jsii runs without the Node 20 end-of-life banner
    os.environ.setdefault("JSII_NODE", str(PROJECT_NODE))

from aws_cdk import App  # noqa: E402 - after choosing jsii's Node
from aws_cdk.assertions import Template  # noqa: E402

from cdk.stack import ShoalStack, build_app  # noqa: E402

CLUSTER = "test-cluster"
REGION = "us-east-1"
NODE_TYPES = "c5.4xlarge/c5a.4xlarge:0.42,m5.2xlarge,r5.2xlarge"
SETTINGS_TOML = f"""
name = "{CLUSTER}"
node_types = "{NODE_TYPES}"
region = "{REGION}"
min_nodes = [0, 1, 0]
max_nodes = [10, 4, 4]
scale_interval = "2m"
node_storage = 64
"""


@dataclass(frozen=True, slots=True)
class Synthesized:
    app: App
    stack: ShoalStack
    template: Template
    template_json: dict[str, Any]
    outdir: Path

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.template_json["Resources"].items()
            if resource["Type"] == resource_type
        }

    def resolve(self, value: object) -> Any:
        """A construct attribute (a token) as it appears in the template: {"Ref": ...}, {"Fn::GetAtt": ...}."""
        return self.stack.resolve(value)


def write_settings(directory: Path, text: str = SETTINGS_TOML) -> Path:
    path = directory / "cluster.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    # GIVEN a settings file and an environment without TOIL_* variables (the default image rule)
    settings = write_settings(tmp_path_factory.mktemp("settings"))
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = App(outdir=str(outdir), context={"settings": str(settings)})
    stack = build_app(app, environ={})
    # WHEN the app synthesizes (cdk-nag runs here and raises on any unacknowledged finding)
    assembly = app.synth()
    template_json = assembly.get_stack_by_name(stack.stack_name).template
    return Synthesized(
        app=app,
        stack=stack,
        template=Template.from_json(template_json),
        template_json=json.loads(json.dumps(template_json)),
        outdir=outdir,
    )

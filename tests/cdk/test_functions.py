"""The Lambda functions: code from shared/ and functions/ only, Powertools from its layer, the environment
the code reads set from the same settings model, and a runtime that matches the layer's build."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cdk import constants
from cdk.functions import FUNCTIONS, LAMBDA_PACKAGES
from shared.appliance import toil_image_defaults
from shared.services import telemetry
from shared.services.environment import ENVIRONMENT_VARIABLES
from shared.wiring.settings import read_function_environment
from tests.cdk.conftest import REGION, REPO_ROOT, Synthesized

# Where the Lambda code path reads its environment: the handlers and the environment model.
CODE_READING_ENVIRONMENT = [
    *sorted((REPO_ROOT / "functions").glob("*.py")),
    REPO_ROOT / "shared/services/environment.py",
]
SHOAL_VARIABLE = re.compile(r"""["'](SHOAL_[A-Z0-9_]+)["']""")


def _functions(s: Synthesized) -> dict[str, dict[str, Any]]:
    return {f["Properties"]["Handler"]: f["Properties"] for f in s.resources("AWS::Lambda::Function").values()}


def test_there_is_one_function_per_handler_module(synthesized: Synthesized) -> None:
    assert set(_functions(synthesized)) == {f"functions.{module}.lambda_handler" for module in FUNCTIONS}
    for module in FUNCTIONS:
        assert (REPO_ROOT / "functions" / f"{module}.py").exists()


@pytest.mark.parametrize("module", sorted(FUNCTIONS))
def test_every_variable_the_code_reads_is_set(synthesized: Synthesized, module: str) -> None:
    variables = _functions(synthesized)[f"functions.{module}.lambda_handler"]["Environment"]["Variables"]
    # THEN the contract's variables, and Powertools' names, are all there (and nothing else)
    assert set(variables) == {*ENVIRONMENT_VARIABLES, "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}
    assert variables["POWERTOOLS_SERVICE_NAME"] == telemetry.SERVICE_NAME
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == telemetry.METRICS_NAMESPACE
    # AND every SHOAL_* name the handlers' code path mentions is one of them
    read = {name for path in CODE_READING_ENVIRONMENT for name in SHOAL_VARIABLE.findall(path.read_text())}
    assert read, "the scan found no variable names: has the environment model moved?"
    assert read <= set(variables), sorted(read - set(variables))


def test_the_functions_read_back_the_settings_the_stack_was_built_from(synthesized: Synthesized) -> None:
    # GIVEN the environment of a function, CloudFormation references replaced by placeholder values
    (function,) = [f for h, f in _functions(synthesized).items() if "evaluate_scaling" in h]
    environ = {
        k: v if isinstance(v, str) else f"resolved-{k.lower()}" for k, v in function["Environment"]["Variables"].items()
    }
    # WHEN the function's environment model reads it
    env = read_function_environment(environ)
    # THEN the cluster settings are the stack's, unchanged
    assert env.cluster == synthesized.stack.settings.cluster
    assert env.cluster.appliance_image == f"quay.io/ucsc_cgl/toil:{toil_image_defaults().tag}"
    assert env.event_bus_name == "default"
    # AND the references point at the stack's own resources
    stack = synthesized.stack
    assert function["Environment"]["Variables"]["SHOAL_TABLE_NAME"] == synthesized.resolve(stack.state.table.table_name)
    assert function["Environment"]["Variables"]["SHOAL_QUEUE_URL"] == synthesized.resolve(stack.state.queue.queue_url)
    assert function["Environment"]["Variables"]["SHOAL_DLQ_URL"] == synthesized.resolve(
        stack.state.dead_letter_queue.queue_url
    )
    assert function["Environment"]["Variables"]["SHOAL_LAUNCH_TEMPLATE_ID"] == synthesized.resolve(
        stack.workers.launch_template.launch_template_id
    )
    subnets = function["Environment"]["Variables"]["SHOAL_SUBNET_IDS"]["Fn::Join"][1]
    assert [p for p in subnets if p != ","] == [synthesized.resolve(s.subnet_id) for s in stack.network.subnets]


def test_runtime_architecture_and_powertools_layer_agree(synthesized: Synthesized) -> None:
    for properties in _functions(synthesized).values():
        assert properties["Runtime"] == "python3.12"
        assert properties["Architectures"] == ["x86_64"]
        (layer,) = properties["Layers"]
        arn = "".join(p if isinstance(p, str) else "<partition>" for p in layer["Fn::Join"][1])
        assert arn == (
            f"arn:<partition>:lambda:{REGION}:017000801446:layer:"
            f"AWSLambdaPowertoolsPythonV3-python312-x86_64:{constants.POWERTOOLS_LAYER_VERSION}"
        )
        assert properties["Timeout"] == constants.FUNCTION_TIMEOUT_SECONDS
        assert properties["MemorySize"] == constants.FUNCTION_MEMORY_MB
        assert properties["TracingConfig"] == {"Mode": "Active"}


def test_the_layer_version_setting_in_cdk_json_is_the_default() -> None:
    # cdk.json shows users the knob; the constant is what an app without cdk.json (tests, benchmarks) uses.
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    assert context["powertoolsLayerVersion"] == constants.POWERTOOLS_LAYER_VERSION


def test_each_function_logs_to_its_own_retained_log_group(synthesized: Synthesized) -> None:
    groups = synthesized.resources("AWS::Logs::LogGroup")
    for properties in _functions(synthesized).values():
        group = groups[properties["LoggingConfig"]["LogGroup"]["Ref"]]
        assert group["Properties"]["RetentionInDays"] == 30
    # No custom resource anywhere (log retention, AwsCustomResource, auto-delete): moto could not deploy it.
    assert not [r for r in synthesized.template_json["Resources"].values() if r["Type"].startswith("Custom::")]
    assert not synthesized.resources("AWS::CloudFormation::CustomResource")


def _code_asset(s: Synthesized) -> Path:
    manifest = json.loads((s.outdir / f"{s.stack.stack_name}.assets.json").read_text())
    node_code = s.stack.code.asset.asset_path  # the nodes' code (cdk/node_code.py), not the functions'
    (source,) = {
        asset["source"]["path"]
        for asset in manifest["files"].values()
        if asset["source"]["path"].startswith("asset.") and asset["source"]["path"] != node_code
    }
    return Path(s.outdir) / source


def test_the_code_asset_holds_only_what_runs_in_lambda(synthesized: Synthesized) -> None:
    # GIVEN the asset directory the functions' code is zipped from
    asset = _code_asset(synthesized)
    # THEN it has the handlers and the packages they import, and nothing else, and no byte code
    assert {p.name for p in asset.iterdir()} == {"shared", "functions"}
    assert {p.name for p in (asset / "shared").iterdir()} == {
        "__init__.py",
        *(Path(package).name for package in LAMBDA_PACKAGES if package.startswith("shared/")),
    }
    assert not [p for p in asset.rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"]
    for module in FUNCTIONS:
        assert (asset / "functions" / f"{module}.py").is_file()
    # AND not the local cloud, the in-memory twins, the CLI or the agent
    assert (REPO_ROOT / "shared" / "local").is_dir() and not (asset / "shared" / "local").exists()
    assert (REPO_ROOT / "shared" / "adapters" / "memory_state.py").is_file()
    assert not (asset / "shared" / "adapters" / "memory_state.py").exists()
    assert (REPO_ROOT / "shared" / "adapters" / "memory_fleet.py").is_file()
    assert not list((asset / "shared" / "adapters").glob("memory_*.py"))
    assert not {"cli", "worker", "local"} & {p.name for p in (asset / "shared").iterdir()}
    # AND no Docker bundling was involved: the asset is the source tree as is
    catalog = "shared/domain/catalog_data.py"
    assert (asset / catalog).read_text() == (REPO_ROOT / catalog).read_text()


def test_the_handlers_import_from_the_asset_alone(synthesized: Synthesized) -> None:
    # GIVEN the asset first on the path, as Lambda puts it (the venv still has the libraries)
    asset = _code_asset(synthesized)
    probe = (
        "import sys, functions.evaluate_scaling, functions.on_instance_event, functions.lifecycle_step\n"
        "print('\\n'.join(f'{n} {getattr(m, \"__file__\", None)}' for n, m in sorted(sys.modules.items())"
        " if n.split('.')[0] in ('shared', 'functions')))"
    )
    # WHEN a fresh interpreter imports the three handlers
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=asset,
        env={**os.environ, "PYTHONPATH": str(asset), "AWS_DEFAULT_REGION": REGION},
        capture_output=True,
        text=True,
        check=False,
    )
    # THEN they import, every Shoal module from the asset (nothing missing, nothing borrowed from the repo)
    assert done.returncode == 0, done.stderr
    loaded = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert "shared.services.reconcile" in loaded and "shared.formats.lifecycle" in loaded
    outside = {name: path for name, path in loaded.items() if path != "None" and not path.startswith(str(asset))}
    assert not outside, outside

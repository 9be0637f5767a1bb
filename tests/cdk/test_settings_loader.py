"""Settings for synthesis: shoal.toml, -c overrides, the appliance image, and one-line errors before any synth."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App

from cdk.settings_loader import StackSettings, load_stack_settings
from cdk.stack import build_app
from shared.domain.settings import SettingsError
from tests.cdk.conftest import REPO_ROOT, write_settings


def _context(values: dict[str, Any]) -> Any:
    return values.get


def _load(
    tmp_path: Path, context: dict[str, Any], *, text: str | None = None, environ: dict[str, str] | None = None
) -> StackSettings:
    settings = write_settings(tmp_path) if text is None else write_settings(tmp_path, text)
    return load_stack_settings(
        _context({"settings": str(settings), **context}), base_dir=tmp_path, environ=environ or {}, version="0.1.0"
    )


def test_the_example_settings_file_is_valid() -> None:
    # GIVEN the shoal.toml shipped in the repository and no -c
    settings = load_stack_settings(_context({}), base_dir=REPO_ROOT, environ={}, version="0.1.0")
    # THEN it describes the demo cluster
    assert settings.cluster.name == "demo"
    assert settings.cluster.node_types == "c5.4xlarge/c5a.4xlarge:0.42,m5.2xlarge,r5.2xlarge"
    assert settings.scale_interval_minutes == 1
    assert settings.source == "shoal.toml"


def test_context_overrides_the_file_with_toil_flag_names(tmp_path: Path) -> None:
    settings = _load(tmp_path, {"cluster": "other", "maxNodes": "3,3,3", "scale_interval": "5m"})
    assert settings.cluster.name == "other"
    assert settings.cluster.max_nodes == (3, 3, 3)
    assert settings.scale_interval_minutes == 5
    assert settings.source == "cluster.toml + -c cluster, maxNodes, scale_interval"


def test_the_largest_root_volume_comes_by_toils_style_of_name(tmp_path: Path) -> None:
    settings = _load(tmp_path, {"nodeStorage": "80", "maxNodeStorage": "500"})
    assert (settings.cluster.node_storage, settings.cluster.max_node_storage) == (80 * 2**30, 500 * 2**30)


def test_without_a_file_everything_can_come_from_context(tmp_path: Path) -> None:
    settings = load_stack_settings(
        _context({"cluster": "ctx", "nodeTypes": "m5.large"}), base_dir=tmp_path, environ={}, version="1.0.0"
    )
    assert settings.cluster.name == "ctx"
    assert settings.appliance_image == "quay.io/ucsc_cgl/toil:1.0.0"


@pytest.mark.parametrize(
    ("environ", "context", "expected"),
    [
        ({}, {}, "quay.io/ucsc_cgl/toil:0.1.0"),
        ({"TOIL_DOCKER_REGISTRY": "quay.io/me", "TOIL_DOCKER_NAME": "app"}, {}, "quay.io/me/app:0.1.0"),
        ({"TOIL_APPLIANCE_SELF": "quay.io/me/app:env"}, {}, "quay.io/me/app:env"),
        ({"TOIL_APPLIANCE_SELF": "quay.io/me/app:env"}, {"applianceImage": "quay.io/me/app:ctx"}, "quay.io/me/app:ctx"),
    ],
)
def test_the_appliance_image_follows_the_rule(
    tmp_path: Path, environ: dict[str, str], context: dict[str, str], expected: str
) -> None:
    settings = _load(tmp_path, context, environ=environ)
    assert settings.appliance_image == expected
    assert settings.cluster.appliance_image == expected  # the functions see the image the workers run


@pytest.mark.parametrize(
    ("context", "text", "fragment"),
    [
        ({"nodeTypes": "c5.4xlargee"}, None, "unknown instance type 'c5.4xlargee'"),
        ({"minNodes": "5,0,0", "maxNodes": "1,4,4"}, None, "minNodes 5 / maxNodes 1"),
        ({"cluster": "Bad_Name"}, None, "cluster name 'Bad_Name' is not valid"),
        ({"nodeTypes": ""}, None, "setting 'node_types' is required"),
        ({"scaleInterval": "90s"}, None, "scale_interval must be a whole number of minutes"),
        ({"zone": "us-west-2a"}, None, "zone 'us-west-2a' is not a zone of region 'us-east-1'"),
        ({"applianceImage": "Quay.io/Me/App"}, None, "appliance image: TOIL_APPLIANCE_SELF 'Quay.io/Me/App'"),
        ({"powertoolsLayerVersion": "latest"}, None, "powertoolsLayerVersion must be a positive layer version"),
        ({}, 'name = "x"\nnode_types = "m5.large"\nmax_nodez = [1]\n', "unknown setting 'max_nodez'"),
        ({}, 'name = "x"\nnode_types = ', "is not valid TOML"),
        ({}, '[cluster]\nname = "x"\n', "[cluster] tables are not settings"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    tmp_path: Path, context: dict[str, Any], text: str | None, fragment: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        _load(tmp_path, context, text=text)
    message = str(raised.value)
    assert fragment in message
    assert "\n" not in message


def test_an_empty_toil_appliance_self_is_an_error_not_the_default(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="TOIL_APPLIANCE_SELF '' is not a valid image reference: it is empty"):
        _load(tmp_path, {}, environ={"TOIL_APPLIANCE_SELF": ""})


def test_a_missing_settings_file_named_explicitly_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_stack_settings(_context({"settings": "nope.toml"}), base_dir=tmp_path, environ={})


def test_a_bad_setting_stops_the_app_before_any_construct(tmp_path: Path) -> None:
    # GIVEN an app whose context names an unknown instance type
    app = App(outdir=str(tmp_path / "out"), context={"settings": str(write_settings(tmp_path)), "nodeTypes": "z9.huge"})
    # WHEN the app is built
    with pytest.raises(SettingsError, match=r"unknown instance type 'z9\.huge'"):
        build_app(app, environ={})
    # THEN no stack was added
    assert app.node.children == []


def test_python_app_py_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    # GIVEN `python app.py` as `cdk synth -c minNodes=9 -c maxNodes=1` runs it (the CLI passes context this way)
    environ = {
        **os.environ,
        "CDK_CONTEXT_JSON": '{"minNodes": "9,0,0", "maxNodes": "1,1,1"}',
        "CDK_OUTDIR": str(tmp_path / "out"),
    }
    # WHEN it runs
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=120, check=False
    )
    # THEN it fails with status 2 and one line naming the settings, and writes no template
    lines = [line for line in result.stderr.splitlines() if line.startswith("shoal:")]
    assert result.returncode == 2, result.stderr
    assert lines == [
        "shoal: error: minNodes 9 / maxNodes 1 for c5.4xlarge/c5a.4xlarge:0.42 are not a valid range; "
        "need 0 <= min <= max (settings from shoal.toml + -c maxNodes, minNodes)"
    ]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.template.json"))

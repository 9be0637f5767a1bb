"""Issue 13: settings that were truncated, shifted or crashed synthesis are one line naming the setting.

Read the way ``cdk synth`` reads them: a TOML file plus ``-c`` overrides through ``load_stack_settings``; and
once through ``app.py`` as a real process, for the exit status.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from cdk.settings_loader import load_stack_settings
from shared.domain.settings import SettingsError
from tests.cdk.conftest import REPO_ROOT

BASE = 'name = "x"\nnode_types = "m5.large,c5.large"\nregion = "us-west-2"\n'


def load(text: str, context: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> Any:
    with tempfile.TemporaryDirectory(prefix="shoal-settings-") as directory:
        (Path(directory) / "cluster.toml").write_text(text)
        return load_stack_settings(
            {"settings": "cluster.toml", **(context or {})}.get,
            base_dir=Path(directory),
            environ=environ or {},
            version="0.1.0",
        )


@pytest.mark.parametrize(
    ("extra", "context", "fragment"),
    [
        ("node_storage = inf\n", {}, "setting 'node_storage'"),
        ("node_storage = nan\n", {}, "setting 'node_storage'"),
        ("min_nodes = [inf, 0]\n", {}, "setting 'min_nodes'"),
        ("min_nodes = [1.7, 0]\n", {}, "not a whole number"),
        ("warm_pool_size = inf\n", {}, "setting 'warm_pool_size'"),
        ("warm_pool_size = 2.9\n", {}, "not a whole number"),
        ("max_nodes = [" + "9" * 400 + "]\n", {}, "setting 'max_nodes'"),
        ("target_time = 1e308\n", {}, "setting 'target_time'"),
        ("beta_inertia = nan\n", {}, "beta_inertia must be in"),
        ("", {"minNodes": ",2"}, "empty entry"),
        ("", {"maxNodes": ",0"}, "empty entry"),
        ("", {"maxNodes": "3,"}, "empty entry"),
        ("", {"nodeStorage": "inf"}, "setting 'node_storage'"),
        ("", {"workerNetwork": "vpn"}, "worker_network 'vpn' is not one of public, nat, endpoints"),
        ("", {"scalerReservedConcurrency": "-1"}, "scalerReservedConcurrency must be a whole number >= 0"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(extra: str, context: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load(BASE + extra, context)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


def test_a_name_with_a_trailing_newline_is_refused() -> None:
    # GIVEN name = "demo\n": the name regex's "$" matched before the newline
    with pytest.raises(SettingsError, match=r"cluster name 'demo\\n' is not valid"):
        load('name = "demo\\n"\nnode_types = "m5.large"\n')


def test_an_empty_entry_does_not_shift_min_nodes_onto_the_first_type() -> None:
    # GIVEN -c minNodes=,2 (meant: 0 m5.large, 2 c5.large); before, (2,) made two m5.large always on
    with pytest.raises(SettingsError, match="empty entry"):
        load(BASE, {"minNodes": ",2"})
    # AND the written-out form still means what it says
    assert load(BASE, {"minNodes": "0,2"}).cluster.min_nodes == (0, 2)


def test_endpoints_take_an_ecr_appliance() -> None:
    image = "123456789012.dkr.ecr.us-west-2.amazonaws.com/shoal-appliance:1"
    settings = load(BASE + 'worker_network = "endpoints"\n', environ={"TOIL_APPLIANCE_SELF": image})
    assert settings.cluster.worker_network == "endpoints" and settings.appliance_image == image


def test_endpoints_take_toils_quay_appliance_through_an_ecr_cache() -> None:
    # GIVEN no TOIL_* variable: Toil's image on quay.io, which the stack caches in ECR (cdk/workers.py)
    settings = load(BASE + 'worker_network = "endpoints"\n')
    assert settings.appliance_image.startswith("quay.io/ucsc_cgl/toil:")


def test_endpoints_refuse_an_image_no_endpoint_reaches() -> None:
    # GIVEN an appliance on a registry outside AWS that no pull-through rule of ours caches
    with pytest.raises(SettingsError) as raised:
        load(BASE + 'worker_network = "endpoints"\n', environ={"TOIL_APPLIANCE_SELF": "ghcr.io/team/toil:1"})
    assert "cannot pull 'ghcr.io/team/toil:1'" in str(raised.value) and "\n" not in str(raised.value)


def test_synth_with_a_bad_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    # GIVEN warm_pool_size = inf (an OverflowError traceback before)
    settings = tmp_path / "cluster.toml"
    settings.write_text(BASE + "warm_pool_size = inf\n")
    # WHEN app.py runs as cdk synth runs it
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO_ROOT,
        env={**os.environ, "CDK_CONTEXT_JSON": f'{{"settings": "{settings}"}}', "CDK_OUTDIR": str(tmp_path / "out")},
        capture_output=True,
        text=True,
        check=False,
    )
    # THEN exit 2, one line naming the setting, nothing synthesized
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "warm_pool_size" in result.stderr
    assert not list((tmp_path / "out").glob("*.template.json"))

"""The quota and preemption settings: a bad value is one line naming the setting (or its flag), exit 2, at
every edge: the settings model, ``launch-cluster``'s flag, and ``cdk synth`` (app.py as a process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.domain.settings import ClusterSettings, SettingsError
from tests.cdk.conftest import REPO_ROOT
from tests.cli.test_bad_input import assert_one_line, no_aws, run_cli  # noqa: F401 (no_aws is a fixture)

BASE = {"name": "x", "node_types": "m5.large"}


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"max_preemptions": -1}, "setting 'max_preemptions'"),
        ({"max_preemptions": "two"}, "setting 'max_preemptions'"),
        ({"max_preemptions": 2.5}, "setting 'max_preemptions'"),
        ({"max_preemptions": 101}, "max_preemptions must be a whole number from 1 to 100"),
        ({"max_preemptions": 0}, "preemptible: false"),
        ({"quota_ttl": "banana"}, "setting 'quota_ttl'"),
        ({"quota_ttl": "10s"}, "quota_ttl must be from 60 seconds to 24 hours"),
    ],
)
def test_a_bad_quota_or_preemption_setting_is_one_line_naming_it(values: dict[str, object], fragment: str) -> None:
    with pytest.raises(SettingsError) as raised:
        ClusterSettings.from_mapping({**BASE, **values})
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


def test_good_values_read_back_through_the_mapping() -> None:
    settings = ClusterSettings.from_mapping({**BASE, "max_preemptions": "1", "quota_ttl": "15m"})
    assert (settings.max_preemptions, settings.quota_ttl) == (1, 900.0)
    assert ClusterSettings.from_mapping(settings.to_mapping()) == settings
    assert ClusterSettings(**BASE).max_preemptions == 2  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_aws")
def test_a_bad_max_preemptions_flag_is_refused_before_aws_is_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["launch-cluster", "demo", "--region", "us-west-2", "--nodeTypes", "m5.large", "--maxPreemptions", "-1"]
    code, _, err = run_cli(argv, tmp_path, capsys)
    assert_one_line(code, err, "--maxPreemptions", "max_preemptions")


@pytest.mark.parametrize(
    ("context", "name"), [('"maxPreemptions": "-1"', "max_preemptions"), ('"quotaTtl": "banana"', "quota_ttl")]
)
def test_synth_with_a_bad_value_exits_2_with_one_line_naming_it(tmp_path: Path, context: str, name: str) -> None:
    settings = tmp_path / "cluster.toml"
    settings.write_text('name = "x"\nnode_types = "m5.large"\nregion = "us-west-2"\n')
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "CDK_CONTEXT_JSON": f'{{"settings": "{settings}", {context}}}',
            "CDK_OUTDIR": str(tmp_path / "out"),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and name in result.stderr, result.stderr
    assert not list((tmp_path / "out").glob("*.template.json"))

"""docs/guardrails.md names only settings, ``-c`` keys, flags, metrics and job fields that exist, and covers
all three parts of issue 15 (the budget and lease, quota-aware placement, the preemption budget)."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

from cdk.settings_loader import CONTEXT_ALIASES
from shared.cli.main import build_parser
from shared.domain.jobs import Job
from shared.domain.settings import ClusterSettings
from shared.services import telemetry

DOC = (Path(__file__).resolve().parents[2] / "docs" / "guardrails.md").read_text()
SETTINGS = {f.name for f in dataclasses.fields(ClusterSettings)}
CONTEXT_KEYS = set(CONTEXT_ALIASES) | SETTINGS
API_NAMES = {"GetSpotPlacementScores", "VcpuLimitExceeded"}  # AWS's names, not metrics


def _flags() -> set[str]:
    flags: set[str] = set()
    parser = build_parser()
    for action in parser._actions:  # argparse offers no public walk of its subcommands
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= {s for a in sub._actions for s in a.option_strings}
    return flags


def test_the_doc_has_the_three_parts_of_the_issue_and_where_they_show() -> None:
    headings = re.findall(r"^## (.+)$", DOC, flags=re.MULTILINE)
    for part in ("budget", "Quota", "preemption budget", "status", "simulator"):
        assert any(part in h for h in headings), (part, headings)


def test_every_flag_the_doc_names_is_an_option_of_a_shoal_command() -> None:
    named = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", DOC))
    assert {"--budget", "--lease", "--maxPreemptions", "--vcpu-quota"} <= named
    assert named <= _flags(), named - _flags()


def test_every_setting_and_context_key_the_doc_names_exists() -> None:
    rows = [line for line in DOC.splitlines() if line.startswith("| `")]
    assert len(rows) >= 7
    for row in rows:
        first, second = (cell.strip() for cell in row.strip("|").split("|")[:2])
        setting = re.match(r'`"?(\w+)"?\s*[=:]', first)
        assert setting, row
        known = SETTINGS | {f.name for f in dataclasses.fields(Job)}
        assert setting.group(1) in known, row
        for key in re.findall(r"`(\w+)`", second):
            assert key in CONTEXT_KEYS, (key, row)
    for key in re.findall(r"-c ([a-z]\w*)=", DOC):
        assert key in CONTEXT_KEYS, key


def test_every_metric_the_doc_names_is_one_the_round_emits() -> None:
    emitted = {v for k, v in vars(telemetry).items() if k.startswith("METRIC_")}
    named = set(re.findall(r"`([A-Z][a-z]+(?:[A-Z][a-z]+)*)`", DOC)) - API_NAMES
    assert {"Spent", "PreemptedJobs", "VcpuQuotaUsedPercent"} <= named
    assert named <= emitted, named - emitted

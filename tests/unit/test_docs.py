"""The docs name only what exists: every `shoal` command and flag, `--shoal*` option, setting, `-c` key,
`SHOAL_*` variable and `make` target written in README.md and docs/*.md, checked against the real parser,
settings and Makefile."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields
from pathlib import Path

import pytest

from cdk.settings_loader import (
    CONTEXT_ALIASES,
    LAYER_VERSION_CONTEXT,
    RESERVED_CONCURRENCY_CONTEXT,
    SETTINGS_FILE_CONTEXT,
)
from shared.cli.main import build_parser
from shared.domain.settings import ClusterSettings
from shared.toil.settings import OPTIONS

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SETTINGS = {f.name for f in fields(ClusterSettings)}
CONTEXT_KEYS = (
    SETTINGS | set(CONTEXT_ALIASES) | {SETTINGS_FILE_CONTEXT, LAYER_VERSION_CONTEXT, RESERVED_CONCURRENCY_CONTEXT}
)
CODE_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`]+)`")  # inline code may wrap onto the next line
SHOAL_COMMAND = re.compile(r"(?<![\w./-])shoal ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)(.*)")
FLAG = re.compile(r"(?<![\w-])(--[A-Za-z][\w-]*)")
END_OF_ARGS = re.compile(r"\s--(?:\s|$)|\s#|\||&&|;|\bshoal ")


def segments(text: str) -> list[str]:
    """Code as written: each line of a fenced block (continuations joined) and each inline code span."""
    out: list[str] = []
    for block in CODE_FENCE.findall(text):
        out += block.replace("\\\n", " ").splitlines()
    prose = CODE_FENCE.sub("", text)
    out += [" ".join(span.split()) for span in INLINE.findall(prose)]
    return out


def all_segments() -> list[tuple[str, str]]:
    return [(path.name, segment) for path in DOCS for segment in segments(path.read_text(encoding="utf-8"))]


def shoal_invocations() -> list[tuple[str, list[str], list[str]]]:
    """(file, command words, flags) for every `shoal ...` written in code."""
    found = []
    commands = set(subcommands(build_parser()))
    for name, segment in all_segments():
        first = segment.split(" ", 1)[0]
        # `launch-cluster --leaderNodeType`: a command written without `shoal`
        code = f"shoal {segment}" if first in commands and " --" in segment else segment
        for match in SHOAL_COMMAND.finditer(code):
            rest = match[2]
            end = END_OF_ARGS.search(rest)
            args = rest[: end.start()] if end else rest
            found.append((name, match[1].split(), FLAG.findall(args)))
    return found


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def subparser(words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser of the command the words name (through nested verbs), and the words it did not use."""
    parser = build_parser()
    words = list(words)
    while words:
        choices = subcommands(parser)
        if not choices:
            break
        if words[0] not in choices:
            raise AssertionError(f"`shoal {' '.join(words)}`: no command {words[0]!r}; there are {sorted(choices)}")
        parser = choices[words.pop(0)]
    return parser, words


def test_the_docs_mention_shoal_commands_at_all() -> None:
    invocations = shoal_invocations()
    commands = {words[0] for _, words, _ in invocations}
    assert {"launch-cluster", "destroy-cluster", "ssh-cluster", "local", "demo", "status"} <= commands


@pytest.mark.parametrize(("doc", "words", "flags"), shoal_invocations(), ids=lambda v: str(v)[:40])
def test_every_shoal_command_and_flag_in_the_docs_exists(doc: str, words: list[str], flags: list[str]) -> None:
    parser, _ = subparser(words)
    known = set(parser._option_string_actions)
    unknown = [flag.split("=")[0] for flag in flags if flag.split("=")[0] not in known]
    assert not unknown, f"{doc}: `shoal {' '.join(words)}` has no {unknown}; it has {sorted(known)}"


def test_every_batch_system_option_in_the_docs_exists() -> None:
    real = {flag for flag, _ in OPTIONS.values()}
    written = {flag for _, segment in all_segments() for flag in FLAG.findall(segment) if flag.startswith("--shoal")}
    assert written, "the docs name no --shoal* option"
    assert written <= real, f"not options of the batch system: {sorted(written - real)}"


def test_every_cdk_context_key_in_the_docs_is_read() -> None:
    keys = {
        (name, key)
        for name, segment in all_segments()
        if "cdk " in segment or segment.startswith("-c ")
        for key in re.findall(r"(?<!\S)-c ([A-Za-z_]+)=", segment)
    }
    assert keys
    assert not [k for k in keys if k[1] not in CONTEXT_KEYS], f"-c keys the loader does not read: {keys}"


def test_every_setting_assigned_in_the_docs_is_a_setting() -> None:
    """`name = value` in code, as in shoal.toml, names a ClusterSettings field."""
    assigned = {
        (name, key)
        for name, segment in all_segments()
        for key in re.findall(r"^([a-z][a-z_]*[a-z]) = \S", segment.strip())
    }
    assert ("toil.md", "jobs_may_reach") in assigned
    assert not [a for a in assigned if a[1] not in SETTINGS], f"not settings: {assigned}"


def test_every_setting_named_in_the_docs_exists() -> None:
    """Backticked words the docs call a setting (`job_store_bucket` ... setting) are ClusterSettings fields."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in DOCS)
    named = set(re.findall(r"setting `([a-z_]+)`", text)) | set(re.findall(r"`([a-z_]+)`\*{0,2} \(a setting", text))
    named |= set(re.findall(r"`([a-z]+_[a-z_]+)` setting", text))
    assert {"job_store_bucket", "jobs_may_reach"} <= named
    assert named <= SETTINGS, f"not settings: {sorted(named - SETTINGS)}"


def test_every_shoal_variable_in_the_docs_is_read_somewhere() -> None:
    source = "\n".join(
        path.read_text(encoding="utf-8")
        for folder in ("shared", "cdk", "functions")
        for path in (ROOT / folder).rglob("*.py")
    )
    text = "\n".join(path.read_text(encoding="utf-8") for path in DOCS)
    named = set(re.findall(r"\bSHOAL_[A-Z_]*[A-Z]\b", text))
    assert "SHOAL_CLUSTER_NAME" in named
    assert not [v for v in named if f'"{v}"' not in source], f"unknown: {[v for v in named if f'{v!r}' not in source]}"


def test_every_make_target_in_the_docs_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w.-]+):", makefile, re.MULTILINE))
    written = {t for _, segment in all_segments() for t in re.findall(r"(?<![\w-])make ([a-z][\w-]*)", segment)}
    assert {"demo", "test"} <= written
    assert written <= targets, f"no such make target: {sorted(written - targets)}"


def test_the_caveats_the_docs_state_are_still_true() -> None:
    """Each caveat the docs state is checked against the code, so fixing the code fails here until the docs
    say so too."""
    from cdk import constants
    from cdk.leader import SUBMIT_TABLE_ACTIONS
    from cdk.workers import TABLE_ITEM_ACTIONS

    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    toil = (ROOT / "docs" / "toil.md").read_text(encoding="utf-8")
    # endpoints: the leader still installs Toil from PyPI, so the docs send it elsewhere; the workers' boot
    # has an endpoint for every host it contacts (tests/cdk/test_worker_reach.py), STS's included
    assert "so it cannot boot on this network: run the leader elsewhere" in deploy
    assert "node_boot.python_runtime(" in (ROOT / "cdk" / "leader.py").read_text(encoding="utf-8")  # PyPI
    assert "sts" in constants.INTERFACE_ENDPOINTS
    assert "**Not yet tried on AWS.**" in deploy
    assert "dynamodb:BatchWriteItem" in toil  # granted now: the docs say how the roles are checked
    assert "dynamodb:BatchWriteItem" in {*SUBMIT_TABLE_ACTIONS, *TABLE_ITEM_ACTIONS}

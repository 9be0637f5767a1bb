"""The appliance Dockerfile, read as text: there is no Docker engine on the development machine or in CI."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_it_builds_from_python_slim_and_installs_the_package() -> None:
    steps = instructions()
    assert steps[0] == ("FROM", "python:3.12-slim")
    assert any(keyword == "RUN" and "pip install ." in args for keyword, args in steps)
    copied = " ".join(args for keyword, args in steps if keyword == "COPY")
    for needed in ("pyproject.toml", "README.md", "shared"):
        assert needed in copied


def test_it_runs_as_a_non_root_user() -> None:
    users = [args for keyword, args in instructions() if keyword == "USER"]
    assert users, "the image must set USER"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_the_entry_point_is_shoal_worker_in_exec_form() -> None:
    entrypoints = [args for keyword, args in instructions() if keyword == "ENTRYPOINT"]
    assert [json.loads(args) for args in entrypoints] == [["shoal-worker"]]
    # AND the package declares that script, pointing at a real function
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["shoal-worker"] == "shared.worker.main:main"
    from shared.worker.main import main

    assert callable(main)


def test_the_work_dir_is_where_the_agent_looks_and_belongs_to_the_user() -> None:
    from shared.worker.config import DEFAULT_WORK_DIR

    steps = instructions()
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert f"SHOAL_WORK_DIR={DEFAULT_WORK_DIR}" in env
    assert any(
        keyword == "RUN" and f"mkdir -p {DEFAULT_WORK_DIR}" in args and "chown" in args for keyword, args in steps
    )


def test_the_build_context_leaves_out_the_virtualenv_and_git() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines  # everything is ignored unless listed
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed >= {"pyproject.toml", "README.md", "shared"}
    assert not allowed & {".venv", ".git", "tests", "cdk.out"}

"""The layering rules of STYLE.md, enforced by reading imports rather than by hope."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AWS_SDK = {"boto3", "botocore"}
EDGE_LIBRARIES = {"aws_lambda_powertools", "pydantic"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _python_files(*parts: str) -> list[Path]:
    return sorted((ROOT.joinpath(*parts)).rglob("*.py"))


@pytest.mark.parametrize("path", _python_files("shared", "domain"), ids=lambda p: p.name)
def test_domain_is_pure(path: Path) -> None:
    assert not _imports(path) & (AWS_SDK | EDGE_LIBRARIES), f"{path} imports an SDK or an edge library"


# shared/local is the embedded local cloud (moto and the router that stands in for AWS's own services).
SDK_PACKAGES = {"adapters", "local"}


@pytest.mark.parametrize(
    "path",
    [p for p in _python_files("shared") + _python_files("functions") if not SDK_PACKAGES & set(p.parts)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_only_adapters_import_boto3(path: Path) -> None:
    assert not _imports(path) & AWS_SDK, f"{path} imports boto3/botocore; move the AWS call into shared/adapters"


@pytest.mark.parametrize(
    "path",
    [p for p in _python_files("shared") + _python_files("functions") if "local" not in p.parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_only_the_local_cloud_imports_moto(path: Path) -> None:
    assert "moto" not in _imports(path), f"{path} imports moto; only shared/local (the local cloud) may"


# Toil is an optional extra: only the batch system imports it (and the shim, which survives its absence).
TOIL_MODULES = {ROOT / "shared" / "toil" / "batch_system.py", ROOT / "toil_batch_system_shoal.py"}


@pytest.mark.parametrize(
    "path",
    [p for p in _python_files("shared") + _python_files("functions") if p not in TOIL_MODULES],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_only_the_batch_system_imports_toil(path: Path) -> None:
    assert "toil" not in _imports(path), f"{path} imports toil; only shared/toil/batch_system.py may"


def test_the_rule_can_fail(tmp_path: Path) -> None:
    # GIVEN a module that imports boto3  THEN the import walker sees it
    bad = tmp_path / "bad.py"
    bad.write_text("import boto3.session\nfrom botocore import config\n")
    assert _imports(bad) == {"boto3", "botocore"}

"""The layering rules of STYLE.md, enforced by reading imports rather than by hope.

Two kinds of rule. Libraries: which layers may import boto3, moto, Powertools or pydantic. Direction:
which of Shoal's own packages each package may import, so the house stays as drawn:

    shared.domain ← shared.formats ← shared.services (use cases, ports) ← shared.adapters ← shared.wiring
        ← the edges, one per deployable unit: functions, shared.cli, shared.worker, shared.local (and cdk)

A NEW PACKAGE needs a row in ``MAY_IMPORT`` (the test below fails naming it until it has one): say which
packages it may import, choosing the lowest layer that works. An edge gets its adapters from
``shared.wiring``, not by importing ``shared.adapters`` (the local cloud aside: it is the stand-in for AWS).
``KNOWN_WRONG_WAY`` pins today's wrong-way arrows; each must be removed when the change that fixes it
lands (the test fails if an entry no longer happens, so the list only shrinks).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AWS_SDK = {"boto3", "botocore"}
EDGE_LIBRARIES = {"aws_lambda_powertools", "pydantic"}
OURS = {"shared", "functions", "cdk", "app", "toil_batch_system_shoal"}

# ---- direction: package → the packages of ours it may import (besides itself) ---------------------------
PURE = frozenset({"shared.domain", "shared.formats", "shared.appliance"})  # no I/O, importable by anyone
INSIDE = PURE | {"shared.services", "shared.adapters"}  # what the wiring assembles
WIRED = PURE | {"shared.services", "shared.wiring"}  # what an edge may import: adapters come through the wiring
MAY_IMPORT: dict[str, frozenset[str]] = {
    "shared": frozenset(),  # the package's own (empty) __init__
    "shared.domain": frozenset(),
    "shared.appliance": frozenset(),  # the appliance image rule (one module)
    "shared.formats": frozenset({"shared.domain"}),  # formats that cross a seam
    "shared.services": PURE,  # use cases and their ports
    "shared.adapters": PURE | {"shared.services"},  # the only code that talks to AWS
    "shared.wiring": INSIDE,  # the one place that assembles adapters for each deployable unit
    # The edges: each deployable unit gets its adapters from shared.wiring.
    "functions": WIRED,
    "shared.worker": WIRED,
    "shared.cli": WIRED | {"shared.local", "shared.sim"},  # `shoal demo` and `shoal local run` start the local cloud
    "shared.local": WIRED | {"shared.adapters", "shared.worker"},  # the local cloud runs the real agent in-process
    "shared.sim": PURE | {"shared.services"},  # the simulator: the real decide and admit, no AWS
    "shared.toil": WIRED,  # the Toil batch-system plugin
    "toil_batch_system_shoal": frozenset({"shared.toil"}),  # the shim Toil's plugin loader finds
    "cdk": INSIDE,  # the CDK app reads the settings model and the names the code uses
    "app": frozenset({"cdk", "shared.domain"}),
}
# Wrong-way arrows that exist today: (importing file, imported package) → the change that removes it.
KNOWN_WRONG_WAY: dict[tuple[str, str], str] = {}


def package_of(module: str) -> str:
    """``shared.services.reconcile`` → ``shared.services``; ``functions.x`` → ``functions``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "shared" and len(parts) > 1 else parts[0]


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` names, at any depth (inside functions and TYPE_CHECKING blocks too)."""
    names: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if package_of(node.module) == node.module == "shared":  # from shared import appliance
                names.update(f"shared.{alias.name}" for alias in node.names)
    return names


def _imports(path: Path) -> set[str]:
    """The top-level names of what ``path`` imports (libraries and our own packages alike)."""
    return {name.split(".")[0] for name in _imported_modules(path)}


def _python_files(*parts: str) -> list[Path]:
    return sorted((ROOT.joinpath(*parts)).rglob("*.py"))


def _our_files() -> list[Path]:
    top = [p for p in ROOT.glob("*.py") if p.stem in OURS]
    return sorted([*top, *_python_files("shared"), *_python_files("functions"), *_python_files("cdk")])


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def wrong_way(arrows: Iterable[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """(file, from package, to package) arrows that the table does not allow: (file, imported package)."""
    return sorted(
        (file, target)
        for file, source, target in arrows
        if target != source and target not in MAY_IMPORT.get(source, frozenset())
    )


def _arrows() -> list[tuple[str, str, str]]:
    arrows = []
    for path in _our_files():
        source = package_of(_module_name(path))
        for module in _imported_modules(path):
            if module.split(".")[0] in OURS:
                arrows.append((str(path.relative_to(ROOT)), source, package_of(module)))
    return arrows


# ---- libraries -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", _python_files("shared", "domain") + _python_files("shared", "formats"), ids=lambda p: p.name
)
def test_domain_and_formats_are_pure(path: Path) -> None:
    assert not _imports(path) & (AWS_SDK | EDGE_LIBRARIES), f"{path} imports an SDK or an edge library"


@pytest.mark.parametrize("path", _python_files("shared", "services"), ids=lambda p: p.name)
def test_services_import_no_powertools_or_pydantic(path: Path) -> None:
    assert not _imports(path) & EDGE_LIBRARIES, f"{path} imports an edge library; parse and observe in functions/"


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


# ---- direction -------------------------------------------------------------------------------------------


def test_every_package_has_a_row_in_the_table() -> None:
    packages = {package_of(_module_name(path)) for path in _our_files()}
    missing = sorted(packages - set(MAY_IMPORT))
    assert not missing, f"add a row to MAY_IMPORT (tests/unit/test_layers.py) for: {', '.join(missing)}"


def test_imports_point_inwards() -> None:
    found = wrong_way(_arrows())
    unexpected = [arrow for arrow in found if arrow not in KNOWN_WRONG_WAY]
    assert not unexpected, "\n".join(
        f"{file} imports {target}, which {package_of(_module_name(ROOT / file))} may not (see MAY_IMPORT)"
        for file, target in unexpected
    )


def test_the_known_wrong_way_arrows_still_exist() -> None:
    # An entry whose arrow is gone must go, so the exceptions only shrink.
    found = set(wrong_way(_arrows()))
    gone = [
        f"{file} → {target} ({fix})" for (file, target), fix in KNOWN_WRONG_WAY.items() if (file, target) not in found
    ]
    assert not gone, "remove from KNOWN_WRONG_WAY: " + "; ".join(gone)


def test_the_rules_can_fail(tmp_path: Path) -> None:
    # GIVEN a module that imports boto3  THEN the import walker sees it, at any depth
    bad = tmp_path / "bad.py"
    bad.write_text("import boto3.session\ndef f():\n    from botocore import config\n")
    assert _imports(bad) == {"boto3", "botocore"}
    # GIVEN arrows from the domain to the adapters and from the services to an edge  THEN both are wrong-way
    arrows = [
        ("shared/domain/x.py", "shared.domain", "shared.adapters"),
        ("shared/services/y.py", "shared.services", "functions"),
        ("functions/z.py", "functions", "shared.services"),
    ]
    assert wrong_way(arrows) == [("shared/domain/x.py", "shared.adapters"), ("shared/services/y.py", "functions")]
    assert package_of("shared.services.reconcile") == "shared.services" and package_of("cdk.stack") == "cdk"

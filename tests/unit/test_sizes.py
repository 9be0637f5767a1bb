"""Issue #11's size rules, read from the code: no module over 400 lines, no function over 60.

A module over 400 lines says why in its docstring, with the words "(over 400 lines)" and a reason. A function
over 60 lines is either split or listed in ``LONG_FUNCTIONS`` with why it stays; the list only shrinks: an
entry whose function is gone or now short fails the test, so it must be removed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
SOURCES = ("shared", "functions", "cdk")

CDK_BUILDER = "a CDK builder: one construct declared in order (issue #11 exempts the CDK builders)"
# (file, qualified function name) → why it is longer than MAX_FUNCTION_LINES.
LONG_FUNCTIONS: dict[tuple[str, str], str] = {
    ("cdk/functions.py", "ControlPlaneFunctions.__init__"): CDK_BUILDER,
    ("cdk/functions.py", "ControlPlaneFunctions._build_role"): CDK_BUILDER,
    ("cdk/guardrails.py", "ClusterGuardrails.__init__"): CDK_BUILDER,
    ("cdk/lifecycle.py", "ClusterLifecycle._build_launch"): CDK_BUILDER,
    ("cdk/lifecycle.py", "ClusterLifecycle._build_teardown"): CDK_BUILDER,
    ("cdk/observability.py", "ClusterObservability.__init__"): CDK_BUILDER,
    ("cdk/observability.py", "ClusterObservability._widgets"): CDK_BUILDER,
    ("cdk/stack.py", "ShoalStack.__init__"): CDK_BUILDER,
    ("cdk/triggers.py", "ScalingTriggers.__init__"): CDK_BUILDER,
    ("cdk/workers.py", "WorkerFleet.__init__"): CDK_BUILDER,
}


def _python_files() -> list[Path]:
    return sorted(path for part in SOURCES for path in (ROOT / part).rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """Qualified name → length in lines (``def`` to its last line, decorators aside) of each function over ``limit``."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = (child.end_lineno or child.lineno) - child.lineno + 1
                    if length > limit:
                        found[name] = length
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def _all_long_functions() -> dict[tuple[str, str], int]:
    return {
        (_relative(path), name): length
        for path in _python_files()
        for name, length in long_functions(path.read_text(encoding="utf-8")).items()
    }


def test_no_module_is_over_400_lines_without_a_reason() -> None:
    unexplained = []
    for path in _python_files():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES and "(over 400 lines)" not in (ast.get_docstring(ast.parse(text)) or ""):
            unexplained.append(f"{_relative(path)}: {lines} lines")
    assert not unexplained, "split these, or say why in the docstring ('... (over 400 lines): why'): " + "; ".join(
        unexplained
    )


def test_no_function_is_over_60_lines_unless_listed() -> None:
    unlisted = {where: length for where, length in _all_long_functions().items() if where not in LONG_FUNCTIONS}
    assert not unlisted, "split these, or list them in LONG_FUNCTIONS with a reason: " + "; ".join(
        f"{file}:{name} ({length} lines)" for (file, name), length in sorted(unlisted.items())
    )


def test_the_listed_long_functions_are_still_long() -> None:
    # An entry whose function was split (or renamed) must go, so the list only shrinks.
    found = _all_long_functions()
    stale = sorted(f"{file}:{name}" for file, name in LONG_FUNCTIONS if (file, name) not in found)
    assert not stale, "remove from LONG_FUNCTIONS: " + ", ".join(stale)


def test_the_rule_can_fail() -> None:
    # GIVEN a method of 62 lines and a short function
    body = "".join(f"        x{i} = {i}\n" for i in range(61))
    source = f"class A:\n    def long(self) -> None:\n{body}\ndef short() -> None:\n    pass\n"
    # THEN only the method is found, by its qualified name and length
    assert long_functions(source) == {"A.long": 62}

"""Toil's own tests and ours of ``--batchSystem shoal``; skipped whole when the ``toil`` extra is not installed.

Toil's test classes ask for its ``rootpath`` fixture. Toil's way in is ``pytest_plugins =
["toil.test.conftest"]``, but pytest refuses ``pytest_plugins`` outside the rootdir's conftest once the
whole suite is collected, so the fixture (three lines in Toil) is defined here instead.
"""

from __future__ import annotations

import re
from importlib.util import find_spec
from pathlib import Path

import pytest

if find_spec("toil") is None:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="class")
def rootpath(request: pytest.FixtureRequest) -> None:
    """As ``toil.test.conftest.rootpath``: records the rootpath on a unittest.TestCase class."""
    request.cls._rootpath = request.config.rootpath


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers Toil's test decorators put on its tests (``--strict-markers`` would refuse them)."""
    spec = find_spec("toil.test")
    if spec is None or spec.origin is None:
        return
    source = Path(spec.origin).read_text(encoding="utf-8")
    for name in sorted(set(re.findall(r'_mark_test\("(\w+)"', source))):
        config.addinivalue_line("markers", f"{name}: set by Toil's test decorators")

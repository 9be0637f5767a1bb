"""The assembly cache reuses a synthesized assembly only when everything it is made from is the same."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shared.local import assembly_cache
from shared.local.assembly_cache import AssemblyCache


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "cdk").mkdir(parents=True)
    (root / "cdk" / "stack.py").write_text("STACK = 1\n")
    (root / ".gitignore").write_text("/out/\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


@pytest.fixture
def cache(repo: Path, tmp_path: Path) -> AssemblyCache:
    cli = tmp_path / "package.json"
    cli.write_text('{"version": "2.1"}')
    return AssemblyCache(repo / "out" / "cdk-cache", repo, cli)


def test_the_key_changes_with_every_input_and_nothing_else(cache: AssemblyCache, repo: Path, tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text('name = "local"\n')
    context, environ = {"settings": str(settings)}, {"SHOAL_X": "1", "PATH": "/bin"}
    first = cache.key(context, environ)
    assert first is not None

    # Not inputs: an ignored file, docs and tests, other variables, the cache's own setting
    (repo / "out").mkdir()
    (repo / "out" / "log").write_text("x")
    (repo / "docs").mkdir()
    (repo / "docs" / "toil.md").write_text("x")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_x.py").write_text("x")
    assert cache.key(context, {**environ, "PATH": "/usr/bin", assembly_cache.CACHE_VARIABLE: "/c"}) == first

    # Inputs: a source file (tracked or not), the settings file's content, a SHOAL_/TOIL_ variable
    (repo / "cdk" / "stack.py").write_text("STACK = 2\n")
    second = cache.key(context, environ)
    (repo / "cdk" / "new.py").write_text("")
    third = cache.key(context, environ)
    settings.write_text('name = "other"\n')
    fourth = cache.key(context, environ)
    fifth = cache.key(context, {**environ, "TOIL_APPLIANCE_SELF": "img"})
    assert len({first, second, third, fourth, fifth}) == 5


def test_an_assembly_put_is_got_back_whole_and_only_the_newest_are_kept(cache: AssemblyCache, tmp_path: Path) -> None:
    assembly = tmp_path / "cdk.out"
    (assembly / "asset.1").mkdir(parents=True)
    (assembly / "manifest.json").write_text("{}")
    (assembly / "asset.1" / "code.py").write_text("pass\n")
    assert not cache.get("k0", tmp_path / "copy")

    for index in range(assembly_cache.KEEP + 2):
        cache.put(f"k{index}", assembly)

    assert cache.get(f"k{assembly_cache.KEEP + 1}", tmp_path / "copy")
    assert (tmp_path / "copy" / "asset.1" / "code.py").read_text() == "pass\n"
    assert len(list(cache.root.iterdir())) == assembly_cache.KEEP


def test_off_and_outside_a_checkout_there_is_no_cache(tmp_path: Path) -> None:
    assert AssemblyCache.from_environ({assembly_cache.CACHE_VARIABLE: "off"}, tmp_path, tmp_path / "p") is None
    assert AssemblyCache(tmp_path / "c", tmp_path, tmp_path / "p").key({}, {}) is None

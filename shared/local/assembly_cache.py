"""Synthesized CDK assemblies kept by what they are made from, so a local run with the same inputs skips ``cdk synth``.

Synthesizing the stack is the largest part of bringing the local cloud up (about 20 CPU-seconds of Python and
Node), and a test session or a demo rerun synthesizes the same stack from the same inputs again and again. An
assembly is reused only when everything it is made from is the same: every file of the checkout that git
does not ignore (the app, ``cdk/``, the Lambda asset's packages, ``cdk.json``, ``pyproject.toml``; not
``docs/``, ``tests/``, ``benchmarks/`` or Markdown), the
content of each ``-c`` context file (the cluster's settings), the ``SHOAL_*``, ``TOIL_*`` and ``CDK_*``
environment, and the versions of Python, aws-cdk-lib and the CDK CLI. Outside a git checkout nothing is
cached. ``SHOAL_CDK_CACHE`` names the directory (default ``out/cdk-cache``); ``off`` turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

CACHE_VARIABLE = "SHOAL_CDK_CACHE"
KEY_PREFIXES = ("SHOAL_", "TOIL_", "CDK_")
KEEP = 4  # assemblies kept; the oldest go first
# Files of the checkout that no synthesis reads (the app, the stack and the Lambda asset's packages do not).
NOT_INPUTS = (b"docs/", b"tests/", b"benchmarks/")


class AssemblyCache:
    def __init__(self, root: Path, repo: Path, cli_package: Path) -> None:
        self.root = root
        self.repo = repo
        self.cli_package = cli_package

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], repo: Path, cli_package: Path) -> AssemblyCache | None:
        setting = environ.get(CACHE_VARIABLE, "").strip()
        if setting.lower() == "off":
            return None
        return cls(Path(setting) if setting else repo / "out" / "cdk-cache", repo, cli_package)

    def key(self, context: Mapping[str, str], environ: Mapping[str, str]) -> str | None:
        """A digest of everything the assembly is made from, or None when the checkout cannot be listed."""
        try:
            listing = subprocess.run(
                ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                cwd=self.repo, capture_output=True, check=False,
            )  # fmt: skip
        except OSError:
            return None
        if listing.returncode != 0:
            return None
        digest = hashlib.sha256()
        for listed in sorted(set(listing.stdout.split(b"\0")) - {b""}):
            if listed.startswith(NOT_INPUTS) or listed.endswith(b".md"):
                continue
            _add_file(digest, listed, self.repo / os.fsdecode(listed))
        for name, value in sorted(context.items()):
            digest.update(f"-c {name}={value}\0".encode())
            _add_file(digest, b"context", Path(value))
        for variable in sorted(n for n in environ if n.startswith(KEY_PREFIXES) and n != CACHE_VARIABLE):
            digest.update(f"{variable}={environ[variable]}\0".encode())
        _add_file(digest, b"cli", self.cli_package)
        digest.update(f"{sys.version}\0{_version('aws-cdk-lib')}\0".encode())
        return digest.hexdigest()[:32]

    def get(self, key: str, into: Path) -> bool:
        """Copy the assembly for ``key`` to ``into`` (replacing it); False when there is none."""
        cached = self.root / key
        if not (cached / "manifest.json").is_file():
            return False
        shutil.rmtree(into, ignore_errors=True)
        shutil.copytree(cached, into)
        with contextlib.suppress(OSError):
            os.utime(cached)  # used: the newest again
        return True

    def put(self, key: str, assembly: Path) -> None:
        """Keep ``assembly`` for ``key`` (a copy, renamed into place whole), and only the newest few."""
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.root / f".partial-{uuid.uuid4().hex}"
        try:
            shutil.copytree(assembly, partial)
            os.rename(partial, self.root / key)  # another run may have put the same key first: keep its
            os.utime(self.root / key)  # copytree gave it the assembly's time
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
            return
        entries = sorted((p for p in self.root.iterdir() if not p.name.startswith(".")), key=_age, reverse=True)
        for old in entries[KEEP:]:
            shutil.rmtree(old, ignore_errors=True)


def _add_file(digest: hashlib._Hash, name: bytes, path: Path) -> None:
    digest.update(name + b"\0")
    with contextlib.suppress(OSError):
        if path.is_file():
            digest.update(path.read_bytes())
    digest.update(b"\0")


def _age(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "none"

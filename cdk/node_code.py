"""Shoal's code for the nodes: one S3 asset the CDK publishes at deploy time, read by workers and the leader.

The asset is the repository restricted to ``shared/`` (without the CLI, the local cloud and the simulator,
which never run on a node) and the Toil plugin's top-level shim. No image of ours, no registry: a node
downloads it with its own role (``s3:GetObject`` on exactly this object) and unpacks it (cdk/node_boot.py).

``NodePackages``: for networks without the internet (``worker_network = "endpoints"``), a second asset with the
agent's Python requirements (boto3 and what it needs, all pure Python) copied from the environment that
synthesizes the stack, the versions the tests ran with, so the node needs no PyPI.
"""

from __future__ import annotations

import atexit
import functools
import re
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

REPO_ROOT = Path(__file__).resolve().parent.parent
LEFT_OUT = ("shared/cli", "shared/local", "shared/sim")  # tests/cdk/test_node_boot.py checks the agent runs without
SHIM = "toil_batch_system_shoal.py"
CODE_EXCLUDES = (
    "*",
    ".*",
    "!shared",
    "!shared/**",
    f"!{SHIM}",
    *LEFT_OUT,
    *(f"{package}/**" for package in LEFT_OUT),
    "shared/adapters/memory_*.py",  # the in-memory twins (tests, the local cloud)
    "**/__pycache__",
    "**/*.pyc",
)


def pinned(package: str) -> str:
    """``package==VERSION`` of the version installed where the stack is synthesized (what the tests ran with)."""
    return f"{package}=={metadata.version(package)}"


class NodeCode(Construct):
    """``asset``: the zipped code; ``grant_read(role)`` lets a node role fetch exactly this object."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.asset = s3_assets.Asset(self, "Asset", path=str(REPO_ROOT), exclude=list(CODE_EXCLUDES))

    @property
    def bucket_name(self) -> str:
        return self.asset.s3_bucket_name

    @property
    def object_key(self) -> str:
        return self.asset.s3_object_key

    def read_statement(self) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid="ReadShoalCode",
            actions=["s3:GetObject"],
            resources=[f"arn:{Aws.PARTITION}:s3:::{self.bucket_name}/{self.object_key}"],
        )


_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(roots: tuple[str, ...]) -> tuple[str, ...]:
    """The installed distributions ``roots`` need, sorted: their requirements without extras, transitively.

    A requirement behind an environment marker (``; python_version < "3.10"``) counts when it is installed here:
    the node runs the Python that synthesizes the stack (3.11), so what that Python needed is what the node needs.
    """
    seen: set[str] = set()
    pending = [_canonical(root) for root in roots]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.distribution(name).requires or ():
            requirement, _, marker = line.partition(";")
            match = _REQUIREMENT_NAME.match(requirement)
            if match is None or "extra" in marker:
                continue
            dependency = _canonical(match[1])
            try:
                metadata.distribution(dependency)
            except metadata.PackageNotFoundError:
                if not marker:
                    raise
                continue  # a marker this Python does not meet
            pending.append(dependency)
    return tuple(sorted(seen))


@functools.cache
def staged_packages(roots: tuple[str, ...]) -> Path:
    """A directory holding the installed files (code and metadata) of ``roots`` and their requirements.

    Laid out as a ``site-packages`` directory; made once per process (synthesis copies it into the assembly).
    """
    target = Path(tempfile.mkdtemp(prefix="shoal-node-packages-"))
    atexit.register(shutil.rmtree, target, True)  # an asset is copied into the assembly when it is constructed
    for name in requirement_closure(roots):
        distribution = metadata.distribution(name)
        for file in distribution.files or ():
            if ".." in file.parts or "__pycache__" in file.parts or file.suffix == ".pyc":
                continue  # scripts outside site-packages, and byte code the node compiles itself
            source = Path(str(distribution.locate_file(file)))
            destination = target / file
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
    return target


class NodePackages(Construct):
    """``asset``: the agent's requirements as a zipped ``site-packages`` tree; ``read_statement()`` for a role."""

    def __init__(self, scope: Construct, construct_id: str, *, requirements: tuple[str, ...]) -> None:
        super().__init__(scope, construct_id)
        self.requirements = requirement_closure(requirements)
        self.asset = s3_assets.Asset(self, "Asset", path=str(staged_packages(requirements)))

    def read_statement(self) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid="ReadShoalPackages",
            actions=["s3:GetObject"],
            resources=[f"arn:{Aws.PARTITION}:s3:::{self.asset.s3_bucket_name}/{self.asset.s3_object_key}"],
        )

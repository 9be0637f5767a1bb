"""Deploying the real stack into the local cloud with the real CDK CLI, exactly as a user deploys to AWS.

``cdk synth`` (or a copy of the same assembly synthesized before: ``shared.local.assembly_cache``) and
``cdk bootstrap`` run side by side (they do not depend on each other; bootstrap runs
where no ``cdk.json`` names the app, so it does not synthesize it a second time), then
``cdk deploy --app <the synthesized assembly> --require-approval never``; the stack's outputs are read
back from CloudFormation. ``cdk destroy`` deletes the stack at the end. Each command's output goes to a
log file; a failure raises ``DeployError`` with the command and the end of its log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3

from shared.local.assembly_cache import AssemblyCache

REPO_ROOT = Path(__file__).resolve().parents[2]
CDK = REPO_ROOT / "node_modules" / ".bin" / "cdk"
LOG_TAIL_LINES = 25


class DeployError(RuntimeError):
    """A CDK command failed; the message names it and ends with its log's last lines."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployment:
    stack_name: str
    outputs: Mapping[str, str]
    seconds: float


class CdkRunner:
    """Runs the CDK CLI against the local cloud (``environ``: its endpoint, region and fake credentials)."""

    def __init__(self, *, environ: Mapping[str, str], workdir: Path, context: Mapping[str, str]) -> None:
        if not CDK.exists():
            raise DeployError(
                f"the CDK CLI is not installed at {CDK}; run `npm install` in {REPO_ROOT} (make demo does)"
            )
        self.workdir = workdir
        self.assembly = workdir / "cdk.out"
        self.context = dict(context)
        path = os.pathsep.join([str(CDK.parent), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        self.environ = {
            **os.environ,
            **environ,
            "PATH": path,
            "CDK_DISABLE_CLI_TELEMETRY": "true",
            "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        }
        self.region = environ["AWS_REGION"]

    def deploy(self, stack_name: str, account: str) -> Deployment:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=2) as pool:
            synth = pool.submit(self._synth)
            # From the run's own directory, where no cdk.json names the app: the CLI synthesizes the app
            # before bootstrapping whenever it has one (to find environments), a second synthesis for nothing.
            bootstrap = pool.submit(
                self._run, "bootstrap", ["bootstrap", f"aws://{account}/{self.region}"], self.workdir
            )
            synth.result()
            bootstrap.result()
        self._run(
            "deploy",
            ["deploy", stack_name, "--app", str(self.assembly), "--require-approval", "never", "--method", "direct"],
        )
        return Deployment(stack_name=stack_name, outputs=self.outputs(stack_name), seconds=time.monotonic() - started)

    def _synth(self) -> None:
        """``cdk synth`` into the run's ``cdk.out``, or the same assembly from the cache (``assembly_cache``)."""
        cache = AssemblyCache.from_environ(self.environ, REPO_ROOT, CDK.parent.parent / "aws-cdk" / "package.json")
        key = None if cache is None else cache.key(self.context, self.environ)
        if cache is not None and key is not None and cache.get(key, self.assembly):
            (self.workdir / "cdk-synth.log").write_text(f"reused the assembly {cache.root / key}\n", encoding="utf-8")
            return
        self._run("synth", ["synth", "--quiet", "--output", str(self.assembly), *self._ctx()])
        if cache is not None and key is not None:
            cache.put(key, self.assembly)

    def destroy(self, stack_name: str) -> float:
        started = time.monotonic()
        self._run("destroy", ["destroy", stack_name, "--app", str(self.assembly), "--force"])
        return time.monotonic() - started

    def outputs(self, stack_name: str) -> dict[str, str]:
        client = boto3.client("cloudformation", region_name=self.region)
        stacks = client.describe_stacks(StackName=stack_name)["Stacks"]
        return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", []) if "OutputKey" in o}

    def _ctx(self) -> list[str]:
        return [arg for key, value in self.context.items() for arg in ("-c", f"{key}={value}")]

    def _run(self, name: str, args: Sequence[str], cwd: Path = REPO_ROOT) -> None:
        log = self.workdir / f"cdk-{name}.log"
        command = [str(CDK), *args, "--no-notices", "--ci"]
        with log.open("wb") as output:
            result = subprocess.run(
                command, cwd=cwd, env=self.environ, stdout=output, stderr=subprocess.STDOUT, check=False
            )
        if result.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
            raise DeployError(f"`cdk {' '.join(args[:1])}` failed (exit {result.returncode}); see {log}:\n{tail}")

"""Synthesis benchmark: the cluster stack from shoal.toml, in process, cdk-nag included; cfn-lint once.

    .venv/bin/python benchmarks/bench_synth.py [--runs 5] [--no-cli] [--json]

Each run builds a fresh ``App`` (settings, constructs, cdk-nag's AwsSolutions checks, template and asset
staging into a temporary directory) in one Python process, so the first run also pays for starting the
jsii kernel (Node) and loading aws-cdk-lib; the median is over the warm runs after it. Then, if the
project's CDK CLI is installed (``make synth`` installs it), one ``cdk synth`` as users run it: a new
process, so a cold synth plus the CLI's own start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROJECT_NODE = ROOT / "node_modules" / ".bin" / "node"
if PROJECT_NODE.exists():  # the project's Node 22 (package.json), as `make synth` uses
    os.environ.setdefault("JSII_NODE", str(PROJECT_NODE))


def synth_once(outdir: Path) -> tuple[float, str]:
    from aws_cdk import App

    from cdk.stack import build_app

    started = time.perf_counter()
    app = App(outdir=str(outdir))
    stack = build_app(app, environ={})
    assembly = app.synth()
    elapsed = time.perf_counter() - started
    template = json.dumps(assembly.get_stack_by_name(stack.stack_name).template)
    return elapsed, template


def lint_seconds(template: str) -> tuple[float, int]:
    from cfnlint.api import ManualArgs, lint

    started = time.perf_counter()
    matches = lint(template, config=ManualArgs(regions=["us-west-2"]))
    errors = sum(1 for m in matches if m.rule.id.startswith("E"))
    return time.perf_counter() - started, errors


def cli_synth_seconds(outdir: Path) -> float | None:
    """One ``cdk synth`` with the project's CLI and Node, or None when they are not installed."""
    cdk = ROOT / "node_modules" / ".bin" / "cdk"
    if not cdk.exists() or shutil.which("python", path=str(Path(sys.executable).parent)) is None:
        return None
    path = os.pathsep.join([str(cdk.parent), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "CDK_DISABLE_CLI_TELEMETRY": "true"}
    command = [str(cdk), "synth", "--quiet", "--no-notices", "--output", str(outdir)]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="synths in one process (the first is cold)")
    parser.add_argument("--no-cli", action="store_true", help="skip the `cdk synth` run")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2 (one cold run, then warm ones)")

    import_started = time.perf_counter()
    import aws_cdk  # noqa: F401 - starts the jsii kernel: part of a cold synth's cost

    import_seconds = time.perf_counter() - import_started
    times: list[float] = []
    template = ""
    with tempfile.TemporaryDirectory(prefix="shoal-bench-synth-") as tmp:
        for run in range(args.runs):
            elapsed, template = synth_once(Path(tmp) / f"run{run}")
            times.append(elapsed)
        cli_seconds = None if args.no_cli else cli_synth_seconds(Path(tmp) / "cli")
    lint_time, lint_errors = lint_seconds(template)
    result = {
        "runs": args.runs,
        "import_aws_cdk_seconds": round(import_seconds, 3),
        "first_synth_seconds": round(times[0], 3),
        "warm_synth_median_seconds": round(statistics.median(times[1:]), 3),
        "warm_synth_min_seconds": round(min(times[1:]), 3),
        "warm_synth_max_seconds": round(max(times[1:]), 3),
        "resources": len(json.loads(template)["Resources"]),
        "cdk_synth_cli_seconds": None if cli_seconds is None else round(cli_seconds, 3),
        "cfn_lint_seconds": round(lint_time, 3),
        "cfn_lint_errors": lint_errors,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"synth of the shoal.toml stack, in process, cdk-nag on ({result['resources']} resources)")
        print(f"  import aws_cdk (jsii kernel start): {import_seconds:6.2f} s")
        print(f"  first synth:                        {times[0]:6.2f} s")
        print(
            f"  warm synth, median of {args.runs - 1}:           {result['warm_synth_median_seconds']:6.2f} s "
            f"(min {result['warm_synth_min_seconds']:.2f}, max {result['warm_synth_max_seconds']:.2f})"
        )
        if cli_seconds is None:
            print("  cdk synth (CLI):                    skipped (run `make synth` once to install the CLI)")
        else:
            print(f"  cdk synth (CLI, new process):       {cli_seconds:6.2f} s")
        print(f"  cfn-lint of the template:           {lint_time:6.2f} s, {lint_errors} errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the cluster commands share: exit statuses, the streams they print to, the region, waiting for executions.

Exit status: 0 the run succeeded, 1 it failed (or AWS could not be asked; the cause on one line), 2 bad
input, 3 we stopped waiting (the execution keeps running; its ARN is printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from shared.domain.units import UnitError, format_duration, parse_duration
from shared.services.cluster_utils import Outcome, RunResult, run_and_wait
from shared.services.ports import Clock
from shared.wiring import cluster_cli

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMED_OUT = 3
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REGION = "us-west-2"
AWS_ERRORS = cluster_cli.AWS_ERRORS  # the cloud's answers, printed on one line (exit status 1)


class ClusterInputError(ValueError):
    """Bad command-line input; the message names the flag."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Io:
    out: TextIO
    err: TextIO

    def fail(self, verb: str, message: object, code: int) -> int:
        print(f"shoal {verb}: {message}", file=self.err)
        return code


def streams(out: TextIO | None, err: TextIO | None) -> Io:
    return Io(sys.stdout if out is None else out, sys.stderr if err is None else err)


def common_wait_options(parser: argparse.ArgumentParser, *, default_timeout: str) -> None:
    parser.add_argument("--region", default=None, help=f"AWS region (default: $AWS_REGION, else {DEFAULT_REGION})")
    parser.add_argument(
        "--timeout", default=default_timeout, help=f"stop waiting after this long (default {default_timeout})"
    )
    parser.add_argument(
        "--poll", help="seconds the state machine waits between its checks of EC2 and the agents (default 15)"
    )
    parser.add_argument("--check-every", default="2", help=argparse.SUPPRESS)  # how often we ask Step Functions


def region_of(args: argparse.Namespace) -> str:
    return str(args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION)


def duration(flag: str, text: str) -> float:
    try:
        return parse_duration(text)
    except UnitError as error:
        raise ClusterInputError(f"{flag}: {error}") from None


def wait_options(args: argparse.Namespace) -> tuple[float, float, dict[str, object]]:
    timeout = duration("--timeout", args.timeout)
    check_every = duration("--check-every", args.check_every)
    payload: dict[str, object] = {}
    if args.poll is not None:
        poll = duration("--poll", args.poll)
        payload["poll_seconds"] = int(poll)
    return timeout, check_every, payload


def start_and_wait(
    region: str,
    machine_arn: str,
    *,
    verb: str,
    payload: dict[str, object],
    timeout: float,
    check_every: float,
    clock: Clock | None,
    io: Io,
) -> RunResult:
    """Start the launch or teardown state machine and wait for its end, printing each state as it is entered."""
    return run_and_wait(
        cluster_cli.executions(region),
        machine_arn,
        verb=verb,
        payload=payload,
        clock=clock or SystemClock(),
        timeout=timeout,
        check_every=check_every,
        progress=lambda state: print(f"→ {state}", file=io.out, flush=True),
    )


def finish(verb: str, success: str, result: RunResult, timeout: float, io: Io) -> int:
    if result.outcome is Outcome.SUCCEEDED:
        print(success, file=io.out)
        return EXIT_OK
    if result.outcome is Outcome.TIMED_OUT:
        return io.fail(
            verb,
            f"still running after {format_duration(timeout)}; the execution goes on: {result.execution_arn}",
            EXIT_TIMED_OUT,
        )
    return io.fail(verb, f"failed: {result.cause} ({result.execution_arn})", EXIT_FAILED)

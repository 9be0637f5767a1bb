"""``shoal submit``: put a JOBS.jsonl file's jobs on a cluster's queue (the same format ``shoal plan`` reads).

The whole file is parsed before anything is sent: one bad line stops the command (exit status 2)
with nothing submitted. Submitting the same file again is safe: known ids are not counted twice, and
any job a failed earlier submit recorded but did not enqueue is enqueued now.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from shared.cli.jobs_file import JobsFileError, read_jobs
from shared.services.ports import JobQueueError, StoreError
from shared.services.submit import SubmitConfigError, SubmitError
from shared.wiring.clients import build_submit_client
from shared.wiring.cluster_cli import AwsConfigError
from shared.wiring.settings import read_submit_config

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_submit_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="submit the jobs of a JOBS.jsonl file to a cluster",
        description="Record jobs in the cluster's table, put them on its queue and wake its scaler.",
    )
    parser.add_argument("--jobs", required=True, type=Path, help="JOBS.jsonl: one job a line (as for shoal plan)")
    parser.add_argument("--table", help="the cluster's state table (default: $SHOAL_TABLE_NAME)")
    parser.add_argument("--queue-url", help="the cluster's job queue URL (default: $SHOAL_QUEUE_URL)")
    parser.add_argument("--cluster", help="the cluster's name (default: $SHOAL_CLUSTER_NAME)")
    parser.add_argument("--region", help="AWS region (default: $SHOAL_REGION, else the AWS SDK's default)")
    parser.add_argument("--event-bus", help="EventBridge bus (default: $SHOAL_EVENT_BUS_NAME, else 'default')")
    parser.set_defaults(run=run_submit)


def run_submit(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        config = read_submit_config(
            None,
            table_name=args.table,
            queue_url=args.queue_url,
            cluster=args.cluster,
            region=args.region,
            event_bus_name=args.event_bus,
        )
        jobs = read_jobs(args.jobs)
    except (SubmitConfigError, JobsFileError) as error:
        print(f"shoal submit: {error}", file=err)
        return EXIT_USAGE
    if not jobs:
        print(f"shoal submit: {args.jobs} holds no jobs; nothing submitted", file=err)
        return EXIT_OK
    try:
        result = build_submit_client(config).submit(jobs)
    except SubmitError as error:
        print(f"shoal submit: {error}", file=err)
        return EXIT_FAILED
    except (StoreError, JobQueueError, AwsConfigError) as error:
        print(f"shoal submit: {error}", file=err)
        return EXIT_FAILED
    print(
        f"submitted {len(result.submitted)} jobs to cluster {config.cluster}; "
        f"{len(result.already_known)} already known",
        file=out,
    )
    if result.re_enqueued:
        print(f"re-enqueued {len(result.re_enqueued)} known jobs that had not reached the queue", file=out)
    for warning in result.warnings:
        print(f"shoal submit: warning: {warning}", file=err)
    return EXIT_OK

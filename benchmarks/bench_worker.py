"""Worker throughput: one agent process, N trivial jobs (`true`), against moto SQS + DynamoDB in-process.

    .venv/bin/python benchmarks/bench_worker.py [--jobs 300] [--runs 3] [--moto both|stock|patched]

Each job is a real ``sh -c true`` process and the whole protocol: receive (batches of 10), decode,
``start_job`` and ``finish_job`` transactions on the state table, a learned-runtime update, batched
deletes. Prints jobs per second per run and the median of each mode, and exits 1 if the median of the
last mode run is under the 50 jobs/s target.

Two modes, because stock moto costs O(n) per call and so bounds the figure by N, not by the agent:

* ``stock``: moto as installed. Its ReceiveMessage re-reads every queue attribute (a scan of the whole
  queue) once per message returned, and its TransactWriteItems deep-copies the whole table once per
  item in the transaction (a rollback backup). With 300 jobs that is ~70 ms per receive and ~30 ms per
  transaction, and over 90% of the wall time is spent inside moto.
* ``patched``: moto as Shoal's local cloud (``shoal demo``) runs it: the same two hot spots made O(1) by
  ``shared.local.moto_patches.hot_spots_fixed`` (the retention check reads the retention period directly;
  a transaction checks all its conditions first instead of copying the table to roll back). This is the
  agent's own throughput with a backend that costs about what one API call should.

Per job the agent makes two DynamoDB calls (the start and finish transactions, no reads) and a tenth
of a receive and of a delete; learned runtimes go out once per job name per heartbeat. On this
2-core machine (2026-11-24): patched 102 / 107 / 109 jobs/s at 100 / 300 / 600 jobs, stock 29 / 14 / 7.4:
the stock figure falls with N, the agent's does not.

moto's backends are not thread-safe (a transaction's table copy races another thread's write), so all
calls are serialised through one lock, as one moto server would; the agent's job threads still overlap
their processes with each other's calls.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from shared.adapters.cluster_store import DynamoClusterStore
from shared.adapters.job_queue import SqsJobQueue
from shared.adapters.job_store import DynamoJobStore
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.state_table import StateTable, make_table
from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.jobs import Job, Shape
from shared.domain.resources import Resources
from shared.domain.units import GiB, MiB
from shared.local.moto_patches import hot_spots_fixed
from shared.services.job_message import decode_job_message, encode_job_message
from shared.worker.agent import Agent, AgentSettings

TARGET_JOBS_PER_SECOND = 50.0
REGION = "us-east-1"
NODE = "i-bench"


def serialized(*clients: Any) -> None:
    """Make the clients' calls one at a time: moto's in-process backends are not thread-safe (a DynamoDB
    transaction deep-copies the table while another thread writes to it). Real AWS needs no such lock."""
    lock = threading.Lock()
    for client in clients:
        call = client._make_api_call

        def locked(operation: str, params: Any, call: Any = call) -> Any:
            with lock:
                return call(operation, params)

        client._make_api_call = locked


class CountingJobStore(DynamoJobStore):
    """The real store, telling the benchmark when the last job has finished."""

    def __init__(self, table: StateTable, expected: int) -> None:
        super().__init__(table)
        self._expected = expected
        self._finished = 0
        self._lock = threading.Lock()
        self.all_finished = threading.Event()

    def finish_job(self, job: Job, node_id: str, *, attempt: int, exit_code: int, output_tail: str, now: float) -> bool:
        done = super().finish_job(job, node_id, attempt=attempt, exit_code=exit_code, output_tail=output_tail, now=now)
        with self._lock:
            self._finished += done
            if self._finished >= self._expected:
                self.all_finished.set()
        return done


def one_run(job_count: int, run: int) -> float:
    with mock_aws(), tempfile.TemporaryDirectory() as work:
        sqs = boto3.client("sqs", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        serialized(sqs, dynamodb)
        dlq_url = sqs.create_queue(QueueName=f"dlq-{run}")["QueueUrl"]
        queue_url = sqs.create_queue(QueueName=f"jobs-{run}")["QueueUrl"]
        make_table(dynamodb, f"state-{run}")
        table = StateTable(f"state-{run}", client=dynamodb)
        jobs_store = CountingJobStore(table, job_count)
        nodes = DynamoNodeStore(table)
        nodes.put_node(
            NodeRecord(
                instance_id=NODE,
                offer_key="c5.4xlarge",
                instance_type="c5.4xlarge",
                market=Market.ON_DEMAND,
                state=NodeState.ACTIVE,
            )
        )
        shape = Shape(resources=Resources(cores=1, memory=64 * MiB, disk=MiB), wall_time=1)
        jobs = [Job(id=f"job-{i:05d}", shape=shape, command="true", name="noop") for i in range(job_count)]
        jobs_store.put_jobs(jobs, 0.0)
        for start in range(0, job_count, 10):
            sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "MessageBody": encode_job_message(job)}
                    for i, job in enumerate(jobs[start : start + 10])
                ],
            )

        agent = Agent(
            AgentSettings(
                node_id=NODE,
                capacity=Resources(cores=16, memory=32 * GiB, disk=100 * GiB),
                work_root=Path(work),
                poll_wait=0,  # moto holds its lock through a long poll; real SQS does not
                heartbeat_interval=5,
            ),
            queue=SqsJobQueue(queue_url, dead_letter_queue_url=dlq_url, client=sqs),
            jobs=jobs_store,
            nodes=nodes,
            decode=decode_job_message,
            runtimes=DynamoClusterStore(table),
            base_env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        started = time.perf_counter()
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        if not jobs_store.all_finished.wait(timeout=600):
            raise SystemExit("the agent did not finish the jobs in 10 minutes")
        agent.stop()
        thread.join()
        elapsed = time.perf_counter() - started

        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        left = int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])
        if left or jobs_store.demand():
            raise SystemExit(f"run {run}: {left} message(s) left on the queue, demand {jobs_store.demand()}")
        return job_count / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--moto", choices=("both", "stock", "patched"), default="both")
    args = parser.parse_args()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ.setdefault(name, value)
    modes = ["stock", "patched"] if args.moto == "both" else [args.moto]
    median = 0.0
    for mode in modes:
        rates = []
        for run in range(args.runs):
            with hot_spots_fixed() if mode == "patched" else contextlib.nullcontext():
                rate = one_run(args.jobs, run)
            rates.append(rate)
            print(f"{mode} moto, run {run + 1}: {args.jobs} jobs, {rate:.1f} jobs/s")
        median = statistics.median(rates)
        verdict = "meets" if median >= TARGET_JOBS_PER_SECOND else "is under"
        print(
            f"worker throughput ({mode} moto): {median:.1f} jobs/s, median of {args.runs} runs of {args.jobs} jobs; "
            f"{verdict} the {TARGET_JOBS_PER_SECOND:.0f}/s target"
        )
    return 0 if median >= TARGET_JOBS_PER_SECOND else 1


if __name__ == "__main__":
    sys.exit(main())

"""Round benchmark: 10,000 queued jobs against a 500-node fleet, on moto; API calls and time per round.

    python benchmarks/bench_round.py [--jobs 10000] [--nodes 500] [--busy 150]

The fleet starts as ``--nodes`` on-demand c5.4xlarge nodes, ``--busy`` of them running a job, the rest
idle; ``--jobs`` mixed jobs (benchmarks/workload.py) are queued. Then three rounds:

1. scale: the plan wants other node types, so new groups launch and the idle c5.4xlarge drain;
2. retire: the drained nodes have reported idle, so they are terminated;
3. steady: nothing to do.

For each round: EC2 calls by operation (mutating calls should scale with the groups touched, not with
the instances), DynamoDB and SQS calls, instances touched, and the round's wall time (moto in-process,
so this is the code's cost plus moto's, without network latency). The job store is the in-memory twin
of the DynamoDB store: the round reads demand as O(shapes) counters (one Query on DynamoDB) and never
the job records, and seeding 10,000 records through moto's transactions takes minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moto import mock_aws  # noqa: E402

from benchmarks.workload import mixed_jobs  # noqa: E402
from shared.adapters import aws  # noqa: E402
from shared.adapters.capacity_cache import DynamoCapacityCache  # noqa: E402
from shared.adapters.decision_log import DynamoDecisionLog  # noqa: E402
from shared.adapters.ec2_fleet import CallCounter, Ec2Fleet  # noqa: E402
from shared.adapters.job_queue import SqsJobQueue  # noqa: E402
from shared.adapters.memory_state import MemoryJobStore  # noqa: E402
from shared.adapters.node_store import DynamoNodeStore  # noqa: E402
from shared.adapters.scaler_store import DynamoLease, DynamoScalerStateStore  # noqa: E402
from shared.adapters.state_table import StateTable, make_table  # noqa: E402
from shared.domain.cluster_state import Market, NodeRecord, NodeState  # noqa: E402
from shared.domain.decision import Launch, LaunchOption  # noqa: E402
from shared.domain.jobs import parse_job  # noqa: E402
from shared.domain.resources import Resources  # noqa: E402
from shared.domain.scaling import offers_for  # noqa: E402
from shared.domain.settings import ClusterSettings  # noqa: E402
from shared.services.reconcile import ControlPlane, RoundResult, run_round  # noqa: E402

REGION = "us-west-2"
NODE_TYPES = "c5.4xlarge/c5a.4xlarge:0.42,c5.4xlarge,m5.2xlarge,m5.8xlarge,r5.2xlarge,r5.4xlarge"
START = 1_795_521_600.0


class ApiTimer:
    """Seconds spent inside AWS calls (here: inside moto), so the round's own time can be told apart."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started: float | None = None

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build", self._start)
        client.meta.events.register("after-call", self._stop)
        client.meta.events.register("after-call-error", self._stop)

    def _start(self, **_: Any) -> None:
        self._started = time.perf_counter()

    def _stop(self, **_: Any) -> None:
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self._started = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--busy", type=int, default=150)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    with mock_aws():
        run(args.jobs, args.nodes, args.busy)


def run(job_count: int, node_count: int, busy: int) -> None:
    settings = ClusterSettings(name="bench", node_types=NODE_TYPES, region=REGION, beta_inertia=0.0).validate()
    offers = offers_for(settings)
    dynamodb, sqs, ec2 = (aws.client(s, REGION) for s in ("dynamodb", "sqs", "ec2"))
    make_table(dynamodb, "bench-state")
    queue_url = sqs.create_queue(QueueName="bench-jobs")["QueueUrl"]
    template = ec2.create_launch_template(LaunchTemplateName="bench", LaunchTemplateData={"ImageId": "ami-12c6146b"})
    table = StateTable("bench-state", client=dynamodb)
    fleet = Ec2Fleet(cluster="bench", launch_template_id=template["LaunchTemplate"]["LaunchTemplateId"], client=ec2)
    jobs = MemoryJobStore()
    nodes = DynamoNodeStore(table)
    plane = ControlPlane(
        jobs=jobs,
        nodes=nodes,
        scaler_state=DynamoScalerStateStore(table),
        lease=DynamoLease(table),
        capacity=DynamoCapacityCache(table),
        decisions=DynamoDecisionLog(table),
        queue=SqsJobQueue(queue_url, client=sqs),
        fleet=fleet,
    )
    dynamo_calls, sqs_calls = CallCounter(), CallCounter()
    dynamo_calls.attach(dynamodb, "dynamodb")
    sqs_calls.attach(sqs, "sqs")
    timer = ApiTimer()
    for client in (dynamodb, sqs, ec2):
        timer.attach(client)

    # The starting point: node_count idle-or-busy c5.4xlarge, job_count queued jobs.
    setup = time.perf_counter()
    existing = fleet.launch(
        Launch(
            offer_key="c5.4xlarge",
            count=node_count,
            market=Market.ON_DEMAND,
            bid=None,
            options=(LaunchOption(instance_type="c5.4xlarge", zone=None),),
            reason="benchmark fleet",
        ),
        idempotency_key="setup",
    ).instances
    parsed = [parse_job(j) for j in mixed_jobs(job_count, include_gpu=False)]
    jobs.put_jobs(parsed, START)
    for index, instance in enumerate(existing):
        running = {}
        if index < busy:
            job = parsed[index]
            jobs.start_job(job, instance.instance_id, START)
            running[job.id] = f"receipt-{index}"
        nodes.put_node(
            NodeRecord(
                instance_id=instance.instance_id,
                offer_key="c5.4xlarge",
                instance_type="c5.4xlarge",
                market=Market.ON_DEMAND,
                state=NodeState.ACTIVE,
                launched_at=START,
                heartbeat_at=START,
                running_jobs=running,
            )
        )
    print(f"setup: {node_count} nodes ({busy} busy), {job_count} jobs queued, in {time.perf_counter() - setup:.1f} s")
    print()
    print(
        f"{'round':8} {'EC2 calls (by operation)':44} {'mutating':>8} {'touched':>8} {'DynamoDB':>8} "
        f"{'SQS':>4} {'decide ms':>9} {'round s':>8} {'in moto s':>9} {'Shoal s':>8}"
    )

    now = START + 60
    for name in ("scale", "retire", "steady"):
        if name == "retire":  # the drained agents report idle before the next round
            for node in nodes.list_nodes():
                if node.state is NodeState.DRAINING:
                    nodes.heartbeat(node.instance_id, free=Resources(), running_jobs={}, now=now - 30)
        for counter in (fleet.calls, dynamo_calls, sqs_calls):
            counter.reset()
        timer.seconds = 0.0
        result = run_round(plane, settings, offers, now=now, round_id=f"bench-{name}", trigger="benchmark")
        report(name, result, fleet.calls, dynamo_calls, sqs_calls, in_aws=timer.seconds)
        now += 60
    print()
    print("touched: instances launched + started + stopped + terminated (drains are DynamoDB writes, not EC2 calls)")
    print("in moto: time inside AWS calls, here moto's (its DescribeInstances is quadratic in tagged instances);")
    print("Shoal: the round's own time (observe, decide, act, record) without the AWS calls")


def report(
    name: str, result: RoundResult, ec2: CallCounter, dynamodb: CallCounter, sqs: CallCounter, *, in_aws: float
) -> None:
    c = result.counts
    touched = c.launched + c.started + c.stopped + c.terminated
    by_op = ", ".join(f"{op} {n}" for op, n in sorted(ec2.by_operation.items())) or "-"
    own = result.round_seconds - in_aws
    print(
        f"{name:8} {by_op:44} {ec2.mutating:>8} {touched:>8} {dynamodb.total:>8} {sqs.total:>4} "
        f"{result.decide_seconds * 1000:>9.1f} {result.round_seconds:>8.2f} {in_aws:>9.2f} {own:>8.2f}"
    )
    d = result.decision
    if d is not None:
        wanted = ", ".join(f"{k} {v}" for k, v in sorted(d.wanted.items()) if v)
        print(f"{'':8} launched {c.launched}, drained {c.drained}, terminated {c.terminated}; wanted: {wanted}")


if __name__ == "__main__":
    main()

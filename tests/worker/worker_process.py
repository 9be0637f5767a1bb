"""``shoal-worker`` in a real process against moto, for test_main: ``python -m tests.worker.worker_process``.

moto's in-process mock lives in one process, so this script creates the queues and table, submits the
jobs given as JSON on argv[1], runs the real ``main()`` (signal handlers and all) in its main thread,
and prints what the state looks like afterwards as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys

import boto3
from moto import mock_aws

from shared.adapters.job_store import DynamoJobStore
from shared.adapters.node_store import DynamoNodeStore
from shared.adapters.state_table import StateTable, make_table
from shared.domain.cluster_state import Market, NodeRecord, NodeState
from shared.domain.jobs import parse_job
from shared.services.job_message import encode_job_message
from shared.worker.main import main


def run(jobs_json: str) -> dict[str, object]:
    region = os.environ["AWS_REGION"]
    sqs = boto3.client("sqs", region_name=region)
    dynamodb = boto3.client("dynamodb", region_name=region)
    os.environ["SHOAL_DLQ_URL"] = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    os.environ["SHOAL_QUEUE_URL"] = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    make_table(dynamodb, os.environ["SHOAL_TABLE_NAME"])
    table = StateTable(os.environ["SHOAL_TABLE_NAME"], client=dynamodb)
    store, nodes = DynamoJobStore(table), DynamoNodeStore(table)
    node_id = os.environ["SHOAL_NODE_ID"]
    nodes.put_node(
        NodeRecord(
            instance_id=node_id,
            offer_key="t3.large",
            instance_type="t3.large",
            market=Market.SPOT,
            state=NodeState.PENDING,
        )
    )
    jobs = [parse_job(obj) for obj in json.loads(jobs_json)]
    store.put_jobs(jobs, 0.0)
    for job in jobs:
        sqs.send_message(QueueUrl=os.environ["SHOAL_QUEUE_URL"], MessageBody=encode_job_message(job))

    exit_code = main()

    counts = sqs.get_queue_attributes(
        QueueUrl=os.environ["SHOAL_QUEUE_URL"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    node = nodes.get_node(node_id)
    return {
        "exit_code": exit_code,
        "jobs": {job.id: str(record.status) for job in jobs if (record := store.get_job(job.id)) is not None},
        "visible": int(counts["ApproximateNumberOfMessages"]),
        "in_flight": int(counts["ApproximateNumberOfMessagesNotVisible"]),
        "node_state": None if node is None else str(node.state),
    }


if __name__ == "__main__":
    with mock_aws():
        result = run(sys.argv[1])
    print("RESULT " + json.dumps(result), flush=True)

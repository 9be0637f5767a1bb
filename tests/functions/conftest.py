"""Fixtures: a cluster on moto (state table, job queue, launch template, settings in the environment).

The handlers run as Lambda runs them, with a simulated clock; see ``harness.Cluster``.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto import mock_aws

from functions import evaluate_scaling, on_instance_event
from shared.adapters import aws
from shared.adapters.state_table import make_table
from shared.domain.settings import ClusterSettings
from shared.services.environment import FunctionEnvironment
from tests.functions.harness import NODE_TYPES, REGION, START, Clock, Cluster


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Shoal",
        "POWERTOOLS_SERVICE_NAME": "shoal",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Tests override cluster settings by redefining this fixture or using ``make_cluster``."""
    return {}


@pytest.fixture
def make_cluster(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(**overrides: object) -> Cluster:
        values: dict[str, object] = {"name": "test", "node_types": NODE_TYPES, "region": REGION, "beta_inertia": 0.0}
        values.update(overrides)
        settings = ClusterSettings(**values).validate()  # type: ignore[arg-type]
        dynamodb, sqs, ec2 = (aws.client(s, REGION) for s in ("dynamodb", "sqs", "ec2"))
        make_table(dynamodb, "shoal-test-state")
        dlq = sqs.create_queue(QueueName="shoal-test-jobs-dlq")["QueueUrl"]
        queue = sqs.create_queue(QueueName="shoal-test-jobs", Attributes={"VisibilityTimeout": "900"})["QueueUrl"]
        template = ec2.create_launch_template(
            LaunchTemplateName="shoal-test-workers", LaunchTemplateData={"ImageId": "ami-12c6146b"}
        )["LaunchTemplate"]["LaunchTemplateId"]
        env = FunctionEnvironment(
            cluster=settings,
            table_name="shoal-test-state",
            queue_url=queue,
            dead_letter_queue_url=dlq,
            launch_template_id=template,
        )
        for name, value in env.to_env().items():
            monkeypatch.setenv(name, value)
        clock = Clock(START)
        monkeypatch.setattr(evaluate_scaling, "clock", clock)
        monkeypatch.setattr(on_instance_event, "clock", clock)
        evaluate_scaling.runtime.cache_clear()
        on_instance_event.runtime.cache_clear()
        cluster = Cluster(settings, env, clock)
        made.append(cluster)
        return cluster

    yield make
    evaluate_scaling.runtime.cache_clear()
    on_instance_event.runtime.cache_clear()


@pytest.fixture
def cluster(make_cluster: Callable[..., Cluster], settings_overrides: dict[str, object]) -> Cluster:
    return make_cluster(**settings_overrides)


@pytest.fixture
def atomic_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies a conditional write atomically; moto, called from threads, may not. Make it so."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("put_item", "update_item", "delete_item", "transact_write_items", "get_item", "query"):
        original = getattr(DynamoDBBackend, name)

        def locked(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(*args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[dict[str, Any]]]:
    """The structured log lines the handlers write (both share the "shoal" Powertools logger)."""
    buffer = io.StringIO()
    monkeypatch.setattr(evaluate_scaling.logger.registered_handler, "stream", buffer)

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]

    return read

"""The agent-test cluster (moto queues, stores, real job processes) for the local cloud's witnesses."""

from tests.worker.conftest import aws_credentials, cluster  # noqa: F401 (fixtures, re-exported)

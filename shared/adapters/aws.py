"""Botocore client factory shared by every adapter.

Throttling and transient errors are retried by botocore's *standard* retry mode (exponential
backoff with jitter, 5 attempts), never by matching error strings in our code.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import NoRegionError

RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


class AwsConfigError(RuntimeError):
    """The AWS SDK cannot be set up (no region); the message says what to set."""


def client(service_name: str, region: str | None = None) -> Any:
    """A low-level boto3 client for ``service_name`` with standard retries (``region`` None: the default chain)."""
    try:
        return boto3.client(service_name, region_name=region, config=RETRY_CONFIG)  # type: ignore[call-overload]
    except NoRegionError:
        raise AwsConfigError(f"no AWS region configured for {service_name}; pass --region or set AWS_REGION") from None

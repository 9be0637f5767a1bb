"""EcrImageCache against moto's ECR: the cached appliance's repository is deleted with its images, once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from shared.adapters import aws
from shared.adapters.image_cache import EcrImageCache, ImageCacheError
from tests.adapters.conftest import REGION

REPOSITORY = "shoal-demo-quay/ucsc_cgl/toil"


@pytest.fixture
def ecr(mocked_aws: None) -> Any:
    client = aws.client("ecr", REGION)
    client.create_repository(repositoryName=REPOSITORY)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}
    client.put_image(repositoryName=REPOSITORY, imageManifest=json.dumps(manifest), imageTag="9.6.0")
    return client


def test_delete_removes_the_repository_with_its_images_then_finds_nothing(ecr: Any) -> None:
    cache = EcrImageCache(REPOSITORY, REGION)
    assert cache.delete() is True
    assert REPOSITORY not in [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
    assert cache.delete() is False  # never pulled, or already deleted: nothing to do


@pytest.mark.parametrize(
    "error",
    [
        ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "DeleteRepository"),
        EndpointConnectionError(endpoint_url="https://api.ecr.us-east-1.amazonaws.com"),
    ],
)
def test_a_failed_delete_is_one_line_naming_the_repository(ecr: Any, error: Exception) -> None:
    cache = EcrImageCache(REPOSITORY, REGION)

    def fail(**_: Any) -> None:
        raise error

    cache.client.meta.events.register("before-call.ecr.DeleteRepository", fail)
    with pytest.raises(ImageCacheError) as raised:
        cache.delete()
    message = str(raised.value)
    assert REPOSITORY in message and "\n" not in message
    assert "AccessDeniedException" in message or "Could not connect" in message
    assert REPOSITORY in [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]

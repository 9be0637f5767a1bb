"""TeardownCluster deletes the appliance's ECR pull-through repository, which ECR made and no tag finds.

Executed as in test_lifecycle.py: the synthesized definitions on moto's Step Functions, the real lifecycle
handler, moto's ECR holding the repository a node's first pull would have created.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions import lifecycle_step
from shared.adapters import aws
from tests.lifecycle.conftest import REGION, LifecycleCloud
from tests.lifecycle.test_lifecycle import launch, teardown

REPOSITORY = "shoal-lifecycle-quay/ucsc_cgl/toil"


@pytest.fixture
def cached(cloud: LifecycleCloud, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The stack's cache setting on the functions, and the repository as the first pull leaves it (one image)."""
    monkeypatch.setenv("SHOAL_CACHED_REPOSITORY", REPOSITORY)
    lifecycle_step._dependencies.cache_clear()
    ecr = aws.client("ecr", REGION)
    ecr.create_repository(repositoryName=REPOSITORY)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}
    ecr.put_image(repositoryName=REPOSITORY, imageManifest=json.dumps(manifest), imageTag="9.6.0")
    yield ecr
    lifecycle_step._dependencies.cache_clear()


def _repositories(ecr: Any) -> list[str]:
    return [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]


def test_teardown_deletes_the_cached_appliance_with_its_images(cloud: LifecycleCloud, cached: Any) -> None:
    assert launch(cloud)["status"] == "SUCCEEDED"
    # WHEN the cluster is torn down
    destroyed = teardown(cloud)
    # THEN it succeeds, and the repository ECR created for the cache is gone, named in the answer
    assert destroyed["status"] == "SUCCEEDED", destroyed
    assert REPOSITORY not in _repositories(cached)
    assert json.loads(destroyed["output"])["verified"]["cached_image_deleted"] == REPOSITORY
    # AND a second teardown (nothing cached any more) succeeds too
    again = teardown(cloud)
    assert again["status"] == "SUCCEEDED", again
    assert json.loads(again["output"])["verified"]["cached_image_deleted"] is None


def test_a_cached_appliance_that_cannot_be_deleted_fails_the_teardown_naming_it(
    cloud: LifecycleCloud, cached: Any
) -> None:
    assert launch(cloud)["status"] == "SUCCEEDED"
    _, ports, _ = lifecycle_step._dependencies()

    def denied(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "DeleteRepository")

    ports.image_cache.client.meta.events.register("before-call.ecr.DeleteRepository", denied)  # type: ignore[union-attr]
    # WHEN the teardown cannot delete it
    destroyed = teardown(cloud)
    # THEN the teardown fails and its recorded cause names the repository and why; the instances are gone
    assert destroyed["status"] == "FAILED", destroyed
    reason = cloud.status()["reason"]
    assert REPOSITORY in reason and "AccessDeniedException" in reason, reason
    assert cloud.tagged_instances() == []
    assert REPOSITORY in _repositories(cached)

"""The cluster's cached appliance: the ECR repository its pull-through cache rule creates on the first pull.

ECR, not the stack, creates that repository (``PREFIX/ucsc_cgl/toil``), so neither the teardown's inventory
of tagged resources nor ``cdk destroy`` would remove it. ``EcrImageCache.delete`` does, with its images
(``force``), as the teardown's last step; a repository never created (no node pulled yet) is nothing to do.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws


class ImageCacheError(RuntimeError):
    """The cached appliance's repository could not be deleted; the message names it and why."""


class EcrImageCache:
    def __init__(self, repository: str, region: str | None = None, *, client: Any = None) -> None:
        self.repository = repository
        self.client = client if client is not None else aws.client("ecr", region)

    def delete(self) -> bool:
        """Delete the repository and its images; False if it did not exist."""
        try:
            self.client.delete_repository(repositoryName=self.repository, force=True)
        except ClientError as error:
            details = error.response.get("Error", {})
            if details.get("Code") == "RepositoryNotFoundException":
                return False
            raise ImageCacheError(
                f"could not delete the cached appliance repository {self.repository!r}: "
                f"{details.get('Code', 'Unknown')}: {details.get('Message', '')}"
            ) from None
        except BotoCoreError as error:
            raise ImageCacheError(
                f"could not delete the cached appliance repository {self.repository!r}: {error}"
            ) from None
        return True

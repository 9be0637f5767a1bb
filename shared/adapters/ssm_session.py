"""What ssh-cluster and rsync-cluster need from AWS: an S3 staging prefix and SSM Run Command on a node."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef
    from mypy_boto3_ssm import SSMClient

RUN_SHELL_SCRIPT = "AWS-RunShellScript"
UNFINISHED = frozenset({"Pending", "InProgress", "Delayed"})


class TransferError(RuntimeError):
    """S3 or SSM refused a step of the transfer; the message names it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult:
    command_id: str
    status: str  # SSM's: Success, Failed, TimedOut, Cancelled, ...
    stdout: str = ""
    stderr: str = ""


class S3Staging:
    def __init__(self, region: str, *, client: S3Client | None = None) -> None:
        self.client: S3Client = client if client is not None else aws.client("s3", region)

    def upload(self, source: Path, bucket: str, prefix: str) -> int:
        """Upload a file (to ``prefix + name``) or a directory tree (under ``prefix``); returns the file count."""
        files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        base = source.parent if source.is_file() else source
        with _errors(f"upload to s3://{bucket}/{prefix}"):
            for path in files:
                self.client.upload_file(str(path), bucket, prefix + path.relative_to(base).as_posix())
        return len(files)

    def download(self, bucket: str, prefix: str, destination: Path) -> int:
        """Download every object under ``prefix`` into ``destination``, keeping the relative paths."""
        count = 0
        with _errors(f"download from s3://{bucket}/{prefix}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    target = destination / obj["Key"][len(prefix) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self.client.download_file(bucket, obj["Key"], str(target))
                    count += 1
        return count

    def remove(self, bucket: str, prefix: str) -> None:
        with _errors(f"clean up s3://{bucket}/{prefix}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys: list[ObjectIdentifierTypeDef] = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if keys:
                    self.client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


class SsmCommands:
    def __init__(
        self, region: str, *, client: SSMClient | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.client: SSMClient = client if client is not None else aws.client("ssm", region)
        self._sleep = sleep

    def run(self, instance_id: str, commands: list[str], *, comment: str, timeout: float = 3600.0) -> CommandResult:
        """Run a shell script on the node through SSM and wait for it to end."""
        with _errors(f"SSM SendCommand to {instance_id}"):
            sent = self.client.send_command(
                InstanceIds=[instance_id],
                DocumentName=RUN_SHELL_SCRIPT,
                Parameters={"commands": commands},
                Comment=comment[:100],
            )
        command_id = sent["Command"]["CommandId"]
        waited = 0.0
        while True:
            try:
                with _errors(f"SSM GetCommandInvocation on {instance_id}"):
                    found = self.client.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
            except _InvocationNotYetError:
                found = None
            if found is not None and found["Status"] not in UNFINISHED:
                return CommandResult(
                    command_id=command_id,
                    status=found["Status"],
                    stdout=found.get("StandardOutputContent", ""),
                    stderr=found.get("StandardErrorContent", ""),
                )
            if waited >= timeout:
                return CommandResult(command_id=command_id, status="TimedOut")
            self._sleep(1.0)
            waited += 1.0


class _InvocationNotYetError(TransferError):
    pass


@contextmanager
def _errors(what: str) -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code == "InvocationDoesNotExist":  # SSM has not registered the invocation yet
            raise _InvocationNotYetError(what) from None
        message = error.response.get("Error", {}).get("Message", "")
        raise TransferError(f"{what} failed: {code}: {message}") from None
    except (BotoCoreError, Boto3Error, OSError) as error:
        raise TransferError(f"{what} failed: {error}") from None

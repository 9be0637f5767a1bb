"""How a job is kept from the node: the image it runs in and what its container may reach.

On an EC2 worker (cdk/node_boot.py writes these variables into the agent's environment) every job runs
in a container of its own, never in the agent's process space:

- ``SHOAL_JOB_IMAGE``: the image for jobs that name none, the Toil appliance. Unset (the local cloud,
  tests), such jobs run as plain processes, as before.
- ``SHOAL_JOB_NETWORK``: the Docker network of job containers. The user data creates it as a bridge
  whose traffic to the instance metadata service (169.254.169.254, fd00:ec2::254) the host drops; the
  launch template's hop limit of 1 also keeps IMDSv2 tokens from crossing into it.
- ``SHOAL_JOB_CREDENTIALS``: a directory, mounted read-only, with an AWS config whose
  ``credential_process`` reads short-lived credentials of the cluster's *job role* (the job store's bucket
  and nothing else), refreshed by the host. A job's boto3 (Toil's) finds them through ``AWS_CONFIG_FILE``.
- ``SHOAL_JOBS_MAY_REACH``: what the cluster's settings allow jobs anyway, comma-separated:
  ``docker`` mounts the host's Docker socket (root on the node: for CWL ``DockerRequirement``);
  ``metadata`` leaves IMDS reachable (the user data then adds no block and a hop limit of 2).

The Docker socket is never mounted unless allowed. See docs/toil.md, "What a job can touch".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from shared.domain.jobs import Job

JOB_IMAGE = "SHOAL_JOB_IMAGE"
JOB_NETWORK = "SHOAL_JOB_NETWORK"
JOB_CREDENTIALS = "SHOAL_JOB_CREDENTIALS"
JOBS_MAY_REACH = "SHOAL_JOBS_MAY_REACH"
ALLOWANCES = ("docker", "metadata")
DOCKER_SOCKET = "/var/run/docker.sock"
CONFIG_FILE = "config"  # inside SHOAL_JOB_CREDENTIALS


class IsolationSettingError(ValueError):
    """A malformed isolation variable; the message names it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Isolation:
    """The agent's isolation settings, read once from its environment."""

    job_image: str | None = None
    network: str | None = None
    credentials_dir: str | None = None
    allow_docker: bool = False
    allow_metadata: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Isolation:
        allowed = {a.strip() for a in environ.get(JOBS_MAY_REACH, "").split(",") if a.strip()}
        unknown = sorted(allowed - set(ALLOWANCES))
        if unknown:
            raise IsolationSettingError(
                f"{JOBS_MAY_REACH}={environ[JOBS_MAY_REACH]!r}: {unknown[0]!r} is not one of {', '.join(ALLOWANCES)}"
            )
        return cls(
            job_image=environ.get(JOB_IMAGE, "").strip() or None,
            network=environ.get(JOB_NETWORK, "").strip() or None,
            credentials_dir=environ.get(JOB_CREDENTIALS, "").strip() or None,
            allow_docker="docker" in allowed,
            allow_metadata="metadata" in allowed,
        )

    def place(self, job: Job) -> Job:
        """The job as it runs here: in the job image when it names none and the node has one."""
        if job.image is not None or self.job_image is None:
            return job
        return dataclasses.replace(job, image=self.job_image)

    def docker_options(self, job: Job) -> list[str]:
        """``docker run`` options between the resource limits and the image."""
        options = ["--security-opt", "no-new-privileges"]
        if self.network is not None:
            options += ["--network", self.network]
        if self.credentials_dir is not None:
            directory = self.credentials_dir.rstrip("/")
            options += ["-v", f"{directory}:{directory}:ro", "-e", f"AWS_CONFIG_FILE={directory}/{CONFIG_FILE}"]
        if self.allow_docker:
            options += ["-v", f"{DOCKER_SOCKET}:{DOCKER_SOCKET}"]
        if job.image is not None and job.image == self.job_image:
            options += ["--entrypoint", ""]  # the appliance's own entry point is Toil's service, not a shell
        return options

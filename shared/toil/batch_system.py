"""``--batchSystem shoal``: Toil's jobs become Shoal jobs; their ends come back from the completion feed.

Imported only through the factory in the top-level shim ``toil_batch_system_shoal`` (Toil's plugin loader
finds that by name), so a Toil run that uses another batch system pays only for ``add_options``.

Each issued job is a Shoal job: ``name`` = Toil's jobName (runtimes are learned per name, as Toil does),
cores/memory/disk/accelerators/preemptible from the job description, Toil's ``walltime`` as both the
scaler's estimate and the job's timeout (a default estimate and no timeout when unset), one attempt
(Toil's leader retries), and the command wrapped by Toil's ``pack_job`` so the user script is
auto-deployed. Ids carry the workflow id and a token fresh on every leader start, so a ``--restart``
never collides with a previous run's jobs. Jobs marked ``local`` (CWL's glue jobs) run on the leader
(``BatchSystemLocalSupport``).
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import time
import uuid
from argparse import ArgumentParser, _ArgumentGroup
from typing import Any

from toil.batchSystems.abstractBatchSystem import (
    EXIT_STATUS_UNAVAILABLE_VALUE,
    BatchJobExitReason,
    InsufficientSystemResources,
    UpdatedBatchJobInfo,
)
from toil.batchSystems.cleanup_support import BatchSystemCleanupSupport
from toil.batchSystems.contained_executor import pack_job
from toil.batchSystems.options import OptionSetter
from toil.common import Config
from toil.job import JobDescription, Requirer
from toil.resource import Resource

from shared.domain.jobs import Job, Shape
from shared.domain.node_types import Offer
from shared.domain.packing import short_resource, why_unplaceable
from shared.domain.resources import Resources
from shared.domain.scaling import offers_for
from shared.toil.settings import OPTIONS, ShoalToilConfigError, ShoalToilSettings, static_key_warning
from shared.toil.tracker import Finished, JobTracker, TrackerSettings
from shared.wiring.clients import build_submit_client
from shared.wiring.cluster_cli import build_toil_ports, cluster_directory, default_region

log = logging.getLogger(__name__)

MIN_CORES = 0.01  # Shoal needs a positive core count; Toil allows 0
GPU_APIS = (None, "cuda", "opencl")  # what the catalog's NVIDIA GPUs offer
SIGNAL_EXIT_BASE = 128  # a job killed by signal N is reported as exit status 128 + N, as shells do


class ShoalBatchSystem(BatchSystemCleanupSupport):  # type: ignore[misc]  # Toil ships no type information
    @classmethod
    def supportsAutoDeployment(cls) -> bool:
        return True

    def __init__(self, config: Config, maxCores: float, maxMemory: float, maxDisk: int) -> None:
        super().__init__(config, maxCores, maxMemory, maxDisk)
        try:
            self.settings = ShoalToilSettings.read(lambda name: getattr(config, name, None))
        except ShoalToilConfigError as error:
            raise RuntimeError(str(error)) from None
        submit_config = self.settings.submit_config(_stack_outputs)
        run = uuid.uuid4().hex[:8]
        workflow = str(config.workflowID)
        self._id_prefix = f"toil-{workflow[:8]}-{run}-"
        self.feed = f"toil-{workflow}-{run}"
        self.user_script: Resource | None = None
        ports = build_toil_ports(submit_config.table_name, submit_config.region, self.feed)
        self._offers = _offers(ports.clusters)
        self._tracker = JobTracker(
            client=build_submit_client(submit_config),
            store=ports.jobs,
            feed=ports.feed,
            settings=TrackerSettings(poll_interval=self.settings.poll_interval),
        )
        self._tracker.start()
        log.info("Shoal batch system: cluster %s, table %s", submit_config.cluster, submit_config.table_name)
        warning = static_key_warning(os.environ)
        if warning is not None:
            log.warning("Shoal batch system: %s", warning)

    # --- options ------------------------------------------------------------------------------------

    @classmethod
    def add_options(cls, parser: ArgumentParser | _ArgumentGroup) -> None:
        helps = {
            "shoal_cluster": "The Shoal cluster to run jobs on.",
            "shoal_table": "The cluster's state table (default: looked up from the cluster's stack).",
            "shoal_queue_url": "The cluster's job queue URL (default: looked up from the cluster's stack).",
            "shoal_region": "The cluster's AWS region (default: the AWS SDK's).",
            "shoal_event_bus": "The event bus that wakes the scaler (default: 'default').",
            "shoal_poll_interval": "Seconds between reads of the completion feed (default: 1).",
            "shoal_default_wall_time": "The runtime estimate for jobs without a walltime (default: 10m).",
            "shoal_job_image": "A container image to run jobs in (default: the worker's own environment).",
        }
        for attribute, (flag, variable) in OPTIONS.items():
            parser.add_argument(
                flag, dest=attribute, default=None, env_var=variable, help=f"{helps[attribute]} (${variable})"
            )

    @classmethod
    def setOptions(cls, setOption: OptionSetter) -> None:
        for attribute in OPTIONS:
            setOption(attribute)

    def setUserScript(self, userScript: Resource) -> None:
        self.user_script = userScript

    # --- issuing ------------------------------------------------------------------------------------

    def check_resource_request(self, requirer: Requirer) -> None:
        super().check_resource_request(requirer)
        if self._offers is None:
            return
        # A bare Requirer may not say whether it is preemptible: then check it against every node type.
        preemptible = bool(_requirement(requirer, "preemptible", True))
        shape = Shape(resources=self._resources(requirer), wall_time=1.0, preemptible=preemptible)
        lacking = short_resource(shape, self._offers)
        if lacking is not None:
            raise InsufficientSystemResources(
                requirer,
                lacking,
                batch_system="Shoal",
                details=[f"No node type of the Shoal cluster can hold it: it {why_unplaceable(shape, self._offers)}."],
            )

    def _check_accelerator_request(self, requirer: Requirer) -> None:
        for accelerator in requirer.accelerators:
            if (
                accelerator.get("kind") != "gpu"
                or accelerator.get("brand", "nvidia") != "nvidia"
                or accelerator.get("api") not in GPU_APIS
            ):
                raise InsufficientSystemResources(
                    requirer,
                    "accelerators",
                    details=[f"Shoal provides NVIDIA GPUs only; {accelerator} cannot be provided."],
                )

    def issueBatchJob(
        self, command: str, job_desc: JobDescription, job_environment: dict[str, str] | None = None
    ) -> int:
        local_id: int | None = self.handleLocalJob(command, job_desc)
        if local_id is not None:
            return local_id
        self.check_resource_request(job_desc)
        batch_id: int = self.getNextJobID()
        environment = {**self.environment, **(job_environment or {})}
        walltime = float(_requirement(job_desc, "walltime", 0) or 0)
        job = Job(
            id=f"{self._id_prefix}{batch_id}",
            shape=Shape(
                resources=self._resources(job_desc),
                wall_time=walltime or self.settings.default_wall_time,
                preemptible=bool(_requirement(job_desc, "preemptible", False)),
            ),
            command=shlex.join(pack_job(command, self.user_script)),
            image=self.settings.job_image,
            name=job_desc.jobName,
            env=environment,
            max_attempts=1,
            timeout=walltime or None,
            feed=self.feed,
        )
        self._tracker.submit(job)
        log.debug("issued %s as Shoal job %s", job_desc, job.id)
        return batch_id

    # --- what is going on ---------------------------------------------------------------------------

    def getIssuedBatchJobIDs(self) -> list[int]:
        local: list[int] = self.getIssuedLocalJobIDs()
        return local + [self._batch_id(i) for i in self._tracker.issued()]

    def getRunningBatchJobIDs(self) -> dict[int, float]:
        running: dict[int, float] = self.getRunningLocalJobIDs()
        now = time.time()
        running.update({self._batch_id(i): max(0.0, now - at) for i, at in self._tracker.running().items()})
        return running

    def getUpdatedBatchJob(self, maxWait: int) -> UpdatedBatchJobInfo | None:
        deadline = time.monotonic() + maxWait
        while True:
            local: UpdatedBatchJobInfo | None = self.getUpdatedLocalJob(0)
            if local is not None:
                return local
            left = deadline - time.monotonic()
            finished = self._tracker.next_finished(min(left, 0.5))
            if finished is not None:
                return self._updated(finished)
            if time.monotonic() >= deadline:
                return None

    def killBatchJobs(self, jobIDs: list[int]) -> None:
        self.killLocalJobs(jobIDs)
        ours = [f"{self._id_prefix}{i}" for i in jobIDs]
        still = self._tracker.cancel(ours)
        if still:
            log.warning("killed Shoal jobs still stopping: %s", ", ".join(still))

    def shutdown(self) -> None:
        self.shutdownLocal()
        try:
            left = sorted(self._tracker.issued())
            if left:
                log.info("cancelling %d Shoal job(s) still issued", len(left))
                self._tracker.cancel(left, wait=False)
        finally:
            self._tracker.close()

    # --- helpers ------------------------------------------------------------------------------------

    def _batch_id(self, job_id: str) -> int:
        return int(job_id.removeprefix(self._id_prefix))

    def _updated(self, finished: Finished) -> UpdatedBatchJobInfo:
        if finished.succeeded:
            code, why = 0, BatchJobExitReason.FINISHED
        elif finished.exit_code is None:
            code, why = EXIT_STATUS_UNAVAILABLE_VALUE, BatchJobExitReason.ERROR
        else:
            code = finished.exit_code if finished.exit_code >= 0 else SIGNAL_EXIT_BASE - finished.exit_code
            timed_out = (finished.reason or "").startswith("timed out")
            why = BatchJobExitReason.TIMELIMIT if timed_out else BatchJobExitReason.FAILED
        if not finished.succeeded:
            log.warning("Shoal job %s failed: %s", finished.job_id, finished.reason)
        return UpdatedBatchJobInfo(
            jobID=self._batch_id(finished.job_id),
            exitStatus=code,
            exitReason=why,
            wallTime=finished.wall_time,
            backing_id=finished.job_id,
        )

    @staticmethod
    def _resources(requirer: Requirer) -> Resources:
        gpus = sum(int(a.get("count", 1)) for a in requirer.accelerators if a.get("kind") == "gpu")
        return Resources(
            cores=max(float(requirer.cores), MIN_CORES),
            memory=math.ceil(requirer.memory),
            disk=math.ceil(requirer.disk),
            accelerators=gpus,
        )


def _requirement(requirer: Requirer, name: str, default: Any) -> Any:
    """A requirement Toil may not be able to default (a bare Requirer without a config raises)."""
    try:
        return getattr(requirer, name)
    except AttributeError:
        return default


def _offers(clusters: Any) -> list[Offer] | None:
    """The cluster's node types, to refuse jobs none could hold; None (no check) when its settings are not there."""
    settings = clusters.get_settings()
    if settings is None:
        log.warning("the Shoal cluster's settings are not in its table; requests are not checked against node types")
        return None
    offers: list[Offer] = offers_for(settings)
    return offers


def _stack_outputs(cluster: str, region: str | None) -> tuple[str, str, str]:
    outputs = cluster_directory(region or default_region()).outputs(cluster)
    return outputs.table_name, outputs.queue_url, outputs.region

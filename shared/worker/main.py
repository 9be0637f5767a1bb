"""``shoal-worker``: the appliance container's entry point. Reads its settings, wires the agent, runs it.

SIGTERM (``docker stop``, instance shutdown) and SIGINT evacuate: no new jobs, running and held jobs
go back to the queue at once, then the process exits 0. The handlers only set a flag; the agent's
keeper thread does the work, so no lock is ever taken inside a signal handler.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from shared.services.job_message import decode_job_message
from shared.wiring.agent import build_agent_ports
from shared.worker.agent import Agent, AgentRecoveryError
from shared.worker.config import WorkerConfig, WorkerConfigError
from shared.worker.imds import ImdsClient, SpotInterruptionWatch

log = logging.getLogger("shoal.worker")
EXIT_BAD_CONFIG = 2
EXIT_RECOVERY_FAILED = 1


def build_agent(config: WorkerConfig) -> Agent:
    """The agent on its cluster's queue and table (``shared.wiring.agent``), watching for a spot notice."""
    watch = None if config.imds_url is None else SpotInterruptionWatch(ImdsClient(config.imds_url))
    ports = build_agent_ports(
        queue_url=config.queue_url,
        dead_letter_queue_url=config.dead_letter_queue_url,
        table_name=config.table_name,
        region=config.region,
    )
    return Agent(
        config.agent,
        queue=ports.queue,
        jobs=ports.jobs,
        nodes=ports.nodes,
        runtimes=ports.runtimes,
        decode=decode_job_message,
        interruption_check=watch,
    )


def install_signal_handlers(agent: Agent) -> None:
    def evacuate(signum: int, _frame: FrameType | None) -> None:
        agent.request_interrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, evacuate)
    signal.signal(signal.SIGINT, evacuate)


def main(argv: Sequence[str] | None = None) -> int:
    del argv  # configured by the environment only, like the Lambda functions
    logging.basicConfig(
        level=os.environ.get("SHOAL_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stdout,
    )
    try:
        config = WorkerConfig.from_env()
    except WorkerConfigError as error:
        print(f"shoal-worker: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    agent = build_agent(config)
    install_signal_handlers(agent)
    capacity = config.agent.capacity.describe()
    log.info("node %s taking jobs from %s with %s", config.agent.node_id, config.queue_url, capacity)
    try:
        agent.run()
    except AgentRecoveryError as error:
        log.error("%s; exiting so that the container restarts and tries again", error)
        return EXIT_RECOVERY_FAILED
    log.info("node %s stopped%s", config.agent.node_id, " after an evacuation" if agent.evacuated else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())

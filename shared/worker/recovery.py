"""Recovery: before an agent takes any job, it ends what an earlier agent of its node left and settles it.

"Never twice at once": the predecessor's processes (found by their token) and containers (by label) are
ended first. Then each run it left a ticket for, if its record still says it runs here in that start: a
run that finished by itself (its exit file) is adopted with that status, one that did not is requeued (the
start still counts in ``starts``); a job it was starting (an intent, no ticket) is requeued; the messages
the predecessor held are made visible again at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil

from shared.domain.cluster_state import JobStatus
from shared.worker import process_tree
from shared.worker.agent_state import INTENT_PREFIX, AgentState, guarded
from shared.worker.runner import SETTLE_SECONDS
from shared.worker.tickets import Ticket, read_tickets

log = logging.getLogger(__name__)

RECORD_TRIES = 5  # writes of one adopted outcome before recovery gives up (and the agent exits to retry)
RECORD_RETRY_FIRST = 0.5  # seconds, doubling


class AgentRecoveryError(RuntimeError):
    """What an earlier agent of this node left running could not be ended; taking jobs could run them twice."""


def recover(state: AgentState) -> None:
    """End and settle what an earlier agent of this node left. Raises ``AgentRecoveryError`` if some process
    would not die."""
    left = process_tree.end_matching(
        process_tree.owned_by(state.owner), grace=state.settings.kill_grace, settle=SETTLE_SECONDS
    )
    if left:
        raise AgentRecoveryError(
            f"{left} process(es) left by an earlier agent of node {state.node_id} would not die; "
            "taking jobs now could run them twice"
        )
    if shutil.which(state.docker):
        removed = process_tree.remove_containers(state.owner, label=process_tree.OWNER_LABEL, docker=state.docker)
        if removed:
            log.warning("removed %d container(s) an earlier agent of node %s left running", removed, state.node_id)
    tickets = read_tickets(state.settings.work_root)
    intents = _read_intents(state)
    if not tickets and not intents:
        return
    settled = [ticket.job_id for ticket in tickets if _settle_predecessors(state, ticket)]
    now = state.clock()
    for job_id in intents:
        # Taken, but its process never started (no ticket): the record may still say it runs here.
        record = state.jobs.get_job(job_id)
        if record is not None and record.status is JobStatus.RUNNING and record.node == state.node_id:
            log.warning("job %s was being started when the agent stopped; requeueing it", job_id)
            if state.jobs.requeue_job(job_id, state.node_id, reason="the agent stopped as it started it", now=now):
                settled.append(job_id)
        state.intent_path(job_id).unlink(missing_ok=True)
    node = guarded("reading the node record", lambda: state.nodes.get_node(state.node_id))
    held = {} if node is None else dict(node.running_jobs)
    held.update(intents)
    receipts = sorted({held[job_id] for job_id in settled if job_id in held})
    if receipts:
        guarded("returning messages", lambda: state.queue.change_visibility(receipts, 0))


def _read_intents(state: AgentState) -> dict[str, str]:
    """Job id → receipt handle, of every job an earlier agent was starting or running here."""
    intents: dict[str, str] = {}
    for path in state.settings.work_root.glob(f"{INTENT_PREFIX}*"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(path.read_text(encoding="utf-8"))
            intents[str(data["job_id"])] = str(data["receipt"])
    return intents


def _settle_predecessors(state: AgentState, ticket: Ticket) -> bool:
    """Settle one run an earlier agent left; True if its record changed. The ticket goes only once its outcome
    is on the record: a store that keeps failing raises ``AgentRecoveryError`` with the ticket kept, for the
    next try (the container restarts), since dropping an outcome would run the job again."""
    delay = RECORD_RETRY_FIRST
    for _ in range(RECORD_TRIES):
        try:
            changed = _settle_ticket(state, ticket)
        except Exception:
            log.exception("recording what job %s's earlier run did failed; trying again in %.1fs", ticket.job_id, delay)
            if state.gone.wait(delay):
                break
            delay *= 2
            continue
        ticket.forget(state.settings.work_root)
        return changed
    raise AgentRecoveryError(
        f"could not record what job {ticket.job_id}'s run under an earlier agent of node {state.node_id} did"
    )


def _settle_ticket(state: AgentState, ticket: Ticket) -> bool:
    work_root, now, node_id = state.settings.work_root, state.clock(), state.node_id
    record = state.jobs.get_job(ticket.job_id)
    if (
        record is None
        or record.status is not JobStatus.RUNNING
        or record.node != node_id
        or record.starts != ticket.attempt
    ):
        return False
    status = ticket.exit_status(work_root)
    job, tail = record.job, ticket.output_tail(work_root)
    if status == 0:
        log.warning("job %s finished (attempt %d) while no agent watched it; adopting its success",
                    job.id, ticket.attempt)  # fmt: skip
        return state.jobs.finish_job(job, node_id, attempt=ticket.attempt, exit_code=0, output_tail=tail, now=now)
    if status is not None:
        reason = f"exit code {status} (it ended while no agent watched it)"
        log.warning("job %s failed (attempt %d) while no agent watched it: %s", job.id, ticket.attempt, reason)
        return state.jobs.fail_job(
            job, node_id, attempt=ticket.attempt, reason=reason, exit_code=status, output_tail=tail, now=now,
        ) is not None  # fmt: skip
    log.warning("job %s (attempt %d) was running when the agent stopped; its run was ended, requeueing it",
                job.id, ticket.attempt)  # fmt: skip
    return state.jobs.requeue_job(
        job.id, node_id, reason="the agent restarted while it ran; that run was ended", now=now
    )

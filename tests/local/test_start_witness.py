"""The demo's witness of how often a job started reads what real agents write to agents.log (issue 13, item 4)."""

from __future__ import annotations

from pathlib import Path

from shared.domain.cluster_state import JobStatus
from shared.local.demo import _agent_logs
from shared.local.report import starts_in_agent_log
from tests.worker.conftest import Cluster, make_job, wait_until


def test_starts_are_counted_from_the_agents_log_where_the_record_gives_attempts_back(
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    # GIVEN agents logging where the demo logs them, and a job that is interrupted once, then finishes elsewhere
    log = tmp_path / "agents.log"
    flag = tmp_path / "first"
    command = f"if [ ! -e {flag} ]; then touch {flag}; sleep 30; fi"
    cluster.submit(make_job("twice", command))
    with _agent_logs(log):
        interrupted = cluster.agent("i-spot")
        interrupted.step()
        wait_until(flag.exists, what="the first run to start")
        interrupted.evacuate("spot interruption")
        cluster.submit(make_job("once", "true"))
        other = cluster.agent("i-other")
        cluster.start(other)
        wait_until(
            lambda: {cluster.jobs.get_job(j).status for j in ("twice", "once")} == {JobStatus.SUCCEEDED},
            timeout=20,
            what="both jobs to finish",
        )
    # WHEN the witness reads the log
    with log.open(encoding="utf-8") as lines:
        starts = starts_in_agent_log(lines)
    # THEN it counts two starts of the interrupted job and one of the other, though the record charges one attempt
    assert starts == {"twice": 2, "once": 1}
    assert cluster.jobs.get_job("twice").attempts == 1


def test_the_witness_reads_old_and_new_start_lines_and_nothing_else() -> None:
    lines = [
        "2026-01-01 00:00:00,000 INFO agent-i-1 job a b started (attempt 1 of 3)\n",
        "2026-01-01 00:00:01,000 INFO agent-i-1 job a b started (attempt 2)\n",
        "2026-01-01 00:00:02,000 INFO job-x job x succeeded in 1.00s\n",
        "2026-01-01 00:00:03,000 INFO agent-i-2 job x started (attempt 1)\n",
    ]
    assert starts_in_agent_log(lines) == {"a b": 2, "x": 1}

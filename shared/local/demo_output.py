"""What ``shoal demo`` prints and how it keeps its logs: the report's headline and the log plumbing.

``shared.local.demo`` runs the demo; this module only formats and routes what it says.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.local.demo import DemoResult


def summary(result: DemoResult) -> list[str]:
    """The report's headline, a few lines for the terminal."""
    r = result.report
    wait = (
        f"queue wait: p50 {_minutes(r['p50_wait_seconds'])}, p95 {_minutes(r['p95_wait_seconds'])}"
        if r["jobs_completed"]
        else "queue wait: none measured (no job completed)"
    )
    lines = [
        f"jobs: {r['jobs_submitted']} submitted, {r['jobs_completed']} completed, {r['jobs_failed']} failed, "
        f"{r['jobs_lost']} lost, {r['jobs_run_more_than_once']} run more than once",
        f"{wait} (target {_minutes(r['target_time_seconds'])})",
        f"nodes: max {r['max_nodes']}, {r['nodes_at_end']} at the end, {r['nodes_launched']} launched; "
        f"{r['node_hours']} node-hours, ${r['cost']}",
        f"decisions: {len(_list(r['decisions']))} rounds acted (of {r['rounds']}); "
        f"teardown left {r['resources_left_after_teardown']} tagged resources",
        f"simulated {_clock_time(float(str(r['simulated_seconds'])))} in {r['real_seconds']}s real "
        f"({_clock(r)}); report {result.report_path}, plot {result.plot_path}",
        f"logs: {result.workdir / 'lambda.log'} (handlers), agents.log (nodes), cdk-*.log (CDK CLI)",
    ]
    if "chaos_summary" in r:
        lines.append(str(r["chaos_summary"]))
    return lines


def _minutes(seconds: object) -> str:
    return f"{float(str(seconds)) / 60:.1f} min"


def _clock_time(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _pairs(a: Sequence[int], b: Sequence[int]) -> list[tuple[int, int]]:
    length = max(len(a), len(b))
    return [(a[i] if i < len(a) else 0, b[i] if i < len(b) else 0) for i in range(length)]


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list) else []


@contextlib.contextmanager
def _agent_logs(path: Path) -> Iterator[None]:
    """The agents' logs go to a file, as each node's would go to its log stream."""
    logger = logging.getLogger("shared.worker")
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(message)s"))
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


@contextlib.contextmanager
def _quiet_moto() -> Iterator[None]:
    """moto's server logs every request and warns about CloudFormation types it skips: not demo output.

    The Step Functions interpreter also logs every error it catches; the executions' history and the report
    keep those.
    """
    names = ("werkzeug", "moto", "botocore.credentials")
    levels = {name: logging.getLogger(name).level for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


def _clock(r: dict[str, object]) -> str:
    if r.get("clock") != "lockstep":
        return f"speed {r['speed']}x"
    overruns = f", {r['clock_overruns']} overran" if r.get("clock_overruns") else ""
    steps = f"{r.get('clock_steps')} steps of {r.get('clock_step_seconds')}s"
    return f"lockstep clock: {steps}, at most {r['speed']}x{overruns}"

"""``shoal plan``: what fleet the scaler would buy for a queue of jobs, and why."""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TextIO

from shared.cli.jobs_file import JobsFileError, PlanJobs, read_plan_jobs
from shared.cli.output_file import OutputFileError, check_writable, write_atomically
from shared.domain.catalog import (
    DEFAULT_MAX_NODE_STORAGE,
    DEFAULT_NODE_STORAGE,
    MAX_GP3_SIZE,
    REGIONS,
    parse_node_storage,
)
from shared.domain.cluster_state import DemandCount
from shared.domain.jobs import Shape
from shared.domain.node_types import NodeTypeSpecError, build_offers, parse_node_types
from shared.domain.packing import Plan, UnplacedShape, placements, plan, summarize_unplaced
from shared.domain.units import GiB, UnitError, format_duration, format_size, parse_counts, parse_duration
from shared.domain.volumes import sized_offers


class PlanInputError(ValueError):
    """Bad command-line input for ``shoal plan``."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="show the cheapest fleet that starts every job within the target time",
        description="Plan a fleet for a queue of jobs without touching AWS.",
    )
    parser.add_argument("--jobs", required=True, type=Path, help="JOBS.jsonl: one job a line")
    parser.add_argument(
        "--node-types", "--nodeTypes", required=True, help="Toil's --nodeTypes, e.g. c5.4xlarge:0.42,t3.large"
    )
    parser.add_argument(
        "--target-time", "--targetTime", default="1800", help="seconds (or 30m) within which every job starts"
    )
    parser.add_argument(
        "--node-storage", "--nodeStorage", default=str(DEFAULT_NODE_STORAGE // GiB), help="GiB of EBS root volume"
    )
    parser.add_argument(
        "--max-node-storage", "--maxNodeStorage", default=str(DEFAULT_MAX_NODE_STORAGE // GiB),
        help="the largest root volume, GiB, a node may get so that its jobs fill it, as a round gives it (default: "
        "1024; the --node-storage value keeps every volume at that)",
    )  # fmt: skip
    parser.add_argument("--min-nodes", "--minNodes", default="", help="one number per node type, e.g. 0,2")
    parser.add_argument("--max-nodes", "--maxNodes", default="", help="one number per node type, e.g. 10,50")
    parser.add_argument("--region", default="us-west-2", choices=REGIONS)
    parser.add_argument("--assignments", type=Path, help="write one line per placed job: node and start time")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    # A plan of 100,000 jobs keeps a million small objects alive until it is printed: the cyclic collector
    # would walk them all, again and again, for nothing (as inside the reader and the packing).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _run(args, out)
    finally:
        if collecting:
            gc.enable()


def _run(args: argparse.Namespace, out: TextIO | None) -> int:
    out = sys.stdout if out is None else out  # read per call: a default would bind the stdout of import time
    try:
        target_time = _target_time(args.target_time)
        node_storage = _node_storage(args.node_storage)
        largest = max(node_storage, _max_node_storage(args.max_node_storage))
        offers = build_offers(
            parse_node_types(args.node_types),
            region=args.region,
            node_storage=node_storage,
            min_nodes=_int_list("--min-nodes", args.min_nodes),
            max_nodes=_int_list("--max-nodes", args.max_nodes),
        )
        if args.assignments:
            check_writable("--assignments", args.assignments)
        jobs = read_plan_jobs(args.jobs)
    except (PlanInputError, NodeTypeSpecError, JobsFileError, OutputFileError) as error:
        print(f"shoal plan: {error}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    demand = jobs.demand  # counted while reading
    # Each offer's root volume grown to what the queue needs to fill its nodes, as a round grows it.
    queued = {shape: DemandCount(queued=count, running=0) for shape, count in demand.items()}
    offers = sized_offers(offers, queued, largest=largest, region=args.region)
    result = plan(demand, offers, target_time=target_time)
    elapsed = time.perf_counter() - started

    if args.assignments:
        try:
            write_atomically("--assignments", args.assignments, _assignment_lines(result, jobs))
        except OutputFileError as error:
            print(f"shoal plan: {error}", file=sys.stderr)
            return 2
    report = plan_report(result, jobs, shapes=len(demand), elapsed=elapsed)
    # A closed pipe (`shoal plan ... | head`) is ended quietly by shared/cli/main.py for every command.
    if args.json:
        json.dump(report, out, indent=None, separators=(",", ":"))
        out.write("\n")
    else:
        _print_table(report, result, out)
    out.flush()
    return 0


def plan_report(result: Plan, jobs: PlanJobs, *, shapes: int, elapsed: float) -> dict[str, object]:
    """The ``--json`` contract."""
    counts = result.node_counts()
    nodes = [
        {
            "node_type": offer.name,
            "spot": offer.spot,
            "count": counts[offer.key],
            "hourly_price": offer.hourly_price,
            "instance_types": list(offer.instance_types),
            "usable": offer.usable.as_dict(),
            "node_storage": offer.node_storage,  # bytes of root volume each node gets
        }
        for offer in result.offers
        if counts[offer.key]
    ]
    return {
        "nodes": nodes,
        "hourly_cost": round(result.hourly_cost, 6),
        "unplaceable": _listed(result.unplaceable, jobs),
        "deferred": _listed(result.deferred, jobs),
        "jobs": len(jobs.ids),
        "shapes": shapes,
        "target_time": result.target_time,
        "reasons": list(result.reasons),
        "elapsed_seconds": round(elapsed, 6),
    }


def _listed(unplaced: Sequence[UnplacedShape], jobs: PlanJobs) -> list[dict[str, str]]:
    if not unplaced:
        return []
    # The plan names the reader's own Shape objects (one per distinct shape), so each job's is found by its
    # identity: hashing a Shape runs Python code, 0.05 s for 100,000 jobs. Should a shape not be found that
    # way (an equal object), every job is looked up by value.
    listed = _listed_by(unplaced, jobs, id)
    return listed if len(listed) == sum(u.count for u in unplaced) else _listed_by(unplaced, jobs, _same)


def _listed_by(
    unplaced: Sequence[UnplacedShape], jobs: PlanJobs, key: Callable[[Shape], object]
) -> list[dict[str, str]]:
    reason_of = {key(u.shape): u.reason for u in unplaced}
    limits = {key(u.shape): u.count for u in unplaced}
    listed = []
    # Deferred jobs are the last of their shape in submission order; unplaceable ones are all of it.
    for job_id, shape in zip(reversed(jobs.ids), reversed(jobs.shapes), strict=True):
        found = key(shape)
        if limits.get(found, 0) > 0:
            limits[found] -= 1
            listed.append({"id": job_id, "reason": reason_of[found]})
    listed.reverse()
    return listed


def _same(shape: Shape) -> Shape:
    return shape


def _assignment_lines(result: Plan, jobs: PlanJobs) -> Iterable[str]:
    ids_of: dict[Shape, list[str]] = {}
    for job_id, shape in zip(reversed(jobs.ids), reversed(jobs.shapes), strict=True):  # popped from the end
        ids_of.setdefault(shape, []).append(job_id)
    for placed in placements(result):
        job_id = ids_of[placed.shape].pop()
        yield json.dumps(
            {
                "id": job_id,
                "node_type": placed.offer.name,
                "spot": placed.offer.spot,
                "node": placed.node,
                "start": placed.start,
            },
            separators=(",", ":"),
        )


def _print_table(report: dict[str, object], result: Plan, out: TextIO) -> None:
    nodes = report["nodes"]
    assert isinstance(nodes, list)
    out.write(
        f"{report['jobs']} jobs in {report['shapes']} shapes; target time {format_duration(result.target_time)}\n\n"
    )
    header = (
        f"{'node type':<28} {'market':<9} {'count':>5} {'$/h each':>9} {'cores':>6} {'memory':>11} "
        f"{'disk':>11} {'acc':>3} {'root':>9}"
    )
    out.write(header + "\n" + "-" * len(header) + "\n")
    for node in nodes:
        usable = node["usable"]
        out.write(
            f"{node['node_type']:<28} {'spot' if node['spot'] else 'on-demand':<9} {node['count']:>5} "
            f"{node['hourly_price']:>9.4f} {usable['cores']:>6g} {format_size(usable['memory']):>11} "
            f"{format_size(usable['disk']):>11} {usable['accelerators']:>3} {format_size(node['node_storage']):>9}\n"
        )
    total = sum(int(n["count"]) for n in nodes)
    out.write(
        f"\n{total} nodes, ${report['hourly_cost']:.4f} per hour with their root volumes; "
        f"planned in {report['elapsed_seconds']:.3f} s\n"
    )
    if result.reasons:
        out.write("\nwhy:\n")
        for reason in result.reasons:
            out.write(f"  - {reason}\n")
    for title, key, unplaced in (
        ("cannot run on any offered node", "unplaceable", result.unplaceable),
        ("waiting for maxNodes room", "deferred", result.deferred),
    ):
        listed = report[key]
        assert isinstance(listed, list)
        if not listed:
            continue
        out.write(f"\n{len(listed)} jobs {title}:\n")
        if len(unplaced) > _LISTED_JOBS:  # thousands of shapes: one line per cause, job ids in --json
            for line in summarize_unplaced(unplaced):
                out.write(f"  {line}\n")
            continue
        for entry in listed[:_LISTED_JOBS]:
            out.write(f"  {entry['id']}: {entry['reason']}\n")
        if len(listed) > _LISTED_JOBS:
            out.write(f"  ... and {len(listed) - _LISTED_JOBS} more (see --json)\n")


_LISTED_JOBS = 20


def _target_time(text: str) -> float:
    try:
        return parse_duration(text)
    except UnitError as error:
        raise PlanInputError(f"--target-time: {error}") from None


def _node_storage(text: str) -> int:
    try:
        return parse_node_storage(text)
    except UnitError as error:
        raise PlanInputError(f"--node-storage: {error}") from None


def _max_node_storage(text: str) -> int:
    try:
        size = parse_node_storage(text)
    except UnitError as error:
        raise PlanInputError(f"--max-node-storage: {error}") from None
    if size > MAX_GP3_SIZE:
        raise PlanInputError(
            f"--max-node-storage: {text!r} is more than gp3's largest volume; write at most {MAX_GP3_SIZE // GiB}"
        )
    return size


def _int_list(flag: str, text: str) -> tuple[int, ...]:
    try:
        return parse_counts(text)
    except UnitError as error:
        raise PlanInputError(f"{flag}: {error}") from None

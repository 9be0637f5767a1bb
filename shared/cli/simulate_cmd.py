"""``shoal simulate``: replay a trace through the real scaler on a virtual clock and report cost and waits."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from shared.domain.catalog import UnknownInstanceTypeError, instance_type, parse_node_storage
from shared.domain.scaling import offers_for
from shared.domain.settings import ClusterSettings, SettingsError
from shared.domain.units import UnitError, parse_duration
from shared.sim import guardrails, placement
from shared.sim.engine import SimOptions, SimResult, simulate
from shared.sim.trace import TraceError, read_trace

EXIT_OK = 0
EXIT_USAGE = 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="replay a workload trace through the real scaler on a virtual clock; report cost and waits",
        description="A discrete-event replay: the real decide, policy and packing run every round, EC2 and the "
        "agents are simulated, and the same seed gives the same answer on any machine.",
    )
    parser.add_argument("--trace", type=Path, required=True, help="TRACE.jsonl: the job format plus 'submit' seconds")
    parser.add_argument("--node-types", "--nodeTypes", required=True, help="Toil's --nodeTypes")
    parser.add_argument("--min-nodes", "--minNodes", default="", help="one number per node type (default: 0 each)")
    parser.add_argument("--max-nodes", "--maxNodes", default="", help="one number per node type (default: no max)")
    parser.add_argument("--target-time", "--targetTime", default="30m", help="start every job within this")
    parser.add_argument("--scale-interval", "--scaleInterval", default="1m", help="the scheduled round's period")
    parser.add_argument("--boot-delay", default="90s", help="from launch to the node's agent taking jobs")
    _add_volume_flags(parser)
    parser.add_argument("--seed", type=int, default=0, help="seeds every random draw (default: %(default)s)")
    parser.add_argument(
        "--spot-interruptions", type=float, default=0.0, metavar="PER_NODE_HOUR",
        help="spot interruptions per spot node-hour (default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--capacity-errors", default="", metavar="TYPE=RATE,..",
        help="probability that a launch of TYPE fails for lack of capacity, e.g. c5.4xlarge=0.2 "
        "(TYPE@ZONE=RATE: in that zone only)",
    )  # fmt: skip
    parser.add_argument(
        "--placement-scores", default="", metavar="TYPE@ZONE=SCORE,..",
        help="Spot Placement Scores (1-10) the scaler is given for a spot node type's zones, e.g. "
        "c5.4xlarge@us-west-2a=9,c5.4xlarge@us-west-2b=3 (the simulated zones are the ones named here and in "
        "--capacity-errors)",
    )  # fmt: skip
    parser.add_argument("--max-hourly-cost", "--maxHourlyCost", help="USD/h the fleet may cost (spot at its bid)")
    parser.add_argument("--budget", help="USD the cluster may spend; then it drains (BUDGET_EXHAUSTED)")
    parser.add_argument("--lease", help="time to live from the first round, e.g. 12h; then the cluster is torn down")
    parser.add_argument(
        "--idle-lease", "--idleLease", dest="idle_lease",
        help="time with no job queued or running, e.g. 2h; then the cluster is torn down",
    )  # fmt: skip
    parser.add_argument(
        "--vcpu-quota", default="", metavar="MARKET=VCPUS,..",
        help="the account's standard vCPU quotas, e.g. on-demand=640,spot=256: EC2 refuses launches past them",
    )  # fmt: skip
    parser.add_argument(
        "--quota-blind", action="store_true", help="do not tell the scaler the quotas (it learns from refusals only)"
    )
    parser.add_argument(
        "--max-preemptions", "--maxPreemptions", default="2",
        help="spot reclaims a job may suffer before it runs on on-demand nodes only (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--declared-runtimes", action="store_true",
        help="the scaler sees each job's wall_time as its submitted estimate, as jobs in Shoal's format declare one "
        "(default: it sees none, as with Toil's jobs, and learns runtimes as they end)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    parser.add_argument("--plot", type=Path, help="write a PNG of demand and nodes over time here")
    parser.set_defaults(run=run)


def _add_volume_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--node-storage", "--nodeStorage", default="50",
        help="GiB of EBS root volume per node, the smallest a node gets (Toil's default: 50)",
    )  # fmt: skip
    parser.add_argument(
        "--max-node-storage", "--maxNodeStorage", default="1024",
        help="the largest root volume, GiB, a round may give a node so that its jobs fill it (default: 1024; "
        "the --node-storage value keeps every volume at that)",
    )  # fmt: skip


def options_from_args(args: argparse.Namespace) -> SimOptions:
    """The simulation's options, or ``ValueError`` naming the bad flag."""
    settings = ClusterSettings.from_mapping(
        {
            "name": "simulated",
            "node_types": args.node_types,
            "min_nodes": _numbers("--min-nodes", args.min_nodes),
            "max_nodes": _numbers("--max-nodes", args.max_nodes),
            "target_time": _duration("--target-time", args.target_time),
            "scale_interval": _duration("--scale-interval", args.scale_interval),
            "node_storage": _size("--node-storage", args.node_storage),  # checked here, so a bad one names the flag
            "max_node_storage": _size("--max-node-storage", args.max_node_storage),
            **_guardrails(args),
            "max_preemptions": args.max_preemptions,
        }
    )
    boot = _duration("--boot-delay", args.boot_delay)
    if args.spot_interruptions < 0 or args.spot_interruptions != args.spot_interruptions:
        raise ValueError(f"--spot-interruptions must be a rate >= 0 per node-hour, got {args.spot_interruptions:g}")
    rates = _rates(args.capacity_errors)
    scores = placement.parse_scores(args.placement_scores, offers_for(settings), settings.region)
    return SimOptions(
        settings=settings,
        boot_delay=boot,
        seed=args.seed,
        spot_interruptions=args.spot_interruptions,
        capacity_errors=rates,
        zones=placement.zones_named(scores, rates),
        placement_scores=scores,
        vcpu_quotas=guardrails.parse_quotas(args.vcpu_quota),
        quota_aware=not args.quota_blind,
        declared_runtimes=args.declared_runtimes,
    )


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        options = options_from_args(args)
        trace = read_trace(args.trace)
    except (TraceError, SettingsError, ValueError) as error:
        print(f"shoal simulate: {error}", file=err)
        return EXIT_USAGE
    result = simulate(trace, options)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(result.report, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        write_plot(result, args.plot, title=f"shoal simulate {args.trace.name}: {args.node_types}")
    if args.json:
        print(json.dumps(result.report), file=out)
    else:
        for line in summary(result):
            print(line, file=out)
    return EXIT_OK


def summary(result: SimResult) -> list[str]:
    r = result.report
    return [
        f"jobs {r['jobs']}: completed {r['completed']}, lost {r['lost']}, run twice {r['run_twice']}, "
        f"killed by scale-in {r['killed_by_scale_in']}, requeued {r['requeued']}",
        f"wait p50 {r['wait_p50_seconds']:.0f} s, p95 {r['wait_p95_seconds']:.0f} s, max {r['wait_max_seconds']:.0f} s",
        f"cost ${r['cost']:.2f} (lower bound ${r['lower_bound_cost']:.2f}, ×{r['cost_over_lower_bound']}), "
        f"idle node-hours {r['idle_node_hours']:.1f}, peak nodes {r['peak_nodes']}",
        f"{r['decisions']} rounds over {float(str(r['simulated_seconds'])) / 3600:.1f} simulated hours "
        f"in {r['elapsed_seconds']:.1f} s",
        _waste_line(r),
        _bound_line(r),
        *_budget_line(r),
        *_lease_line(r),
        *_preemption_line(r),
    ]


def _waste_line(r: dict[str, object]) -> str:
    waste = r["waste"]
    assert isinstance(waste, dict)
    parts = ", ".join(f"{key.replace('_', ' ')} ${dollars:.2f}" for key, dollars in waste.items() if dollars)
    return f"where the money went (sampled each minute): {parts}"


def _bound_line(r: dict[str, object]) -> str:
    by = r["lower_bound_by"]
    assert isinstance(by, dict)
    parts = ", ".join(f"{key} ${dollars:.2f}" for key, dollars in by.items() if dollars)
    return f"the lower bound by the resource each job takes most of: {parts or 'nothing'}"


def _budget_line(r: dict[str, object]) -> list[str]:
    if "status" not in r:
        return []
    at = r["budget_exhausted_at_seconds"]
    when = "" if at is None else f" at {float(str(at)) / 3600:.2f} h"
    return [
        f"{r['status']}{when}: spent ${float(str(r['spent'])):.2f} of the ${float(str(r['budget'])):g} budget; "
        f"{r['never_started']} jobs never started"
    ]


def _lease_line(r: dict[str, object]) -> list[str]:
    if "lease_ended_at_seconds" not in r:
        return []
    at = r["lease_ended_at_seconds"]
    if at is None:
        return ["the lease did not run out"]
    return [f"{r['lease_reason']} at {float(str(at)) / 3600:.2f} h: torn down; {r['never_started']} jobs never started"]


def _preemption_line(r: dict[str, object]) -> list[str]:
    if not (r.get("preemptions") or r.get("quota_refusals")):
        return []
    return [
        f"spot preemptions {r['preemptions']} (at most {r['most_preemptions_of_a_job']} for one job), "
        f"launches refused for a vCPU quota {r['quota_refusals']}"
    ]


def write_plot(result: SimResult, path: Path, *, title: str) -> None:
    """The demo's picture (jobs waiting and running against nodes by type), from the simulated timeline."""
    from shared.local.report import Sample, Timeline  # noqa: PLC0415 - matplotlib only when a plot is asked for
    from shared.local.report import write_plot as draw  # noqa: PLC0415

    timeline = Timeline(
        samples=[
            Sample(t=s.t, waiting=s.waiting, running=s.running, done=s.done, nodes=s.nodes, booting=s.booting)
            for s in result.samples
        ]
    )
    draw(timeline, path, title=title)


def _guardrails(args: argparse.Namespace) -> dict[str, object]:
    """--max-hourly-cost, --budget, --lease and --idle-lease as settings (checked there, named by their setting)."""
    values = {
        "max_hourly_cost": args.max_hourly_cost,
        "budget": args.budget,
        "lease": args.lease,
        "idle_lease": args.idle_lease,
    }
    return {key: value for key, value in values.items() if value is not None}


def _numbers(flag: str, text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{flag} takes whole numbers separated by commas, got {text!r}") from None
    if any(v < 0 for v in values):
        raise ValueError(f"{flag} takes numbers >= 0, got {text!r}")
    return values


def _duration(flag: str, text: str) -> float:
    try:
        return parse_duration(text)
    except UnitError as error:
        raise ValueError(f"{flag}: {error}") from None


def _size(flag: str, text: str) -> str:
    """``text`` as the settings read it (a bare number is GiB), once it is a size they accept."""
    try:
        parse_node_storage(text)
    except UnitError as error:
        raise ValueError(f"{flag}: {error}") from None
    return text


def _rates(text: str) -> dict[str, float]:
    rates: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        type_name, at, zone = name.strip().partition("@")
        if not sep or not 0.0 <= rate <= 1.0 or (at and not placement.ZONE.match(zone)):
            raise ValueError(
                "--capacity-errors takes TYPE=RATE or TYPE@ZONE=RATE with RATE in [0, 1], e.g. c5.4xlarge=0.2 or "
                f"c5.4xlarge@us-west-2a=1; got {part!r}"
            )
        try:
            instance_type(type_name)
        except UnknownInstanceTypeError as error:
            raise ValueError(f"--capacity-errors: {error}") from None
        rates[name.strip()] = rate
    return rates

"""The simulator: a trace replayed through the real decide keeps every job, is deterministic per seed, and
reports the keys the issue lists; the CLI refuses bad input in one line with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.domain.catalog import instance_type
from shared.domain.jobs import Job, Shape
from shared.domain.resources import Resources
from shared.domain.scaling import offers_for
from shared.domain.settings import ClusterSettings
from shared.sim.engine import SimOptions, lower_bound_cost, simulate
from shared.sim.trace import TraceError, TraceJob, read_trace

GiB = 2**30
ROOT = Path(__file__).resolve().parents[2]
NODE_TYPES = "c5.4xlarge/c5a.4xlarge:0.30,m5.2xlarge,r5.4xlarge"
REPORT_KEYS = [
    "jobs", "completed", "lost", "run_twice", "killed_by_scale_in", "requeued", "wait_p50_seconds",
    "wait_p95_seconds", "wait_max_seconds", "node_hours", "idle_node_hours", "cost", "lower_bound_cost",
    "cost_over_lower_bound", "peak_nodes", "decisions", "simulated_seconds", "elapsed_seconds",
]  # fmt: skip


def settings(**overrides: object) -> ClusterSettings:
    values: dict[str, object] = {"name": "sim", "node_types": NODE_TYPES}
    values.update(overrides)
    return ClusterSettings(**values).validate()  # type: ignore[arg-type]


def trace_line(i: int, submit: float, *, cores: float = 2, memory_gib: float = 4, wall: float = 300,
               name: str = "align", spot: bool = True) -> dict[str, object]:  # fmt: skip
    return {"id": f"j{i}", "submit": submit, "cores": cores, "memory": int(memory_gib * GiB), "disk": 10 * GiB,
            "wall_time": wall, "preemptible": spot, "name": name}  # fmt: skip


def bursty(n: int = 120) -> list[dict[str, object]]:
    lines = [trace_line(i, (i // 40) * 1200.0 + i, wall=200 + 37 * (i % 11), name=f"step{i % 3}") for i in range(n)]
    lines += [trace_line(n + i, 1000.0 + i, cores=4, memory_gib=60, wall=900, spot=False) for i in range(6)]
    return sorted(lines, key=lambda line: float(line["submit"]))  # type: ignore[arg-type]


def write_trace(path: Path, lines: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_a_bursty_trace_completes_every_job_once_and_reports_every_key(tmp_path: Path) -> None:
    # GIVEN bursts of spot-able jobs and a few big on-demand ones
    trace = read_trace(write_trace(tmp_path / "t.jsonl", bursty()))
    # WHEN replayed through the real decide
    report = simulate(trace, SimOptions(settings=settings())).report
    # THEN every key is there and every job ran exactly once, none killed by scale-in
    assert list(report)[: len(REPORT_KEYS)] == REPORT_KEYS
    assert report["completed"] == report["jobs"] == len(trace)
    assert report["lost"] == report["run_twice"] == report["killed_by_scale_in"] == report["requeued"] == 0
    assert report["nodes_at_end"] == 0
    node_hours = report["node_hours"]
    assert isinstance(node_hours, dict) and set(node_hours) <= {
        "c5.4xlarge|spot", "m5.2xlarge|on-demand", "r5.4xlarge|on-demand"
    }  # fmt: skip
    assert "r5.4xlarge|on-demand" in node_hours  # the 60 GiB on-demand jobs need it
    cost, bound = float(report["cost"]), float(report["lower_bound_cost"])  # type: ignore[arg-type]
    assert 0 < bound < cost
    assert float(report["wait_p50_seconds"]) <= float(report["wait_p95_seconds"]) <= float(report["wait_max_seconds"])  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_report_and_interruptions_lose_nothing(tmp_path: Path) -> None:
    trace = read_trace(write_trace(tmp_path / "t.jsonl", bursty()))
    options = SimOptions(settings=settings(), seed=7, spot_interruptions=2.0, capacity_errors={"c5.4xlarge": 0.5})
    first = simulate(trace, options).report
    second = simulate(trace, options).report
    for report in (first, second):
        report.pop("elapsed_seconds")
        report.pop("cpu_seconds", None)
    assert first == second
    # Two interruptions per spot node-hour: jobs went back to the queue, and still all ran once.
    assert int(first["requeued"]) > 0  # type: ignore[call-overload]
    assert first["completed"] == first["jobs"] and first["lost"] == first["run_twice"] == 0
    assert first["killed_by_scale_in"] == 0
    # Half the c5.4xlarge launches fail: the class falls back to c5a.4xlarge.
    node_hours = first["node_hours"]
    assert isinstance(node_hours, dict) and any(key.startswith("c5a.4xlarge|") for key in node_hours)


def test_lower_bound_prices_each_job_by_its_largest_share_of_the_cheapest_node_it_fits() -> None:
    job = Job(id="a", shape=Shape(resources=Resources(cores=4, memory=2 * GiB, disk=10 * GiB), wall_time=3600.0,
                                  preemptible=True))  # fmt: skip
    on_demand = Job(id="b", shape=Shape(resources=Resources(cores=1, memory=16 * GiB, disk=GiB), wall_time=1800.0))
    s = settings()
    from shared.domain.scaling import offers_for

    offers = offers_for(s)
    volume = 50 * 0.08 / 730  # each node's 50 GiB gp3 root volume, per hour
    # spot c5.4xlarge at $0.30 and its volume: cores 4/16 = 0.25 beats disk 10/50 = 0.2, for an hour
    assert lower_bound_cost([TraceJob(job=job, submit=0)], offers, s) == pytest.approx((0.30 + volume) * 0.25)
    # not preemptible: m5.2xlarge on demand ($0.384) is the cheapest; memory 16/32 = 0.5, for half an hour
    on_demand_bound = lower_bound_cost([TraceJob(job=on_demand, submit=0)], offers, s)
    assert on_demand_bound == pytest.approx((0.384 + volume) * 0.5 * 0.5)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "a", "cores": 1, "memory": 1, "disk": 1, "wall_time": 5}', "t.jsonl:1: each line needs a 'submit'"),
        ('{"id": "a", "submit": -1, "cores": 1, "memory": 1, "disk": 1, "wall_time": 5}', "'submit' must be"),
        ('{"id": "a", "submit": 0, "cores": 1, "memory": 1, "disk": 1, "wall_tme": 5}', "did you mean 'wall_time'"),
        ("{not json", "t.jsonl:1: malformed JSON"),
    ],
)
def test_bad_traces_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(TraceError, match=message.replace("(", r"\(")):
        read_trace(path)


def _shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli.main", "simulate", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--node-types", "c5.4xlarg"], "c5.4xlarg"),
        (["--node-types", NODE_TYPES, "--target-time", "soon"], "--target-time"),
        (["--node-types", NODE_TYPES, "--capacity-errors", "c5.4xlarge=2"], "--capacity-errors"),
        (["--node-types", NODE_TYPES, "--max-nodes", "1,x"], "--max-nodes"),
        (["--node-types", NODE_TYPES, "--node-storage", "5"], "--node-storage: '5' is too small"),
        (["--node-types", NODE_TYPES, "--node-storage", "big"], "--node-storage"),
    ],
)
def test_the_cli_refuses_bad_input_in_one_line_with_status_2_and_writes_nothing(
    tmp_path: Path, extra: list[str], needle: str
) -> None:
    trace = write_trace(tmp_path / "t.jsonl", bursty(10))
    report = tmp_path / "r.json"
    done = _shoal("--trace", str(trace), "--report", str(report), *extra)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and needle in done.stderr and done.stderr.startswith("shoal simulate: ")
    assert not report.exists() and done.stdout == ""


def test_the_cli_writes_the_report_and_the_plot(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", bursty(60))
    report, plot = tmp_path / "out" / "r.json", tmp_path / "out" / "p.png"
    done = _shoal("--trace", str(trace), "--node-types", NODE_TYPES, "--json", "--report", str(report),
                  "--plot", str(plot), "--seed", "3")  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    written = json.loads(report.read_text(encoding="utf-8"))
    assert printed == written and printed["completed"] == 66
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_node_storage_is_the_jobs_disk(tmp_path: Path) -> None:
    # GIVEN 16 one-core jobs of an hour, each needing 10 GiB of disk, submitted at once
    trace = write_trace(tmp_path / "t.jsonl", [trace_line(i, 0.0, cores=1, memory_gib=1, wall=3600) for i in range(16)])

    def run(node_storage: str, *largest: str) -> dict[str, object]:
        done = _shoal("--trace", str(trace), "--node-types", NODE_TYPES, "--target-time", "0",
                      "--node-storage", node_storage, *largest, "--json")  # fmt: skip
        assert done.returncode == 0, done.stderr
        report: dict[str, object] = json.loads(done.stdout)
        return report

    small = run("50", "--max-node-storage", "50")
    large = run("200GiB", "--max-node-storage", "200GiB")
    # THEN a 50 GiB root volume (Toil's default) kept at that holds four of them per c5.4xlarge, 200 GiB all sixteen
    assert (small["peak_nodes"], large["peak_nodes"]) == (4, 1)
    assert (small["peak_volume_gib"], large["peak_volume_gib"]) == (200, 200)
    # AND the lower bound says so: disk is each job's largest share of a 50 GiB node (10/50 > 1/16), cores of 200 GiB
    assert small["lower_bound_by"] == {"cores": 0, "memory": 0, "disk": small["lower_bound_cost"], "accelerators": 0}
    assert large["lower_bound_by"] == {"cores": large["lower_bound_cost"], "memory": 0, "disk": 0, "accelerators": 0}
    # (the node's price: the bid and its 200 GiB volume at $0.08 per GiB-month; the report rounds to 4 places)
    assert float(large["lower_bound_cost"]) == pytest.approx(16 * (0.30 + 200 * 0.08 / 730) / 16, abs=1e-4)  # type: ignore[arg-type]


def test_a_round_grows_the_root_volume_to_what_its_jobs_need(tmp_path: Path) -> None:
    # GIVEN the same 16 jobs, a 50 GiB node storage and the default largest volume (1024 GiB)
    trace = write_trace(tmp_path / "t.jsonl", [trace_line(i, 0.0, cores=1, memory_gib=1, wall=3600) for i in range(16)])
    done = _shoal("--trace", str(trace), "--node-types", NODE_TYPES, "--target-time", "0", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # THEN one c5.4xlarge holds all sixteen: its volume is 16 x 10 GiB + 8 GiB for the system, in 10 GiB steps
    assert report["peak_nodes"] == 1
    assert report["peak_volume_gib"] == 170  # what EBS's regional gp3 storage quota would count
    hours = report["node_hours"]["c5.4xlarge|spot"]
    assert report["cost"] == pytest.approx(hours * (0.30 + 170 * 0.08 / 730), abs=1e-4)
    # AND the lower bound prices each job on the volume where its disk share meets its core share: 160 GiB raw
    assert report["lower_bound_cost"] == pytest.approx(16 * (0.30 + 160 * 0.08 / 730) / 16, abs=1e-4)
    assert report["lower_bound_by"]["disk"] == 0


def test_the_simulator_imports_the_domain_not_adapters_or_services() -> None:
    import ast

    for path in sorted((ROOT / "shared" / "sim").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        shoal = {m for m in modules if m.startswith("shared.")}
        assert all(m.startswith(("shared.domain.", "shared.sim.")) for m in shoal), (path, shoal)
        assert not modules & {"boto3", "botocore", "moto", "threading"}, path


def test_the_waste_says_where_the_money_went(tmp_path: Path) -> None:
    # GIVEN one 2-core job of an hour, alone on a spot c5.4xlarge (its 10 GiB disk is the largest share it uses)
    lines = [trace_line(0, 0.0, wall=3600.0)]
    report = simulate(read_trace(write_trace(tmp_path / "t.jsonl", lines)), SimOptions(settings=settings())).report
    waste = report["waste"]
    assert isinstance(waste, dict)
    # THEN the buckets add up to the cost (within one sample's worth: they are sampled each minute)
    cost = float(report["cost"])  # type: ignore[arg-type]
    assert sum(waste.values()) == pytest.approx(cost, abs=0.30 / 60 * 2)
    # AND the job's share is its disk's share of the node, the rest room with nothing waiting, the boot its own
    spot = next(o for o in offers_for(settings()) if o.spot)
    assert waste["jobs"] == pytest.approx(spot.hourly_price * 10 * GiB / spot.usable.disk, rel=0.05)
    assert waste["room_nothing_queued"] == pytest.approx(spot.hourly_price - waste["jobs"], rel=0.05)
    assert waste["booting"] > 0 and waste["room_while_queued"] == waste["draining_room"] == 0


@pytest.mark.parametrize("gib", [50, 200])
def test_a_nodes_cost_is_its_instance_and_its_root_volume(tmp_path: Path, gib: int) -> None:
    # GIVEN one on-demand job of an hour, on root volumes of 50 or 200 GiB
    lines = [trace_line(0, 0.0, wall=3600.0, spot=False)]
    options = SimOptions(settings=settings(node_types="m5.2xlarge", node_storage=gib * GiB))
    report = simulate(read_trace(write_trace(tmp_path / "t.jsonl", lines)), options).report
    # THEN the run costs its node-hours at the instance's price plus gp3's $0.08 per GiB-month (730 hours)
    hours = report["node_hours"]["m5.2xlarge|on-demand"]  # type: ignore[index]
    per_hour = instance_type("m5.2xlarge").price("us-east-1") + gib * 0.08 / 730
    assert report["cost"] == pytest.approx(hours * per_hour, abs=1e-4)


def test_declared_runtimes_let_the_scaler_plan_a_first_burst_for_its_length(tmp_path: Path) -> None:
    # GIVEN a first burst of 25-minute jobs: no job has ended, so nothing has been learned yet
    trace = read_trace(write_trace(tmp_path / "t.jsonl", [
        trace_line(i, 0.0, cores=4, memory_gib=8, wall=1500, name="call") for i in range(48)
    ]))  # fmt: skip
    # WHEN replayed with the scaler blind to runtimes (Toil's jobs) and told them (Shoal's own job format)
    blind = simulate(trace, SimOptions(settings=settings())).report
    told = simulate(trace, SimOptions(settings=settings(), declared_runtimes=True)).report
    # THEN the report says which, and jobs planned at their declared length wait less than jobs planned at a
    # first guess of a second (which the fleet is sized for until the first of them ends)
    assert blind["declared_runtimes"] is False and told["declared_runtimes"] is True
    assert told["completed"] == blind["completed"] == 48
    assert float(told["wait_max_seconds"]) < float(blind["wait_max_seconds"])  # type: ignore[arg-type]


def test_the_cli_passes_declared_runtimes_on(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "t.jsonl", bursty(20))
    done = _shoal("--trace", str(trace), "--node-types", NODE_TYPES, "--json", "--declared-runtimes")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["declared_runtimes"] is True

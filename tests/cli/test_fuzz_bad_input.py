"""The fuzzing that found issue 13's tracebacks, kept as a test: hostile values in the job format, the
settings and the CLI's flags. Whatever is drawn, the answer is either success or one line on stderr with
exit status 2 and nothing written; never a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.cli import main as cli
from shared.domain.settings import ClusterSettings, SettingsError

GOOD = {"id": "ok", "cores": 1, "memory": "1GiB", "disk": "1GiB", "wall_time": 60}
FIELDS = ("id", "cores", "memory", "disk", "wall_time", "timeout", "accelerators", "max_attempts", "env", "name")

hostile_numbers = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e-320, 1e308, 2**63]),  # 10**5000 (json cannot write it) is in test_bad_input
)
hostile_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["\ud800", "x" * 3000, "1e308TiB", "nan", "inf", "1e400", "-1", ",3", "3,", "1.7", "a\nb", ""]),
    st.builds(lambda n, u: f"{n}{u}", hostile_numbers, st.sampled_from(["", "GiB", "d", "TiB", "m", "parsecs"])),
)
hostile = st.one_of(hostile_numbers, hostile_text, st.none(), st.booleans(), st.lists(hostile_numbers, max_size=3))


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exit_:
            code = int(str(exit_.code))
    return code, err.getvalue()


def assert_ok_or_one_line(code: int, err: str) -> None:
    assert code in (0, 2), err
    if code == 2:
        assert err.count("\n") == 1 and "Traceback" not in err, err


def _encode(obj: object) -> str:
    # json.dumps writes lone surrogates as \ud800 escapes and huge ints as digits, as a hostile file would
    return json.dumps(obj, allow_nan=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELDS), hostile, max_size=3), st.booleans())
def test_any_job_line_plans_or_is_refused_in_one_line(change: dict[str, object], split: bool) -> None:
    line = _encode({**GOOD, **change})
    if split:  # the object broken over two lines, then followed by a good one on the same line
        line = line.replace(",", ",\n", 1) + "," + _encode(GOOD)
    with tempfile.TemporaryDirectory() as directory:
        jobs, assignments = Path(directory) / "jobs.jsonl", Path(directory) / "a.jsonl"
        jobs.write_text(line + "\n", encoding="utf-8", errors="surrogatepass")
        code, err = run(["plan", "--jobs", str(jobs), "--node-types", "m5.large", "--assignments", str(assignments)])
        assert_ok_or_one_line(code, err)
        assert assignments.exists() == (code == 0)


PLAN_FLAGS = ("--target-time", "--node-storage", "--max-node-storage", "--min-nodes", "--max-nodes")


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(PLAN_FLAGS), hostile_text, min_size=1, max_size=2))
def test_any_plan_flag_is_used_or_refused_in_one_line(flags: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        jobs = Path(directory) / "jobs.jsonl"
        jobs.write_text(_encode(GOOD) + "\n")
        argv = ["plan", "--jobs", str(jobs), "--node-types", "m5.large"]
        for flag, value in flags.items():
            argv.append(f"{flag}={value}")
        code, err = run(argv)
        assert_ok_or_one_line(code, err)


SETTING_KEYS = (
    "min_nodes",
    "max_nodes",
    "node_storage",
    "warm_pool_size",
    "target_time",
    "beta_inertia",
    "scale_interval",
    "name",
    "zone",
    "preemptible_compensation",
    "worker_network",
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(SETTING_KEYS), hostile, min_size=1, max_size=3))
def test_any_settings_are_valid_or_one_settings_error(change: dict[str, object]) -> None:
    values = {"name": "x", "node_types": "m5.large,c5.large", **change}
    try:
        parsed = ClusterSettings.from_mapping(values)
    except SettingsError as error:
        message = str(error)
        assert "\n" not in message
        return
    # THEN what was accepted is whole, finite and means what was written
    assert all(isinstance(n, int) for n in (*parsed.min_nodes, *parsed.max_nodes, parsed.warm_pool_size))
    assert math.isfinite(parsed.target_time) and math.isfinite(parsed.beta_inertia)
    assert ClusterSettings.from_mapping(parsed.to_mapping()) == parsed

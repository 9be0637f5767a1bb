"""``read_plan_jobs`` (the fast reader of ``shoal plan``) accepts, reads and refuses exactly what ``read_jobs``
does: the same ids, shapes and counts, or the same one-line error naming the file and the line."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.cli.jobs_file import JobsFileError, PlanJobs, read_jobs, read_plan_jobs
from shared.domain.jobs import Job, histogram

plain_values = {
    "cores": st.one_of(st.integers(-2, 200_000), st.floats(allow_nan=True, allow_infinity=True)),
    "memory": st.one_of(
        st.integers(-1, 2**60 + 5),
        st.floats(0, 1e12),
        st.sampled_from(["4GiB", "1.5G", True, -1, 2**53, 2**53 + 1, 2**60 + 1]),
    ),
    "disk": st.one_of(st.integers(0, 2**54), st.sampled_from(["10GiB", 1.5, None])),
    "wall_time": st.one_of(st.integers(-1, 10**9), st.floats(allow_nan=True), st.sampled_from(["30m", "1h", 0])),
    "preemptible": st.one_of(st.booleans(), st.sampled_from([0, 1, None, "yes"])),
    "accelerators": st.one_of(st.integers(0, 4), st.sampled_from([True, 1.0, "1", -1])),
    "id": st.one_of(st.text(max_size=8), st.sampled_from(["a\tb", "x" * 600, "\u00e9t\u00e9", "\ud800"])),
    "name": st.one_of(st.text(max_size=5), st.none()),
    "command": st.sampled_from(["true", 3]),
}
base = st.fixed_dictionaries(
    {
        "id": st.text("abcxyz-0123456789", min_size=1, max_size=8),
        "cores": st.integers(1, 8),
        "memory": st.integers(0, 2**34),
        "disk": st.integers(0, 2**34),
        "wall_time": st.floats(1, 7200),
    }
)
# A valid job with at most two fields drawn from hostile values: each odd value is met on its own.
one_field = st.sampled_from(sorted(plain_values)).flatmap(lambda k: plain_values[k].map(lambda v: {k: v}))
odd = st.builds(lambda a, b: {**a, **b}, one_field, st.one_of(st.just({}), one_field))
job = st.builds(lambda good, changes: {**good, **changes}, base, odd)
line = st.one_of(
    job.map(json.dumps),
    st.sampled_from(["", "# a comment", "  ", '{"id": "a"', '{"id": "x", "cores": 1}  {"id": "y"}', "[1]", "\ufeff{}"]),
)


def read_both(text: str) -> tuple[list[Job] | str, PlanJobs | str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "jobs.jsonl"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        slow: list[Job] | str
        fast: PlanJobs | str
        try:
            slow = read_jobs(path)
        except JobsFileError as error:
            slow = str(error)
        try:
            fast = read_plan_jobs(path)
        except JobsFileError as error:
            fast = str(error)
        return slow, fast


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(one=job)
def test_the_fast_reader_reads_each_job_as_read_jobs_does(one: dict[str, object]) -> None:
    agree(json.dumps(one))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(line, max_size=12))
def test_the_fast_reader_agrees_with_read_jobs_on_whole_files(lines: list[str]) -> None:
    agree("\n".join(lines))


def agree(text: str) -> None:
    slow, fast = read_both(text)
    if isinstance(slow, str):
        assert fast == slow
        return
    assert not isinstance(fast, str), fast
    assert fast.ids == [j.id for j in slow]
    assert fast.shapes == [j.shape for j in slow]
    assert fast.demand == histogram(slow)
    # Equal shapes are one object, so the plan's histogram hashes each once.
    assert len({id(s) for s in fast.shapes}) == len(fast.demand)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"id":"a","cores":1,"memory":1,"disk":1,"wall_time":60}\n{"id":"a","cores":1,"memory":1,"disk":1,'
         '"wall_time":60}', "jobs.jsonl:2: job id 'a' was already used on line 1"),
        ('{"id":"a","cores":0,"memory":1,"disk":1,"wall_time":60}', "jobs.jsonl:1: field 'cores' must be positive"),
        ('{"id":"a","cores":1,"memory":1,"disk":1,"wall_time":60} {"id":"b"}', "jobs.jsonl:1: malformed JSON"),
        # found by the CLI fuzz test: a 300-digit accelerator count crashed the unplaceable reason's formatting
        ('{"id":"a","cores":1,"memory":1,"disk":1,"wall_time":60,"accelerators":' + "9" * 300 + "}",
         "jobs.jsonl:1: field 'accelerators' must be a whole number from 0 to 1024"),
    ],
)  # fmt: skip
def test_bad_lines_name_the_line(text: str, error: str) -> None:
    slow, fast = read_both(text)
    assert isinstance(fast, str) and error in fast and fast == slow


def test_the_counts_read_are_a_mapping_of_each_shape_to_its_jobs(tmp_path: Path) -> None:
    # GIVEN three jobs of one shape and one of another (a size with a unit among them)
    lines = [
        {"id": f"a{i}", "cores": 1, "memory": "2 GiB", "disk": 2**30, "wall_time": 60, "preemptible": True}
        for i in range(3)
    ] + [{"id": "b", "cores": 4, "memory": 2**33, "disk": 2**30, "wall_time": 600}]
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps(job) + "\n" for job in lines))
    expected = histogram(read_jobs(path))
    # WHEN read by the fast reader
    demand = read_plan_jobs(path).demand
    # THEN it looks up, iterates, sizes and compares as the dict of counts does
    assert len(demand) == 2
    assert list(demand) == list(expected)
    assert dict(demand.items()) == dict(demand) == expected
    assert all(demand[shape] == count for shape, count in expected.items())
    assert demand == expected

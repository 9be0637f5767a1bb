import pytest

from shared.domain.jobs import Job, JobSpecError, histogram, parse_job

GOOD = {"id": "j1", "cores": 2, "memory": 4294967296, "disk": "10GiB", "preemptible": True, "wall_time": 600}


def test_the_documented_example_parses() -> None:
    job = parse_job({**GOOD, "accelerators": 0})
    assert job.id == "j1"
    assert job.shape.resources.memory == 4 * 2**30
    assert job.shape.resources.disk == 10 * 2**30
    assert job.shape.preemptible is True
    assert job.shape.resources.accelerators == 0


def test_round_trip_through_to_dict() -> None:
    job = parse_job({**GOOD, "command": "echo hi", "env": {"A": "1"}, "max_attempts": 5, "timeout": "1h"})
    assert parse_job(job.to_dict()) == job


def test_equal_jobs_have_equal_dicts_however_built() -> None:
    # GIVEN a job built in code with whole numbers, and the same job read back from its message form
    from shared.domain.jobs import Shape
    from shared.domain.resources import Resources

    built = Job(id="j", shape=Shape(resources=Resources(cores=1, memory=1, disk=1), wall_time=60), timeout=90)
    parsed = parse_job(built.to_dict())
    # THEN both describe themselves identically (the job store compares stored jobs as text)
    assert built == parsed
    assert built.to_dict() == parsed.to_dict()
    assert repr(built.to_dict()) == repr(parsed.to_dict())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"memory": None}, "missing field 'memory'"),
        ({"memory": -1}, "field 'memory' must not be negative"),
        ({"disk": "10 furlongs"}, "field 'disk': unknown unit 'furlongs'"),
        ({"cores": 0}, "field 'cores' must be positive"),
        ({"cores": "two"}, "field 'cores' must be a number"),
        ({"id": 7}, "field 'id' must be a non-empty string"),
        ({"wall_time": 0}, "field 'wall_time' must be a positive"),
        ({"preemptible": "yes"}, "field 'preemptible' must be true or false"),
        ({"accelerators": -1}, "field 'accelerators' must be a whole number"),
        ({"memroy": 1}, "unknown field 'memroy'; did you mean 'memory'"),
        ({"max_attempts": 0}, "field 'max_attempts' must be a whole number from 1 to 100"),
    ],
)
def test_bad_jobs_name_the_field(change: dict[str, object], message: str) -> None:
    # GIVEN a job with one bad field
    obj = {**GOOD, **change}
    obj = {k: v for k, v in obj.items() if v is not None}
    # WHEN it is parsed  THEN the error names the field
    with pytest.raises(JobSpecError, match=message):
        parse_job(obj)


def test_not_an_object() -> None:
    with pytest.raises(JobSpecError, match="must be a JSON object"):
        parse_job([1, 2])


def test_histogram_counts_shapes_not_jobs() -> None:
    jobs: list[Job] = [parse_job({**GOOD, "id": f"j{i}", "cores": 1 + i % 2}) for i in range(10)]
    counts = histogram(jobs)
    assert sorted(counts.values()) == [5, 5]

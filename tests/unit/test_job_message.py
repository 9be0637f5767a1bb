"""The versioned job message: what the submitter encodes, the worker decodes, and why a bad one is refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.jobs import Job, parse_job
from shared.services.job_message import MESSAGE_VERSION, JobMessageError, decode_job_message, encode_job_message

JOB = parse_job(
    {
        "id": "align-7",
        "cores": 4,
        "memory": "16GiB",
        "disk": "50GiB",
        "wall_time": "1h",
        "preemptible": True,
        "command": "bwa mem ref.fa reads.fq",
        "image": "quay.io/biocontainers/bwa:0.7.17",
        "name": "align",
        "env": {"SAMPLE": "NA12878"},
        "max_attempts": 5,
        "timeout": "2h",
    }
)


def test_encode_writes_version_1_and_the_canonical_job() -> None:
    # GIVEN a job  WHEN it is encoded  THEN the body is {"v": 1, "job": Job.to_dict()}
    body = json.loads(encode_job_message(JOB))
    assert body == {"v": 1, "job": JOB.to_dict()}
    assert MESSAGE_VERSION == 1


def test_decode_reads_back_what_encode_wrote() -> None:
    # GIVEN an encoded job  WHEN decoded  THEN it is the same job
    assert decode_job_message(encode_job_message(JOB)) == JOB


def test_decode_ignores_fields_a_newer_producer_added() -> None:
    # GIVEN a version-1 message with an extra top-level field  WHEN decoded  THEN the job is read
    body = json.dumps({"v": 1, "job": JOB.to_dict(), "trace": "abc"})
    assert decode_job_message(body) == JOB


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", r"^the message body is not JSON \(Expecting value at column 1\)$"),
        ("[1, 2]", r"^a job message must be a JSON object, got list$"),
        ('{"job": {}}', r"^the message has no version field 'v'"),
        ('{"v": 2, "job": {}}', r"^unknown message version 2; this worker reads version 1$"),
        ('{"v": "1", "job": {}}', r"^unknown message version '1'"),
        ('{"v": true, "job": {}}', r"^unknown message version True"),
        ('{"v": 1}', r"^the message has no field 'job'$"),
        ('{"v": 1, "job": "align"}', r"^invalid job: a job must be a JSON object, got str$"),
        (
            '{"v": 1, "job": {"id": "j1", "cores": 1, "memory": "1GiB", "disk": "1GiB"}}',
            r"^invalid job 'j1': missing field 'wall_time'",
        ),
        (
            '{"v": 1, "job": {"id": "j2", "cores": -1, "memory": "1GiB", "disk": "1GiB", "wall_time": 60}}',
            r"^invalid job 'j2': field 'cores' must be positive",
        ),
        (
            '{"v": 1, "job": {"id": "j3", "cpus": 1}}',
            r"^invalid job 'j3': unknown field 'cpus'",
        ),
    ],
)
def test_decode_refuses_bad_messages_with_a_one_line_reason(body: str, reason: str) -> None:
    # GIVEN a malformed body  WHEN decoded  THEN JobMessageError says why, on one line
    with pytest.raises(JobMessageError, match=reason) as raised:
        decode_job_message(body)
    assert "\n" not in str(raised.value)
    assert isinstance(raised.value, ValueError)  # the worker catches ValueError


jobs = st.builds(
    lambda i, cores, memory, disk, accelerators, wall, spot, name, env, attempts, timeout: parse_job(
        {
            "id": i,
            "cores": cores,
            "memory": memory,
            "disk": disk,
            "accelerators": accelerators,
            "wall_time": wall,
            "preemptible": spot,
            **({"name": name} if name else {}),
            **({"env": env} if env else {}),
            "max_attempts": attempts,
            **({"timeout": timeout} if timeout else {}),
        }
    ),
    st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=40),  # ids have no control chars
    st.floats(min_value=0.01, max_value=512, allow_nan=False),
    st.integers(min_value=0, max_value=2**42),
    st.integers(min_value=0, max_value=2**44),
    st.integers(min_value=0, max_value=8),
    st.floats(min_value=1, max_value=7 * 86400, allow_nan=False),
    st.booleans(),
    st.one_of(st.none(), st.text(min_size=1, max_size=20)),
    st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=3),
    st.integers(min_value=1, max_value=10),
    st.one_of(st.none(), st.floats(min_value=1, max_value=86400, allow_nan=False)),
)


@given(jobs)
def test_every_job_survives_the_round_trip(job: Job) -> None:
    # GIVEN any valid job  WHEN encoded and decoded  THEN it is unchanged
    assert decode_job_message(encode_job_message(job)) == job

"""The job queue's message format, versioned: ``{"v": 1, "job": <Job.to_dict()>}``.

Both ends use these two functions: the submitter encodes, the worker decodes (and dead-letters a body
that does not decode, with the one-line reason from ``JobMessageError``). A new incompatible format
gets a new ``v``; a reader refuses versions it does not know rather than guess. Keys beyond ``v`` and
``job`` are ignored, so a version may grow optional fields without breaking older workers.
"""

from __future__ import annotations

import json

from shared.domain.jobs import Job, JobSpecError, describe_json_error, parse_job

MESSAGE_VERSION = 1


class JobMessageError(ValueError):
    """A queue message that is not a job this worker can run; the message says why in one line."""


def encode_job_message(job: Job) -> str:
    return json.dumps({"v": MESSAGE_VERSION, "job": job.to_dict()}, sort_keys=True, separators=(",", ":"))


def decode_job_message(body: str) -> Job:
    try:
        message = json.loads(body)
    except json.JSONDecodeError as error:
        raise JobMessageError(f"the message body is not JSON ({describe_json_error(error)})") from None
    except ValueError as error:  # an integer of more than 4300 digits
        raise JobMessageError(f"the message body is not JSON Shoal can read ({error})") from None
    if not isinstance(message, dict):
        raise JobMessageError(f"a job message must be a JSON object, got {type(message).__name__}")
    if "v" not in message:
        raise JobMessageError('the message has no version field \'v\'; expected {"v": 1, "job": {...}}')
    version = message["v"]
    if version != MESSAGE_VERSION or isinstance(version, bool):
        raise JobMessageError(f"unknown message version {version!r}; this worker reads version {MESSAGE_VERSION}")
    if "job" not in message:
        raise JobMessageError("the message has no field 'job'")
    job = message["job"]
    try:
        return parse_job(job)
    except JobSpecError as error:
        job_id = job.get("id") if isinstance(job, dict) else None
        named = f" {job_id[:64]!a}" if isinstance(job_id, str) and job_id else ""
        raise JobMessageError(f"invalid job{named}: {error}") from None

"""The COMMAND of the ``aws:`` job store test, run by ``shoal local run`` against the local cluster.

1. The Python example (``examples/toil/primes.py``) with an S3 job store, ``aws:us-east-1:NAME`` (the bucket
   ``NAME--toil`` in the local cloud's S3), kept after the run (``--clean never``) so it can be read.
2. The leader's environment as Toil saved it there (``environment.pickle``, what every worker applies):
   which ``AWS_*`` variables it holds.
3. ``toil clean`` removes the job store; the bucket must be gone.

What happened goes to ``WORKDIR/driver.json`` for the test to judge; the exit status is the workflow's.
Run as ``python aws_store.py WORKDIR NAME``.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import boto3
from toil.common import Toil

PRIMES = Path(__file__).resolve().parents[3] / "examples" / "toil" / "primes.py"
REGION = "us-east-1"


def main() -> int:
    workdir, name = Path(sys.argv[1]), sys.argv[2]
    locator = f"aws:{REGION}:{name}"
    workflow = subprocess.run(
        [sys.executable, str(PRIMES), locator, "--batchSystem", "shoal", "--limit", "60000", "--chunks", "6",
         "--out", str(workdir / "primes.txt"), "--clean", "never", "--logLevel", "WARNING"],
        check=False,
    )  # fmt: skip
    report: dict[str, object] = {"workflow_status": workflow.returncode}
    with Toil.resumeJobStore(locator).read_shared_file_stream("environment.pickle") as stream:
        environment = pickle.load(stream)  # the job store this run just wrote
    report["saved_aws_variables"] = sorted(key for key in environment if key.startswith("AWS_"))
    report["clean_status"] = subprocess.run(["toil", "clean", locator], check=False).returncode
    buckets = boto3.client("s3", region_name=REGION).list_buckets()["Buckets"]
    report["buckets_left"] = [b["Name"] for b in buckets if b["Name"].startswith(name)]
    (workdir / "driver.json").write_text(json.dumps(report), encoding="utf-8")
    return workflow.returncode


if __name__ == "__main__":
    sys.exit(main())

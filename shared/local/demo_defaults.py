"""The demo's defaults, in a module that imports nothing heavy.

``shoal demo --help`` (and every other command, whose parser is built alongside the demo's) reads these;
``shared.local.demo`` needs moto, boto3 and matplotlib, so its defaults live here and it imports them.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_NODE_TYPES = "c5.4xlarge/c5a.4xlarge:0.42,m5.2xlarge,r5.2xlarge"
DEFAULT_WORKLOAD = REPO_ROOT / "examples" / "burst.jsonl"
DEFAULT_OUT = REPO_ROOT / "out" / "demo"

"""``shoal node-types``: the instance catalog the scaler plans with."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from shared.domain.catalog import CATALOG, DEFAULT_NODE_STORAGE, REGIONS, root_volume_price
from shared.domain.units import GiB, format_size


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("node-types", help="list the instance types Shoal knows, with usable capacity")
    parser.add_argument("--region", default="us-west-2", choices=REGIONS)
    parser.add_argument("--family", help="only this family, e.g. c5")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = sys.stdout if out is None else out  # read per call: a default would bind the stdout of import time
    out.write(
        f"{'type':<16} {'vCPU':>5} {'memory':>10} {'GPU':>4} {'usable memory':>14} {'usable disk':>12} {'$/h':>9}\n"
    )
    for name, itype in sorted(CATALOG.items(), key=lambda kv: (kv[0].split(".")[0], kv[1].vcpus, kv[0])):
        if args.family and name.split(".")[0] != args.family:
            continue
        usable = itype.usable(DEFAULT_NODE_STORAGE)
        out.write(
            f"{name:<16} {itype.vcpus:>5} {format_size(itype.memory):>10} {itype.gpus:>4} "
            f"{format_size(usable.memory):>14} {format_size(usable.disk):>12} {itype.price(args.region):>9.4f}\n"
        )
    volume = root_volume_price(DEFAULT_NODE_STORAGE, args.region)
    out.write(
        f"\n$/h is the instance's on-demand price; each node also pays for its gp3 root volume,\n"
        f"${volume:.4f}/h at {DEFAULT_NODE_STORAGE // GiB} GiB (--nodeStorage; without an instance store, the usable "
        "disk above)\n"
    )
    return 0

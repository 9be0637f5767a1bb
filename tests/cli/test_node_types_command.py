"""``shoal node-types``: the catalog's rows, and what a node pays beside its instance."""

from __future__ import annotations

import argparse
import io

from shared.cli.node_types_cmd import run


def test_the_listing_prices_the_instance_and_names_the_root_volume_beside_it() -> None:
    # WHEN the c5 family is listed in us-west-2
    out = io.StringIO()
    assert run(argparse.Namespace(region="us-west-2", family="c5"), out) == 0
    lines = out.getvalue().splitlines()
    # THEN each row is a c5 type at its on-demand price, and the last line adds the 50 GiB gp3 root volume's price
    row = next(line for line in lines if line.startswith("c5.4xlarge "))
    assert row.split()[-1] == "0.6800"
    assert all(line.startswith("c5.") for line in lines[1:-3])
    assert lines[-2] == "$/h is the instance's on-demand price; each node also pays for its gp3 root volume,"
    assert lines[-1].startswith(f"${50 * 0.08 / 730:.4f}/h at 50 GiB (--nodeStorage")

#!/usr/bin/env python3
"""The CDK app: one Shoal cluster stack from ``shoal.toml`` (or ``-c settings=PATH``) and ``-c`` overrides.

``cdk synth`` / ``make synth`` run this file (cdk.json). A bad setting stops synthesis with one line on
stderr naming it, and exit status 2, before anything is synthesized.
"""

from __future__ import annotations

import sys

from aws_cdk import App

from cdk.stack import build_app
from shared.domain.settings import SettingsError

EXIT_BAD_SETTINGS = 2


def main() -> int:
    app = App()
    try:
        build_app(app)
    except SettingsError as error:
        print(f"shoal: error: {error}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())

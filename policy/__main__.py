"""Entry point of the convex-selfhost policy pack.

Run with: pulumi preview --policy-pack policy

This is the only place that instantiates PolicyPack (PolicyPack() starts the
analyzer gRPC server and blocks), so convex_policies stays importable from tests.
"""

import os
import sys

from pulumi_policy import EnforcementLevel, PolicyPack

# pulumi runs this file with runpy.run_path("."), which already puts this
# directory on sys.path; keep it explicit so `python policy/__main__.py` works too.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from convex_policies import ALL_POLICIES  # noqa: E402  pylint: disable=wrong-import-position

PolicyPack(
    name="convex-selfhost",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=list(ALL_POLICIES),
)

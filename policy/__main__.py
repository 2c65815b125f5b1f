"""Entry point of the convex-selfhost policy pack.

Run with: pulumi preview --policy-pack policy

This is the only place that instantiates PolicyPack (PolicyPack() starts the
analyzer gRPC server and blocks), so convex_policies stays importable from tests.
"""

import os
import sys

from pulumi_policy import EnforcementLevel, PolicyPack

# The pack lives inside the project and imports its modules as `policy.*` (and the rules
# as `components.rules`), so the project's root goes on sys.path: pulumi runs this file
# with runpy.run_path("."), which puts only this directory there.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from policy.convex_policies import ALL_POLICIES  # noqa: E402  pylint: disable=wrong-import-position

PolicyPack(
    name="convex-selfhost",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=list(ALL_POLICIES),
)

"""The Pulumi SDK's own debug lines, which the CLI shows only with `pulumi up --debug`.

The Python SDK reports about five debug lines per resource ("registering resource ...",
"resource registration successful ..."), each a blocking call from the program to the
engine, made whether or not anyone looks at them: on an unchanged `up` of ten deployments
that was about 500 calls, some 0.15 s of the program's time and as much of the engine's
(measured with py-spy and per-process CPU; README, Performance). The program drops them,
and only them: warnings, errors and everything the engine and providers log are untouched.
CONVEX_SELFHOST_SDK_DEBUG=1 keeps them, for `pulumi up --debug` when debugging the SDK.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

import pulumi

ENV_VAR = "CONVEX_SELFHOST_SDK_DEBUG"


def _dropped(*_args, **_kwargs) -> None:
    """Stands in for pulumi.log.debug: the message goes nowhere."""


def drop_sdk_debug_lines(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Make pulumi.log.debug (which the SDK's modules call through the module) a no-op
    unless CONVEX_SELFHOST_SDK_DEBUG=1; True when the lines are dropped."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR, "").strip() == "1":
        return False
    pulumi.log.debug = _dropped
    return True

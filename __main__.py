"""convex-selfhost: a self-hosted Convex deployment per stack.

Read the stack's settings (all errors at once), describe each deployment independently of
where it runs (components/core), let the target build its resources (components/docker,
components/host or components/kubernetes), and export what users and CI need. Secrets among
the outputs stay Pulumi secrets.
"""

import importlib

import pulumi

from components.core.keys import OUTPUTS
from components.core.spec import describe_all
from components.sdk_debug import drop_sdk_debug_lines
from components.settings import load_settings

# The SDK's per-resource debug lines cost a blocking engine call each (components/sdk_debug.py).
drop_sdk_debug_lines()
settings = load_settings()
for warning in settings.warnings:
    pulumi.log.warn(warning)

# Only the chosen target's modules (and its provider SDK: pulumi_docker, pulumi_command or
# pulumi_kubernetes) are imported: `pulumi` starts a fresh interpreter for every run, and
# imports are most of the program's own time.
target = importlib.import_module(f"components.{settings.target}.stack")
deployments = target.deploy(settings, describe_all(settings))

for output_name, attribute in OUTPUTS.items():
    if settings.multi:
        # One map per output, keyed by deployment name; a map holding any secret value
        # is secret as a whole.
        pulumi.export(output_name, pulumi.Output.all(
            **{key: getattr(d, attribute) for key, d in deployments.items()}))
    else:
        (only,) = deployments.values()
        pulumi.export(output_name, getattr(only, attribute))

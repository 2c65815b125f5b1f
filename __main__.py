"""convex-selfhost: a self-hosted Convex deployment per stack.

Read the stack's settings (all errors at once), describe each deployment independently of
where it runs (components/core), let the target build its resources (components/docker or
components/host), and export what users and CI need. Secrets among the outputs stay Pulumi secrets.
"""

import pulumi

from components.core.keys import OUTPUTS
from components.core.spec import describe_all
from components.settings import load_settings

settings = load_settings()
for warning in settings.warnings:
    pulumi.log.warn(warning)

# Only the stack's own target is imported (pulumi_command, pulumi_docker): `pulumi` starts
# a fresh interpreter for every run, and imports are most of the program's own time.
if settings.target == "host":
    from components.host import stack as target
else:
    from components.docker import stack as target
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

"""convex-selfhost: a self-hosted Convex deployment per stack.

Read the stack's settings (all errors at once), declare the deployments, export what
users and CI need. Secrets among the outputs stay Pulumi secrets.
"""

import pulumi

from components.docker import engine, port_check
from components.docker.deployment import ConvexDeployment, DeploymentArgs
from components.docker.images import ConvexImages, ImageSet
from components.settings import ConfigError, load_settings

OUTPUTS = {
    "backendUrl": "backend_url",
    "siteUrl": "site_url",
    "dashboardUrl": "dashboard_url",
    "instanceName": "instance_name",
    "instanceSecret": "instance_secret",
    "adminKey": "admin_key",
    "readOnlyAdminKey": "read_only_admin_key",
    "envLocal": "env_local",
}

settings = load_settings()
for warning in settings.warnings:
    pulumi.log.warn(warning)

# Before anything is created: a host port that another container or process holds.
port_problems = port_check.check(settings, settings.docker_host)
if port_problems:
    raise ConfigError(settings.stack, port_problems)

images = ConvexImages("images", ImageSet(
    backend=settings.backend_image,
    dashboard=settings.dashboard_image if settings.dashboard else None,
    postgres=(settings.database.postgres_image
              if settings.database.kind == "provisioned-postgres" else None),
    caddy=settings.tls.image if settings.tls else None,
    python=settings.backups.image if settings.backups else None,
))
features = engine.detect(settings.docker_host)
deployments = {
    d.key: ConvexDeployment(d.key, DeploymentArgs(settings, d, images, features))
    for d in settings.deployments
}

for output_name, attribute in OUTPUTS.items():
    if settings.multi:
        # One map per output, keyed by deployment name; a map holding any secret value
        # is secret as a whole.
        pulumi.export(output_name, pulumi.Output.all(
            **{key: getattr(d, attribute) for key, d in deployments.items()}))
    else:
        (only,) = deployments.values()
        pulumi.export(output_name, getattr(only, attribute))

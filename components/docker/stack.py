"""The Docker target for a whole stack: images pulled once, then one ConvexDeployment per
deployment spec, on the engine the docker provider talks to."""

from __future__ import annotations

from typing import Sequence

from components.core.spec import DeploymentSpec
from components.docker import engine, port_check
from components.docker.deployment import ConvexDeployment, DeploymentArgs
from components.docker.images import ConvexImages, ImageSet
from components.docker.mapping import DockerTarget
from components.settings import ConfigError, StackSettings


def deploy(settings: StackSettings,
           specs: Sequence[DeploymentSpec]) -> dict[str, ConvexDeployment]:
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
    target = DockerTarget(engine.detect(settings.docker_host), settings.docker_host)
    return {spec.key: ConvexDeployment(spec.key, DeploymentArgs(spec, images, target))
            for spec in specs}

"""A program that hands ConvexDeployment an explicit Docker provider (e.g. a remote host)."""

import pulumi
import pulumi_docker as docker

from components.core.spec import describe_all
from components.docker.deployment import ConvexDeployment, DeploymentArgs
from components.docker.images import ConvexImages, ImageSet
from components.settings import load_settings

settings = load_settings()
remote = docker.Provider("remote-host", host="ssh://deploy@convex.example.com")
images = ConvexImages("images", ImageSet(settings.backend_image, settings.dashboard_image),
                      opts=pulumi.ResourceOptions(providers=[remote]))
for spec in describe_all(settings):
    created = ConvexDeployment(spec.key, DeploymentArgs(spec, images),
                               opts=pulumi.ResourceOptions(providers=[remote]))
    pulumi.export("backendUrl", created.backend_url)

"""A program that hands ConvexDeployment an explicit Docker provider (e.g. a remote host)."""

import pulumi
import pulumi_docker as docker

from components.docker.deployment import ConvexDeployment, DeploymentArgs
from components.docker.images import ConvexImages, ImageSet
from components.settings import load_settings

settings = load_settings()
remote = docker.Provider("remote-host", host="ssh://deploy@convex.example.com")
images = ConvexImages("images", ImageSet(settings.backend_image, settings.dashboard_image),
                      opts=pulumi.ResourceOptions(providers=[remote]))
for deployment in settings.deployments:
    created = ConvexDeployment(deployment.key, DeploymentArgs(settings, deployment, images),
                               opts=pulumi.ResourceOptions(providers=[remote]))
    pulumi.export("backendUrl", created.backend_url)

"""ConvexDashboard: the dashboard container, started once the backend is healthy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_docker as docker

from components import docker_common
from components.settings import DeploymentSettings, StackSettings

DASHBOARD_PORT = 6791
NETWORK_ALIAS = "dashboard"


@dataclass(frozen=True)
class DashboardArgs:
    settings: StackSettings
    deployment: DeploymentSettings
    image_id: pulumi.Input[str]  # the pulled dashboard image (ConvexImages)
    network_name: pulumi.Input[str]
    backend: pulumi.Resource  # the backend container; created healthy (wait=True)


def build_dashboard_env(settings: StackSettings, deployment: DeploymentSettings) -> list[str]:
    # The dashboard runs in the user's browser and reaches the backend through its public
    # URL. NEXT_PUBLIC_ADMIN_KEY is never set: it would be sent to every visitor.
    env = [f"NEXT_PUBLIC_DEPLOYMENT_URL={deployment.cloud_origin}"]
    if settings.dashboard_load_monaco_internally:
        env.append("NEXT_PUBLIC_LOAD_MONACO_INTERNALLY=true")
    return env


class ConvexDashboard(pulumi.ComponentResource):
    """The Convex dashboard, same version as the backend."""

    def __init__(self, name: str, args: DashboardArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:Dashboard", name, None, opts)
        settings, deployment = args.settings, args.deployment
        instance = deployment.instance_name

        self.container = docker.Container(
            f"{name}-container",
            name=f"{instance}-dashboard",
            image=args.image_id,
            envs=build_dashboard_env(settings, deployment),
            ports=[docker_common.published_port(DASHBOARD_PORT, deployment.dashboard_port,
                                                settings.bind_address)],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(
                name=args.network_name, aliases=[NETWORK_ALIAS])],
            stop_signal="SIGINT",
            stop_timeout=10,
            destroy_grace_seconds=10,
            labels=docker_common.labels(docker.ContainerLabelArgs, settings.stack, instance,
                                        "dashboard"),
            **docker_common.runtime_options(settings.containers),
            opts=docker_common.container_options(self, [args.backend]),
        )
        self.url = deployment.dashboard_url
        self.register_outputs({"containerName": self.container.name, "url": self.url})

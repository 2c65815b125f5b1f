"""ConvexDashboard: the dashboard container and a gate on its health.

Upstream's compose file starts the dashboard after a healthy backend, but the dashboard
does not need one: its Next.js server (`node server.js`) reads NEXT_PUBLIC_DEPLOYMENT_URL
from its environment and renders pages without calling the backend (`_app.tsx`
getInitialProps); the user's browser talks to the backend. So it starts beside the
backend, and `depends_on` is for programs that want an order anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_docker as docker

from components.docker import docker_common
from components.docker.docker_common import ContainerLimits
from components.docker.health import HealthGate

DASHBOARD_PORT = 6791
NETWORK_ALIAS = "dashboard"
# `/` is rendered on the server and recent images answer it with 500 in some setups
# (get-convex/convex-backend#553); a static file of the image's public/ directory is
# served by Next's standalone server whenever the server is up. The image has curl.
HEALTH_PATH = "/favicon.ico"
HEALTH_TEST = ["CMD", "curl", "-fsS", "-o", "/dev/null",
               f"http://127.0.0.1:{DASHBOARD_PORT}{HEALTH_PATH}"]
HEALTH_INTERVAL = 10
START_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class DashboardArgs:
    instance_name: str
    image: pulumi.Input[str]
    network_name: pulumi.Input[str]
    deployment_url: str  # the backend's public URL, opened by the user's browser
    port: int = DASHBOARD_PORT  # host port
    bind_address: str = "127.0.0.1"
    limits: ContainerLimits = field(default_factory=ContainerLimits)
    stack: str = ""
    docker_host: str = ""
    depends_on: Sequence[pulumi.Resource] = ()  # e.g. the backend's health gate


def dashboard_env(deployment_url: str) -> list[str]:
    # The dashboard runs in the user's browser and reaches the backend through its public
    # URL. NEXT_PUBLIC_ADMIN_KEY is never set: it would be sent to every visitor.
    return [f"NEXT_PUBLIC_DEPLOYMENT_URL={deployment_url}"]


class ConvexDashboard(pulumi.ComponentResource):
    """The Convex dashboard (same version as the backend), healthy before `up` ends."""

    container: docker.Container
    healthy: HealthGate

    def __init__(self, name: str, args: DashboardArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:Dashboard", name, None, opts)
        environment = dashboard_env(args.deployment_url)
        labels = docker_common.container_labels(args.stack, args.instance_name, "dashboard",
                                                args.limits)
        self.container = docker.Container(
            f"{name}-container",
            name=f"{args.instance_name}-dashboard",
            image=args.image,
            envs=environment,
            ports=[docker_common.published_port(DASHBOARD_PORT, args.port, args.bind_address)],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(
                name=args.network_name, aliases=[NETWORK_ALIAS])],
            healthcheck=docker_common.healthcheck(
                HEALTH_TEST, args.limits,
                interval=HEALTH_INTERVAL, timeout=5, retries=3, start_period=START_TIMEOUT_SECONDS),
            stop_signal="SIGINT",
            stop_timeout=10,
            destroy_grace_seconds=10,
            labels=labels,
            **docker_common.runtime_options(args.limits),
            opts=docker_common.container_options(self, args.depends_on),
        )
        self.healthy = HealthGate(f"{name}-healthy", self.container, START_TIMEOUT_SECONDS,
                                  args.docker_host, pulumi.ResourceOptions(parent=self),
                                  settings=docker_common.shown_settings(environment, labels))
        self.register_outputs({"containerName": self.container.name})

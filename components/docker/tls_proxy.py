"""TlsProxy: a Caddy container that serves the deployment's domains over HTTPS.

Caddy obtains and renews certificates itself (ACME) and its `reverse_proxy` passes
WebSocket upgrades through, which the Convex client's sync protocol on the API needs.
The Caddyfile is generated from values the settings checked against strict grammars
(lowercase DNS names, a plain email address), so no value can add a directive or block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_docker as docker

from components.docker import docker_common
from components.docker.docker_common import ContainerLimits
from components.docker.health import HealthGate

CADDYFILE_PATH = "/etc/caddy/Caddyfile"
# Caddy's admin API answers on loopback inside the container once the config is loaded.
HEALTH_TEST = ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:2019/config/"]
START_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Route:
    domain: str
    upstream: str  # host:port on the deployment's network
    block_metrics: bool = False  # the backend's Prometheus endpoint is never public


@dataclass(frozen=True)
class TlsProxyArgs:
    instance_name: str
    image: pulumi.Input[str]
    network_name: pulumi.Input[str]
    routes: Sequence[Route]
    email: str = ""
    bind_address: str = "0.0.0.0"
    http_port: int = 80
    https_port: int = 443
    limits: ContainerLimits = field(default_factory=ContainerLimits)
    stack: str = ""
    docker_host: str = ""
    depends_on: Sequence[pulumi.Resource] = ()


def build_caddyfile(routes: Sequence[Route], email: str = "") -> str:
    """The whole Caddyfile. HTTP/3 is off: it would need UDP 443 published as well."""
    global_options = [f"\temail {email}"] if email else []
    global_options += ["\tservers {", "\t\tprotocols h1 h2", "\t}"]
    blocks = ["{\n" + "\n".join(global_options) + "\n}"]
    for route in routes:
        lines = [f"{route.domain} {{"]
        if route.block_metrics:
            lines.append("\trespond /metrics* 404")
        lines += [f"\treverse_proxy {route.upstream}", "}"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


class TlsProxy(pulumi.ComponentResource):
    """HTTPS in front of the backend API, HTTP actions and dashboard."""

    volume: docker.Volume
    container: docker.Container
    healthy: HealthGate

    def __init__(self, name: str, args: TlsProxyArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:TlsProxy", name, None, opts)
        # Certificates live here: losing them means re-issuing, which ACME rate-limits.
        self.volume = docker.Volume(
            f"{name}-data", name=f"{args.instance_name}-caddy-data",
            labels=docker_common.labels(docker.VolumeLabelArgs, args.stack, args.instance_name,
                                        "tls-data"),
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True))
        self.caddyfile = build_caddyfile(args.routes, args.email)
        self.container = docker.Container(
            f"{name}-container",
            name=f"{args.instance_name}-proxy",
            image=args.image,
            ports=[docker_common.published_port(80, args.http_port, args.bind_address),
                   docker_common.published_port(443, args.https_port, args.bind_address)],
            uploads=[docker.ContainerUploadArgs(file=CADDYFILE_PATH, content=self.caddyfile)],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name,
                                                container_path="/data")],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.network_name)],
            healthcheck=docker_common.healthcheck(
                HEALTH_TEST, args.limits,
                interval=10, timeout=5, retries=3, start_period=START_TIMEOUT_SECONDS),
            stop_timeout=10,
            destroy_grace_seconds=10,
            labels=docker_common.container_labels(args.stack, args.instance_name, "tls-proxy",
                                                  args.limits),
            **docker_common.runtime_options(args.limits),
            opts=docker_common.container_options(self, args.depends_on),
        )
        self.healthy = HealthGate(f"{name}-healthy", self.container, START_TIMEOUT_SECONDS,
                                  args.docker_host, pulumi.ResourceOptions(parent=self))
        self.register_outputs({"containerName": self.container.name})

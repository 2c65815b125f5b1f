"""TlsProxy: a Caddy container that serves the deployment's domains over HTTPS.

Caddy obtains and renews certificates itself (ACME) and its `reverse_proxy` passes
WebSocket upgrades through, which the Convex client's sync protocol on the API needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_docker as docker

from components import docker_common
from components.backend import API_PORT, NETWORK_ALIAS as BACKEND_ALIAS, SITE_PROXY_PORT
from components.dashboard import DASHBOARD_PORT, NETWORK_ALIAS as DASHBOARD_ALIAS
from components.settings import DeploymentSettings, StackSettings


@dataclass(frozen=True)
class TlsProxyArgs:
    settings: StackSettings
    deployment: DeploymentSettings
    image_id: pulumi.Input[str]  # the pulled Caddy image (ConvexImages)
    network_name: pulumi.Input[str]
    depends_on: Sequence[pulumi.Resource] = ()


def build_caddyfile(settings: StackSettings, deployment: DeploymentSettings) -> str:
    blocks = []
    if settings.tls.email:
        blocks.append("{\n\temail %s\n}" % settings.tls.email)
    routes = [(deployment.api_domain, f"{BACKEND_ALIAS}:{API_PORT}"),
              (deployment.site_domain, f"{BACKEND_ALIAS}:{SITE_PROXY_PORT}")]
    if settings.dashboard:
        routes.append((deployment.dashboard_domain, f"{DASHBOARD_ALIAS}:{DASHBOARD_PORT}"))
    for domain, upstream in routes:
        blocks.append("%s {\n\treverse_proxy %s\n}" % (domain, upstream))
    return "\n\n".join(blocks) + "\n"


class TlsProxy(pulumi.ComponentResource):
    """HTTPS in front of the backend API, HTTP actions and dashboard."""

    def __init__(self, name: str, args: TlsProxyArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:TlsProxy", name, None, opts)
        settings, deployment = args.settings, args.deployment
        tls, stack, instance = settings.tls, settings.stack, deployment.instance_name

        # Certificates live here: losing them means re-issuing, which ACME rate-limits.
        self.volume = docker.Volume(
            f"{name}-data", name=f"{instance}-caddy-data",
            labels=docker_common.labels(docker.VolumeLabelArgs, stack, instance, "tls-data"),
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True))
        self.caddyfile = build_caddyfile(settings, deployment)
        self.container = docker.Container(
            f"{name}-container",
            name=f"{instance}-proxy",
            image=args.image_id,
            ports=[docker_common.published_port(80, tls.http_port, tls.bind_address),
                   docker_common.published_port(443, tls.https_port, tls.bind_address)],
            uploads=[docker.ContainerUploadArgs(file="/etc/caddy/Caddyfile",
                                                content=self.caddyfile)],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name,
                                                container_path="/data")],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.network_name)],
            labels=docker_common.labels(docker.ContainerLabelArgs, stack, instance, "tls-proxy"),
            **docker_common.runtime_options(settings.containers),
            opts=docker_common.container_options(self, args.depends_on),
        )
        self.register_outputs({"containerName": self.container.name})

"""ConvexBackend: the backend's data volume, its container, and a gate on its health."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_docker as docker

from components.core.backend import CA_CERT_PATH  # where the database CA is uploaded
from components.docker import docker_common
from components.docker.docker_common import ContainerLimits
from components.docker.health import HealthGate

API_PORT = 3210
SITE_PROXY_PORT = 3211
DATA_PATH = "/convex/data"
NETWORK_ALIAS = "backend"
# Upstream's healthcheck (self-hosted/docker/docker-compose.yml), shell form.
HEALTH_TEST = ["CMD-SHELL", f"curl -f http://localhost:{API_PORT}/version"]
HEALTH_INTERVAL = 5


@dataclass(frozen=True)
class BackendArgs:
    """Everything the backend needs, nothing more; usable from any Pulumi program."""

    instance_name: str
    image: pulumi.Input[str]  # an image id (or reference) present on the Docker host
    network_name: pulumi.Input[str]
    # NAME=value entries. In a list, entries carrying a secret must be secret Outputs (the
    # others stay readable in previews); anything else is made secret as a whole.
    environment: pulumi.Input[Sequence[pulumi.Input[str]]]
    api_port: int = API_PORT  # host ports
    site_port: int = SITE_PROXY_PORT
    bind_address: str = "127.0.0.1"
    data_volume_name: str = ""  # "": <instance_name>-data
    adopted_volume: bool = False  # made outside this program (e.g. docker-compose)
    protect_data: bool = True
    start_timeout_seconds: int = 300
    limits: ContainerLimits = field(default_factory=ContainerLimits)
    command: Sequence[str] = ()  # extra flags for the image's start script
    ca_certificate: str = ""  # PEM uploaded to CA_CERT_PATH
    stack: str = ""  # label only
    docker_host: str = ""  # for the health gate; "" is the local engine
    depends_on: Sequence[pulumi.Resource] = ()


class ConvexBackend(pulumi.ComponentResource):
    """The Convex backend: data volume, container, and a gate that waits until healthy."""

    volume: docker.Volume
    container: docker.Container
    healthy: HealthGate

    def __init__(self, name: str, args: BackendArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:Backend", name, None, opts)
        self.volume = self._volume(name, args)
        self.container = self._container(name, args)
        self.healthy = HealthGate(
            f"{name}-healthy", self.container, args.start_timeout_seconds, args.docker_host,
            pulumi.ResourceOptions(parent=self),
            settings=docker_common.shown_settings(args.environment, self._labels(args)))
        self.register_outputs({"containerName": self.container.name,
                               "volumeName": self.volume.name})

    @staticmethod
    def _labels(args: BackendArgs) -> list:
        return docker_common.container_labels(args.stack, args.instance_name, "backend",
                                              args.limits)

    def _volume(self, name: str, args: BackendArgs) -> docker.Volume:
        return docker.Volume(
            f"{name}-data",
            name=args.data_volume_name or f"{args.instance_name}-data",
            # An adopted volume keeps the labels it was made with (see data_volume_options).
            labels=None if args.adopted_volume else docker_common.labels(
                docker.VolumeLabelArgs, args.stack, args.instance_name, "data"),
            opts=docker_common.data_volume_options(self, args.protect_data, args.adopted_volume))

    def _container(self, name: str, args: BackendArgs) -> docker.Container:
        uploads = [docker.ContainerUploadArgs(file=CA_CERT_PATH, content=args.ca_certificate)] \
            if args.ca_certificate else None
        return docker.Container(
            f"{name}-container",
            name=f"{args.instance_name}-backend",
            image=args.image,
            # The env carries the instance secret and any database or AWS credentials: the
            # read-back envs are secret as a whole (additional_secret_outputs below).
            envs=list(args.environment) if isinstance(args.environment, (list, tuple))
            else pulumi.Output.secret(args.environment),
            command=list(args.command) or None,
            ports=[docker_common.published_port(API_PORT, args.api_port, args.bind_address),
                   docker_common.published_port(SITE_PROXY_PORT, args.site_port,
                                                args.bind_address)],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name,
                                                container_path=DATA_PATH)],
            uploads=uploads,
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(
                name=args.network_name, aliases=[NETWORK_ALIAS])],
            # Failures during the start period do not count, so first-start migrations
            # may take up to the timeout; the health gate waits that long.
            healthcheck=docker_common.healthcheck(
                HEALTH_TEST, args.limits, interval=HEALTH_INTERVAL, timeout=5, retries=3,
                start_period=args.start_timeout_seconds),
            stop_signal="SIGINT",
            stop_timeout=10,
            destroy_grace_seconds=10,
            labels=self._labels(args),
            **docker_common.runtime_options(args.limits),
            opts=docker_common.container_options(self, args.depends_on, ["envs"]),
        )

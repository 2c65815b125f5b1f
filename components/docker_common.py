"""Container and volume settings shared by every component.

Labels let operators (and the policy pack) tell which stack, deployment and role a
Docker object belongs to when several stacks share one host.
"""

from __future__ import annotations

from typing import Sequence

import pulumi
import pulumi_docker as docker

from components.settings import ContainerSettings

LABEL_PREFIX = "convex-selfhost"


def labels(label_type: type, stack: str, instance_name: str, role: str) -> list:
    """The stack/deployment/role labels, as `label_type` (ContainerLabelArgs, ...)."""
    return [label_type(label=f"{LABEL_PREFIX}.{key}", value=value)
            for key, value in (("stack", stack), ("deployment", instance_name), ("role", role))]


def published_port(internal: int, external: int, ip: str) -> docker.ContainerPortArgs:
    return docker.ContainerPortArgs(internal=internal, external=external, ip=ip, protocol="tcp")


def runtime_options(containers: ContainerSettings) -> dict:
    """Restart policy, resource limits and log rotation, as Container keyword arguments."""
    options: dict = {
        "restart": containers.restart_policy,
        # Without rotation the json-file driver grows until the disk is full.
        "log_driver": "json-file",
        "log_opts": {
            "max-size": f"{containers.log_max_size_mb}m",
            "max-file": str(containers.log_max_files),
        },
    }
    if containers.memory_limit_mb:
        options["memory"] = containers.memory_limit_mb
    if containers.cpus:
        options["cpus"] = containers.cpus
    return options


def container_options(parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource] = (),
                      secret_outputs: Sequence[str] = ()) -> pulumi.ResourceOptions:
    # A named container cannot coexist with its replacement: same name, same host ports.
    return pulumi.ResourceOptions(
        parent=parent,
        delete_before_replace=True,
        depends_on=list(depends_on),
        additional_secret_outputs=list(secret_outputs),
    )


def data_volume_options(parent: pulumi.Resource, protect: bool) -> pulumi.ResourceOptions:
    # retain_on_delete: even an unprotected stack's destroy leaves the data on the host;
    # protect: a production destroy or replacement stops with an error instead.
    return pulumi.ResourceOptions(parent=parent, protect=protect, retain_on_delete=True)

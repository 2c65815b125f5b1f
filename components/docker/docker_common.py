"""What every component sends Docker, in the exact form the docker provider reads back.

pulumi-docker bridges kreuzwerker/terraform-provider-docker. After a create it reads
each object back from Docker and stores Docker's view; the next `pulumi up` diffs the
program's inputs against that view. A value sent in another spelling than the one read
back (cpus "2" vs "2.0", a duration "300s" vs "5m0s") is a diff on every run, and for
ForceNew fields a replacement on every run. The functions here produce the read-back
spellings; tests/test_readback.py pins each one to the provider source line.

Labels let operators (and the policy pack) tell which stack, deployment and role a
Docker object belongs to when several stacks share one host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_docker as docker

from components.docker.readback import go_duration, stable_cpus

LABEL_PREFIX = "convex-selfhost"
# Fields whose read-back value depends on the host, not the program: daemon.json log
# options are merged into logOpts, hosts without swap accounting report memorySwap as -1,
# engines before API 1.44 drop startInterval. A diff on them says nothing about the
# program, so they are ignored; the label of limit_label carries the configured values
# instead, and since container labels force replacement, changing them still reaches
# the container.
HOST_MERGED_FIELDS = ["logOpts", "memorySwap", "healthcheck.startInterval"]


@dataclass(frozen=True)
class ContainerLimits:
    """Restart policy, resource limits and log rotation of one container."""

    restart_policy: str = "unless-stopped"
    memory_mb: int = 0  # 0: no limit
    cpus: str = ""  # decimal number of CPUs as the user wrote it; "": no limit
    log_max_size_mb: int = 10
    log_max_files: int = 3
    # Probe every second during a healthcheck's start period: needs Engine 25 (API 1.44),
    # older engines refuse the container (components/engine.py decides).
    fast_start_probes: bool = True


def label_values(stack: str, instance_name: str, role: str,
                 extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The stack/deployment/role labels (plus `extra`), by full label name."""
    values = {"stack": stack, "deployment": instance_name, "role": role, **(extra or {})}
    return {f"{LABEL_PREFIX}.{key}": value for key, value in values.items()}


def labels(
    label_type: type,
    stack: str,
    instance_name: str,
    role: str,
    extra: Optional[Mapping[str, str]] = None,
) -> list:
    """The stack/deployment/role labels (plus `extra`), as `label_type` args."""
    return [label_type(label=label, value=value)
            for label, value in label_values(stack, instance_name, role, extra).items()]


def container_labels(stack: str, instance_name: str, role: str, limits: ContainerLimits) -> list:
    return labels(docker.ContainerLabelArgs, stack, instance_name, role, limit_label(limits))


def shown_settings(environment, labels: Sequence) -> dict[str, str]:
    """A container's plain environment entries and labels by name, for a health gate's
    readable diff (secret entries, which are Outputs, are left out)."""
    shown = {}
    if isinstance(environment, (list, tuple)):
        for entry in environment:
            if isinstance(entry, str):
                name, _, value = entry.partition("=")
                shown[name] = value
    for label in labels:
        shown[f"label {label.label}"] = label.value
    return shown


def published_port(
    internal: int, external: int, ip: str, protocol: str = "tcp"
) -> docker.ContainerPortArgs:
    return docker.ContainerPortArgs(internal=internal, external=external, ip=ip, protocol=protocol)


def healthcheck(
    test: Sequence[str], limits: ContainerLimits, *, interval: int, timeout: int, retries: int,
    start_period: int,
) -> docker.ContainerHealthcheckArgs:
    """A healthcheck in read-back form; 1 s probes during the start period where the
    engine supports them (see HOST_MERGED_FIELDS for why a change of engine is no diff).
    Elsewhere "0s", Docker's "not set", spelled out: left out, the provider's Check fills
    it in as a default, the ignore_changes above then hands the stored value back as if
    the program had sent it, and the engine rewrites the whole state file for every
    container on the next unchanged run (inputs differ in their `__defaults`)."""
    return docker.ContainerHealthcheckArgs(
        tests=list(test),
        interval=go_duration(interval),
        timeout=go_duration(timeout),
        retries=retries,
        start_period=go_duration(start_period),
        start_interval="1s" if limits.fast_start_probes else "0s",
    )


def limit_label(limits: ContainerLimits) -> dict[str, str]:
    """The configured log options and memory as a label (see HOST_MERGED_FIELDS)."""
    return {
        "limits": f"log-max-size={limits.log_max_size_mb}m,"
        f"log-max-file={limits.log_max_files},memory={limits.memory_mb}m"
    }


def runtime_options(limits: ContainerLimits) -> dict:
    """Restart policy, resource limits and log rotation, as Container keyword arguments."""
    options: dict = {
        "restart": limits.restart_policy,
        # Without rotation the json-file driver grows until the disk is full.
        "log_driver": "json-file",
        "log_opts": {
            "max-size": f"{limits.log_max_size_mb}m",
            "max-file": str(limits.log_max_files),
        },
    }
    if limits.memory_mb:
        options["memory"] = limits.memory_mb
        # Unset, Docker gives twice the memory as swap and reports it back; equal to the
        # memory means no swap, and raising both together never hits "memory limit should
        # be smaller than already set memoryswap limit".
        options["memory_swap"] = limits.memory_mb
    if limits.cpus:
        options["cpus"] = stable_cpus(limits.cpus)
    return options


def container_options(
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
    secret_outputs: Sequence[str] = (),
) -> pulumi.ResourceOptions:
    """Named containers are deleted before their replacement is created (same name, same
    host ports), and a changed healthcheck replaces the container: the provider's update
    does not apply healthcheck changes to a running container."""
    return pulumi.ResourceOptions(
        parent=parent,
        delete_before_replace=True,
        depends_on=list(depends_on),
        additional_secret_outputs=list(secret_outputs),
        replace_on_changes=["healthcheck"],
        ignore_changes=list(HOST_MERGED_FIELDS),
    )


def data_volume_options(
    parent: pulumi.Resource, protect: bool, adopted: bool = False
) -> pulumi.ResourceOptions:
    """retain_on_delete: even an unprotected stack's destroy leaves the data on the host;
    protect: a production destroy or replacement stops with an error instead. An adopted
    volume keeps the labels and options it was created with (docker-compose adds its own),
    which the provider reads back and which would otherwise force a replacement."""
    return pulumi.ResourceOptions(
        parent=parent,
        protect=protect,
        retain_on_delete=True,
        ignore_changes=["labels", "driver", "driverOpts"] if adopted else None,
    )

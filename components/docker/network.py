"""DeploymentNetwork: a deployment's private Docker network, made with the `docker` CLI.

The docker provider's `docker.Network` sleeps a fixed 2 s after creating a network before
reading it back (`networkReadRefreshDelay` in kreuzwerker's resource_docker_network_funcs.go),
again on every refresh (so on every `./up.sh`), and again after removing one. The first
`up` of a deployment waited those 2 s before any container could start. Here the network
is a `command:local:Command` instead (the pulumi-command plugin the host target already
needs; it starts in about 30 ms):

  create  `docker network inspect NAME`, else `docker network create --label ... NAME`:
          an existing network of that name is adopted, never recreated (an interrupted run
          may have made it; a network holds no data);
  delete  `docker network rm NAME`; a network that is already gone counts as removed.

Containers attach by name and depend on the command, so they start as soon as the
network exists, and `pulumi destroy` removes the network after its containers. Names and
labels come from the instance name (validated by the settings) and are shell-quoted all
the same. The engine address, which may carry credentials, reaches the command only as a
secret environment variable.

The network is called `<instance>-network`: deployments made by earlier releases have a
`docker.Network` called `<instance>-net`. On their first `up` with this release the
containers move to the new network (they are replaced once; their data is in volumes)
and the old network is removed after them.
"""

from __future__ import annotations

import shlex
from typing import Mapping, Optional

import pulumi
from pulumi_command import local

from components.docker.docker_common import label_values


def network_name(instance_name: str) -> str:
    return f"{instance_name}-network"


def create_script(name: str, labels: Mapping[str, str]) -> str:
    """Prints the network's id: the existing network's, or the new one's."""
    quoted = shlex.quote(name)
    flags = " ".join(f"--label {shlex.quote(f'{key}={value}')}" for key, value in labels.items())
    return (f"docker network inspect --format '{{{{.Id}}}}' {quoted} 2>/dev/null"
            f" || docker network create {flags} {quoted}")


def delete_script(name: str) -> str:
    """Removes the network; succeeds when it is already gone, fails (saying why) when it
    is still in use."""
    quoted = shlex.quote(name)
    return (f"out=$(docker network rm {quoted} 2>&1) || "
            f"{{ docker network inspect {quoted} >/dev/null 2>&1 || exit 0; "
            'printf "%s\\n" "$out" >&2; exit 1; }')


class DeploymentNetwork:
    """The command that makes the network, and the name containers attach to (a plain
    holder: one resource needs no component around it)."""

    def __init__(self, name: str, stack: str, instance_name: str, docker_host: str = "",
                 opts: Optional[pulumi.ResourceOptions] = None):
        self.network_name = network_name(instance_name)
        labels = label_values(stack, instance_name, "network")
        environment = ({"DOCKER_HOST": pulumi.Output.secret(docker_host)} if docker_host
                       else None)
        self.command = local.Command(
            name,
            create=create_script(self.network_name, labels),
            delete=delete_script(self.network_name),
            environment=environment,
            # Nothing of it changes in place: a new name or label is a new network, made
            # after the old one (and its containers) are gone.
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                delete_before_replace=True, replace_on_changes=["*"])))
        # Known in a preview (URNs are), and it carries the dependency on the command: a
        # container given this name waits until the network exists.
        network = self.network_name
        self.name: pulumi.Output[str] = self.command.urn.apply(lambda _: network)

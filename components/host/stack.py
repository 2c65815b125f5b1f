"""The host target for a whole stack: per deployment spec, an instance secret, the
backend under systemd on the stack's host, and the same outputs as the Docker target."""

from __future__ import annotations

from typing import Optional, Sequence

import pulumi
import pulumi_random as random

from components.core.backups import offsite_secrets
from components.core.keys import admin_keys
from components.core.spec import DeploymentSpec
from components.host import unit
from components.host.backend import BinarySource, ConvexHostBackend, HostBackendArgs, HostConnection
from components.settings import HostSettings, StackSettings


def environment_file(spec: DeploymentSpec, instance_secret: pulumi.Output[str]
                     ) -> pulumi.Output[str]:
    """The unit's EnvironmentFile, secrets filled in (a secret Output as a whole)."""
    _, entries = unit.invocation(spec)
    database = spec.database.url.reveal() if spec.database.url is not None else ""

    def render(secret: str) -> str:
        filled = [(name, value.replace("${INSTANCE_SECRET}", secret or "")
                   .replace("${DATABASE}", database)) for name, value in entries]
        return unit.env_file(filled)

    return pulumi.Output.secret(instance_secret.apply(render))


class HostDeployment(pulumi.ComponentResource):
    """One Convex instance on a Linux host: secret, admin keys, backend under systemd."""

    def __init__(self, name: str, spec: DeploymentSpec, host: HostSettings,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:HostDeployment", name, None, opts)
        if spec.instance_secret is not None:
            self.secret_resource = None
            self.instance_secret = pulumi.Output.secret(spec.instance_secret.reveal())
        else:
            # Losing this secret invalidates every admin key: protect it with the data.
            self.secret_resource = random.RandomBytes(
                f"{name}-instance-secret", length=32,
                opts=pulumi.ResourceOptions(parent=self, protect=spec.protect_data))
            self.instance_secret = pulumi.Output.secret(self.secret_resource.hex)
        keys = admin_keys(spec.instance_name, spec.cloud_origin, self.instance_secret)
        backup_environment = None
        if spec.backups is not None:
            backup_environment = pulumi.Output.secret(keys.admin_key.apply(
                lambda key: unit.env_file([("CONVEX_SELF_HOSTED_ADMIN_KEY", key or ""),
                                           *offsite_secrets(spec.backups).items()])))
        connection = HostConnection(
            host.address, host.port, host.user,
            host.private_key.reveal() if host.private_key else None, host.host_key)
        self.backend = ConvexHostBackend(
            f"{name}-backend",
            HostBackendArgs(spec=spec, connection=connection,
                            binary=BinarySource(host.binary_sha256, host.binary_path,
                                                host.binary_url),
                            environment=environment_file(spec, self.instance_secret),
                            ca_certificate=spec.database.ca_cert,
                            backup_environment=backup_environment),
            opts=pulumi.ResourceOptions(parent=self))
        self.instance_name = spec.instance_name
        self.backend_url = spec.cloud_origin
        self.site_url = spec.site_origin
        self.dashboard_url = None
        self.admin_key, self.read_only_admin_key = keys.admin_key, keys.read_only_admin_key
        self.env_local = keys.env_local
        self.register_outputs({"backendUrl": self.backend_url,
                               "instanceName": self.instance_name})


def deploy(settings: StackSettings,
           specs: Sequence[DeploymentSpec]) -> dict[str, HostDeployment]:
    return {spec.key: HostDeployment(spec.key, spec, settings.host) for spec in specs}

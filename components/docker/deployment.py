"""ConvexDeployment: one self-hosted Convex deployment and everything it needs.

Network, instance secret, image pulls and volumes do not depend on each other, so the
engine creates them at once; then (Postgres healthy ->) backend, and the dashboard
beside it (it does not need the backend to start: its server only reads its
environment, the user's browser talks to the backend); the TLS proxy after both are
healthy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_random as random

from components.core.keys import admin_keys
from components.core.spec import DeploymentSpec
from components.docker import mapping
from components.docker.backend import ConvexBackend
from components.docker.dashboard import ConvexDashboard
from components.docker.images import ConvexImages
from components.docker.mapping import DockerTarget
from components.docker.network import DeploymentNetwork
from components.docker.postgres import ConvexPostgres
from components.docker.scheduled_backup import ScheduledBackup
from components.docker.tls_proxy import TlsProxy


@dataclass(frozen=True)
class DeploymentArgs:
    spec: DeploymentSpec  # what the deployment is (components/core)
    images: ConvexImages  # pulled once per stack, shared by its deployments
    target: DockerTarget = DockerTarget()  # the engine: its features and address


class ConvexDeployment(pulumi.ComponentResource):
    """Backend, dashboard, secret and admin keys of one Convex instance."""

    admin_key: pulumi.Output[Optional[str]]
    read_only_admin_key: pulumi.Output[Optional[str]]
    instance_secret: pulumi.Output[str]

    def __init__(self, name: str, args: DeploymentArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:Deployment", name, None, opts)
        spec, target, images = args.spec, args.target, args.images
        instance = spec.instance_name
        child = pulumi.ResourceOptions(parent=self)

        self.network = DeploymentNetwork(f"{name}-network", spec.stack, instance,
                                         target.docker_host, child)
        self.secret_resource, self.instance_secret = self._instance_secret(name, spec)

        self.postgres = self._postgres(name, args)
        database_url = self.postgres.url if self.postgres else None
        backend_depends_on = [self.postgres.healthy] if self.postgres else []

        self.backend = ConvexBackend(
            f"{name}-backend",
            mapping.backend_args(spec, target, images.backend.image_id, self.network.name,
                                 self.instance_secret, database_url, backend_depends_on),
            opts=child)

        self.dashboard = None
        proxied = [self.backend.healthy]
        if spec.dashboard:
            self.dashboard = ConvexDashboard(
                f"{name}-dashboard",
                mapping.dashboard_args(spec, target, images.dashboard.image_id,
                                       self.network.name),
                opts=child)
            proxied.append(self.dashboard.healthy)

        self.tls_proxy = None
        if spec.tls is not None:
            self.tls_proxy = TlsProxy(
                f"{name}-tls",
                mapping.tls_args(spec, target, images.caddy.image_id, self.network.name,
                                 proxied),
                opts=child)

        self.instance_name = instance
        self.backend_url = spec.cloud_origin
        self.site_url = spec.site_origin
        self.dashboard_url = spec.dashboard_url or None
        keys = admin_keys(instance, spec.cloud_origin, self.instance_secret)
        self.admin_key, self.read_only_admin_key = keys.admin_key, keys.read_only_admin_key
        self.env_local = keys.env_local
        self.backup = self._backup(name, args)

        self.register_outputs({
            "backendUrl": self.backend_url,
            "siteUrl": self.site_url,
            "dashboardUrl": self.dashboard_url,
            "instanceName": self.instance_name,
            "instanceSecret": self.instance_secret,
            "adminKey": self.admin_key,
            "readOnlyAdminKey": self.read_only_admin_key,
            "envLocal": self.env_local,
        })

    def _postgres(self, name: str, args: DeploymentArgs) -> Optional[ConvexPostgres]:
        if args.spec.database.kind != "provisioned-postgres":
            return None
        return ConvexPostgres(
            f"{name}-postgres",
            mapping.postgres_args(args.spec, args.target, args.images.postgres.image_id,
                                  self.network.name),
            opts=pulumi.ResourceOptions(parent=self))

    def _backup(self, name: str, args: DeploymentArgs) -> Optional[ScheduledBackup]:
        if args.spec.backups is None:
            return None
        return ScheduledBackup(
            f"{name}-backup",
            mapping.backup_args(args.spec, args.target, args.images.python.image_id,
                                self.network.name, self.admin_key, [self.backend.healthy]),
            opts=pulumi.ResourceOptions(parent=self))

    def _instance_secret(self, name: str, spec: DeploymentSpec):
        if spec.instance_secret is not None:
            # Adopting a running deployment: its secret keeps existing admin keys valid.
            return None, pulumi.Output.secret(spec.instance_secret.reveal())
        # Losing this secret invalidates every admin key: protect it with the data.
        resource = random.RandomBytes(
            f"{name}-instance-secret", length=32,
            opts=pulumi.ResourceOptions(parent=self, protect=spec.protect_data))
        return resource, pulumi.Output.secret(resource.hex)

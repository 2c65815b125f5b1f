"""ConvexDeployment: one self-hosted Convex deployment and everything it needs.

Network, instance secret, image pulls and volumes do not depend on each other, so the
engine creates them at once; the chain is those -> (Postgres healthy) -> backend
healthy -> dashboard healthy -> TLS proxy healthy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.docker import docker_common, mapping
from components.admin_key import issue_admin_key
from components.docker.backend import ConvexBackend
from components.docker.dashboard import ConvexDashboard
from components.docker.engine import EngineFeatures
from components.docker.images import ConvexImages
from components.docker.postgres import ConvexPostgres
from components.docker.scheduled_backup import ScheduledBackup
from components.settings import DeploymentSettings, StackSettings
from components.docker.tls_proxy import TlsProxy


@dataclass(frozen=True)
class DeploymentArgs:
    settings: StackSettings
    deployment: DeploymentSettings
    images: ConvexImages  # pulled once per stack, shared by its deployments
    engine: EngineFeatures = EngineFeatures(None)  # what the Docker engine supports


def env_local(url: str, admin_key: str) -> str:
    """The `.env.local` lines `npx convex` reads for a self-hosted deployment."""
    return f"CONVEX_SELF_HOSTED_URL={url}\nCONVEX_SELF_HOSTED_ADMIN_KEY={admin_key}\n"


class ConvexDeployment(pulumi.ComponentResource):
    """Backend, dashboard, secret and admin keys of one Convex instance."""

    admin_key: pulumi.Output[Optional[str]]
    read_only_admin_key: pulumi.Output[Optional[str]]
    instance_secret: pulumi.Output[str]

    def __init__(self, name: str, args: DeploymentArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:Deployment", name, None, opts)
        settings, deployment, images = args.settings, args.deployment, args.images
        instance = deployment.instance_name
        child = pulumi.ResourceOptions(parent=self)

        self.network = self._network(name, settings.stack, instance)
        self.secret_resource, self.instance_secret = self._instance_secret(name, settings,
                                                                           deployment)

        self.postgres = self._postgres(name, args)
        database_url = self.postgres.url if self.postgres else None
        backend_depends_on = [self.postgres.healthy] if self.postgres else []

        self.backend = ConvexBackend(
            f"{name}-backend",
            mapping.backend_args(settings, args.engine, deployment, images.backend.image_id,
                                 self.network.name, self.instance_secret, database_url,
                                 backend_depends_on),
            opts=child)

        self.dashboard = None
        proxied = [self.backend.healthy]
        if settings.dashboard:
            self.dashboard = ConvexDashboard(
                f"{name}-dashboard",
                mapping.dashboard_args(settings, args.engine, deployment,
                                       images.dashboard.image_id, self.network.name,
                                       self.backend.healthy),
                opts=child)
            proxied.append(self.dashboard.healthy)

        self.tls_proxy = None
        if settings.tls is not None:
            self.tls_proxy = TlsProxy(
                f"{name}-tls",
                mapping.tls_args(settings, args.engine, deployment, images.caddy.image_id,
                                 self.network.name, proxied),
                opts=child)

        self.instance_name = instance
        self.backend_url = deployment.cloud_origin
        self.site_url = deployment.site_origin
        self.dashboard_url = deployment.dashboard_url if settings.dashboard else None
        self._admin_keys(instance, deployment.cloud_origin)
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

    def _network(self, name: str, stack: str, instance: str) -> docker.Network:
        return docker.Network(
            f"{name}-network", name=f"{instance}-net",
            labels=docker_common.labels(docker.NetworkLabelArgs, stack, instance, "network"),
            # Docker refuses a second network of the same name.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True))

    def _postgres(self, name: str, args: DeploymentArgs) -> Optional[ConvexPostgres]:
        settings, deployment, images = args.settings, args.deployment, args.images
        if settings.database.kind != "provisioned-postgres":
            return None
        return ConvexPostgres(
            f"{name}-postgres",
            mapping.postgres_args(settings, args.engine, deployment, images.postgres.image_id,
                                  self.network.name),
            opts=pulumi.ResourceOptions(parent=self))

    def _backup(self, name: str, args: DeploymentArgs) -> Optional[ScheduledBackup]:
        if args.settings.backups is None:
            return None
        return ScheduledBackup(
            f"{name}-backup",
            mapping.backup_args(args.settings, args.engine, args.deployment,
                                args.images.python.image_id, self.network.name,
                                self.admin_key, [self.backend.healthy]),
            opts=pulumi.ResourceOptions(parent=self))

    def _admin_keys(self, instance: str, url: str) -> None:
        # Keys exist as soon as the secret does; engines that report no value for it
        # (a mock engine without random's outputs) get no keys rather than a crash.
        self.admin_key = pulumi.Output.secret(self.instance_secret.apply(
            lambda secret: issue_admin_key(instance, secret) if secret else None))
        self.read_only_admin_key = pulumi.Output.secret(self.instance_secret.apply(
            lambda secret: issue_admin_key(instance, secret, read_only=True) if secret else None))
        self.env_local = pulumi.Output.secret(self.admin_key.apply(
            lambda key: env_local(url, key) if key else None))

    def _instance_secret(self, name: str, settings: StackSettings,
                         deployment: DeploymentSettings):
        if deployment.instance_secret is not None:
            # Adopting a running deployment: its secret keeps existing admin keys valid.
            return None, pulumi.Output.secret(deployment.instance_secret.reveal())
        # Losing this secret invalidates every admin key: protect it with the data.
        resource = random.RandomBytes(
            f"{name}-instance-secret", length=32,
            opts=pulumi.ResourceOptions(parent=self, protect=settings.protect_data))
        return resource, pulumi.Output.secret(resource.hex)

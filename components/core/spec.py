"""DeploymentSpec: one deployment as every target must run it (plain values only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from components.settings import (
    BackendTuning,
    ContainerSettings,
    DatabaseSettings,
    DeploymentSettings,
    S3Settings,
    StackSettings,
    TlsSettings,
)
from components.settings.model import BackupSettings
from components.settings.reader import SecretValue


@dataclass(frozen=True)
class DeploymentSpec:
    stack: str
    key: str  # name in `deployments`, or the instance name of a single deployment
    instance_name: str
    instance_secret: Optional[SecretValue]  # None: the target generates one
    version: str  # the upstream release (image tag, binary release)
    cloud_origin: str  # public URLs
    site_origin: str
    dashboard_url: str  # "" without a dashboard
    backend_port: int  # host ports
    site_port: int
    dashboard_port: int
    bind_address: str
    dashboard: bool
    protect_data: bool
    data_volume_name: str
    adopted_volume: bool
    database: DatabaseSettings
    s3: Optional[S3Settings]
    tuning: BackendTuning
    resources: ContainerSettings  # restart policy, memory, CPUs, log rotation, start timeout
    tls: Optional[TlsSettings]
    api_domain: str
    site_domain: str
    dashboard_domain: str
    backups: Optional[BackupSettings]

    @property
    def database_name(self) -> str:
        # Upstream's backend uses the database named after the instance, dashes
        # replaced by underscores (postgres_or_mysql.md).
        return self.instance_name.replace("-", "_")


def describe(settings: StackSettings, deployment: DeploymentSettings) -> DeploymentSpec:
    return DeploymentSpec(
        stack=settings.stack, key=deployment.key, instance_name=deployment.instance_name,
        instance_secret=deployment.instance_secret, version=settings.version,
        cloud_origin=deployment.cloud_origin, site_origin=deployment.site_origin,
        dashboard_url=deployment.dashboard_url if settings.dashboard else "",
        backend_port=deployment.backend_port, site_port=deployment.site_port,
        dashboard_port=deployment.dashboard_port, bind_address=settings.bind_address,
        dashboard=settings.dashboard, protect_data=settings.protect_data,
        data_volume_name=deployment.data_volume_name, adopted_volume=deployment.adopted_volume,
        database=settings.database, s3=settings.s3, tuning=settings.tuning,
        resources=settings.containers, tls=settings.tls, api_domain=deployment.api_domain,
        site_domain=deployment.site_domain, dashboard_domain=deployment.dashboard_domain,
        backups=settings.backups)


def describe_all(settings: StackSettings) -> tuple[DeploymentSpec, ...]:
    return tuple(describe(settings, d) for d in settings.deployments)

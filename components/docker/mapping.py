"""The one place that maps a deployment's spec onto the Docker components' arguments.

Components know nothing of stack configuration; everything a setting means for a
container (an env var, a flag, a port, a label) is decided here or in components/core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

from components.core.backend import backend_environment
from components.core.backups import offsite_arguments, offsite_secrets
from components.core.spec import DeploymentSpec
from components.docker.backend import API_PORT, SITE_PROXY_PORT, BackendArgs
from components.docker.backend import NETWORK_ALIAS as BACKEND_ALIAS
from components.docker.dashboard import DASHBOARD_PORT, DashboardArgs
from components.docker.dashboard import NETWORK_ALIAS as DASHBOARD_ALIAS
from components.docker.docker_common import ContainerLimits
from components.docker.engine import EngineFeatures
from components.docker.postgres import PostgresArgs
from components.docker.scheduled_backup import BackupArgs
from components.docker.tls_proxy import Route, TlsProxyArgs


@dataclass(frozen=True)
class DockerTarget:
    """Where the containers run: the engine's features and address."""

    engine: EngineFeatures = EngineFeatures(None)
    docker_host: str = ""  # the docker provider's `docker:host`, "" for the local engine


def limits(spec: DeploymentSpec, target: DockerTarget) -> ContainerLimits:
    c = spec.resources
    return ContainerLimits(restart_policy=c.restart_policy, memory_mb=c.memory_limit_mb,
                           cpus=c.cpus, log_max_size_mb=c.log_max_size_mb,
                           log_max_files=c.log_max_files,
                           fast_start_probes=target.engine.start_interval)


def backend_args(spec: DeploymentSpec, target: DockerTarget,
                 image: pulumi.Input[str], network_name: pulumi.Input[str],
                 instance_secret: pulumi.Output[str],
                 database_url: Optional[pulumi.Output[str]],
                 depends_on: Sequence[pulumi.Resource]) -> BackendArgs:
    return BackendArgs(
        instance_name=spec.instance_name,
        image=image,
        network_name=network_name,
        environment=backend_environment(spec, instance_secret, database_url),
        api_port=spec.backend_port,
        site_port=spec.site_port,
        bind_address=spec.bind_address,
        data_volume_name=spec.data_volume_name,
        adopted_volume=spec.adopted_volume,
        protect_data=spec.protect_data,
        start_timeout_seconds=spec.resources.backend_start_timeout_seconds,
        limits=limits(spec, target),
        command=spec.tuning.backend_args,
        ca_certificate=spec.database.ca_cert,
        stack=spec.stack,
        docker_host=target.docker_host,
        depends_on=depends_on,
    )


def dashboard_args(spec: DeploymentSpec, target: DockerTarget,
                   image: pulumi.Input[str], network_name: pulumi.Input[str]) -> DashboardArgs:
    # No dependency on the backend: the dashboard's server only reads its environment
    # (upstream's dashboard-self-hosted: `node server.js`, `_app.tsx` getInitialProps);
    # the user's browser talks to the backend. Both start at once.
    return DashboardArgs(
        instance_name=spec.instance_name, image=image, network_name=network_name,
        deployment_url=spec.cloud_origin, port=spec.dashboard_port,
        bind_address=spec.bind_address,
        limits=limits(spec, target), stack=spec.stack, docker_host=target.docker_host)


def postgres_args(spec: DeploymentSpec, target: DockerTarget,
                  image: pulumi.Input[str], network_name: pulumi.Input[str]) -> PostgresArgs:
    return PostgresArgs(
        instance_name=spec.instance_name, image=image, network_name=network_name,
        database=spec.database_name,
        max_connections=spec.database.server_max_connections,
        protect_data=spec.protect_data, limits=limits(spec, target), stack=spec.stack,
        docker_host=target.docker_host)


def tls_routes(spec: DeploymentSpec) -> list[Route]:
    """API and HTTP actions to the backend (HTTP actions on the API domain under /http
    when no siteDomain is given), the dashboard to the dashboard."""
    routes = [Route(spec.api_domain, f"{BACKEND_ALIAS}:{API_PORT}", block_metrics=True)]
    if spec.site_domain:
        routes.append(Route(spec.site_domain, f"{BACKEND_ALIAS}:{SITE_PROXY_PORT}",
                            block_metrics=True))
    if spec.dashboard:
        routes.append(Route(spec.dashboard_domain, f"{DASHBOARD_ALIAS}:{DASHBOARD_PORT}"))
    return routes


def tls_args(spec: DeploymentSpec, target: DockerTarget,
             image: pulumi.Input[str], network_name: pulumi.Input[str],
             depends_on: Sequence[pulumi.Resource]) -> TlsProxyArgs:
    tls = spec.tls
    return TlsProxyArgs(
        instance_name=spec.instance_name, image=image, network_name=network_name,
        routes=tls_routes(spec), email=tls.email,
        bind_address=tls.bind_address, http_port=tls.http_port, https_port=tls.https_port,
        limits=limits(spec, target), stack=spec.stack, docker_host=target.docker_host,
        depends_on=depends_on)


def backup_args(spec: DeploymentSpec, target: DockerTarget,
                image: pulumi.Input[str], network_name: pulumi.Input[str],
                admin_key: pulumi.Output[str],
                depends_on: Sequence[pulumi.Resource]) -> BackupArgs:
    backups = spec.backups
    return BackupArgs(
        instance_name=spec.instance_name, image=image, network_name=network_name,
        backend_url=f"http://{BACKEND_ALIAS}:{API_PORT}", admin_key=admin_key,
        schedule=backups.schedule, keep=backups.keep, protect_data=spec.protect_data,
        limits=limits(spec, target), stack=spec.stack, docker_host=target.docker_host,
        depends_on=depends_on,
        offsite_arguments=offsite_arguments(backups, spec.instance_name),
        offsite_secrets=offsite_secrets(backups))

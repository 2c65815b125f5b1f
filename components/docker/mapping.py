"""The one place that maps validated settings onto the components' narrow arguments.

Components know nothing of stack configuration; everything a setting means for a
container (an env var, a flag, a port, a label) is decided here.
"""

from __future__ import annotations

from typing import Optional, Sequence

import pulumi

from components.docker.backend import API_PORT, CA_CERT_PATH, SITE_PROXY_PORT, BackendArgs
from components.docker.backend import NETWORK_ALIAS as BACKEND_ALIAS
from components.docker.dashboard import DASHBOARD_PORT, DashboardArgs
from components.docker.dashboard import NETWORK_ALIAS as DASHBOARD_ALIAS
from components.docker.docker_common import ContainerLimits
from components.docker.engine import EngineFeatures
from components.docker.postgres import PostgresArgs
from components.docker.scheduled_backup import BackupArgs
from components.settings import DeploymentSettings, S3Settings, StackSettings
from components.docker.tls_proxy import Route, TlsProxyArgs


def limits(settings: StackSettings, engine: EngineFeatures) -> ContainerLimits:
    c = settings.containers
    return ContainerLimits(restart_policy=c.restart_policy, memory_mb=c.memory_limit_mb,
                           cpus=c.cpus, log_max_size_mb=c.log_max_size_mb,
                           log_max_files=c.log_max_files,
                           fast_start_probes=engine.start_interval)


def backend_env(settings: StackSettings, deployment: DeploymentSettings,
                instance_secret: str, database_url: Optional[str] = None) -> list[str]:
    """The backend's environment as `NAME=value` strings, following upstream's compose file.

    Flags that run_backend.sh tests with `${VAR:+--flag}` (and booleans generally) are
    omitted when false: upstream switches them on for any non-empty value, "false" too.
    Variables the chosen release does not read are left out.
    """
    tuning = settings.tuning
    env: list[tuple[str, str]] = [
        ("INSTANCE_NAME", deployment.instance_name),
        ("INSTANCE_SECRET", instance_secret),
        ("CONVEX_CLOUD_ORIGIN", deployment.cloud_origin),
        ("CONVEX_SITE_ORIGIN", deployment.site_origin),
        ("RUST_LOG", tuning.rust_log),
        ("DOCUMENT_RETENTION_DELAY", str(tuning.document_retention_delay_seconds)),
        ("APPLICATION_MAX_CONCURRENT_QUERIES", str(tuning.max_concurrent_queries)),
        ("APPLICATION_MAX_CONCURRENT_MUTATIONS", str(tuning.max_concurrent_mutations)),
        ("APPLICATION_MAX_CONCURRENT_V8_ACTIONS", str(tuning.max_concurrent_v8_actions)),
        ("APPLICATION_MAX_CONCURRENT_NODE_ACTIONS", str(tuning.max_concurrent_node_actions)),
    ]
    optional = [
        ("RUST_BACKTRACE", tuning.rust_backtrace),
        ("LOG_FORMAT", tuning.log_format),
        ("V8_ACTION_USER_TIMEOUT_SECS", tuning.v8_action_timeout_seconds or ""),
        ("NODE_ACTION_USER_TIMEOUT_SECS", tuning.node_action_timeout_seconds or ""),
        ("ACTIONS_USER_TIMEOUT_SECS", tuning.actions_user_timeout_seconds or ""),
        ("HTTP_SERVER_TIMEOUT_SECONDS", tuning.http_server_timeout_seconds or ""),
        ("CONVEX_RELEASE_VERSION_DEV", tuning.release_version_dev),
    ]
    flags = [
        ("DISABLE_BEACON", tuning.disable_beacon),
        ("REDACT_LOGS_TO_CLIENT", tuning.redact_logs_to_client),
        ("DISABLE_METRICS_ENDPOINT", tuning.disable_metrics_endpoint),
    ]

    database = settings.database
    if database.kind != "sqlite":
        url = database_url if database_url is not None else database.url.reveal()
        env.append((database.env_var, url))
        flags.append(("DO_NOT_REQUIRE_SSL", not database.require_ssl))
        optional.append(("POSTGRES_MAX_CONNECTIONS", database.pool_size or ""))
        if database.ca_cert:
            env.append((database.ca_env_var, CA_CERT_PATH))
    if settings.s3 is not None:
        _add_s3_env(settings.s3, env, optional, flags)

    env += [(name, str(value)) for name, value in optional if value != ""]
    env += [(name, "true") for name, enabled in flags if enabled]
    env = [(name, value) for name, value in env if name not in tuning.unread_env]
    env += list(tuning.extra_env)
    return [f"{name}={value}" for name, value in env]


def _add_s3_env(s3: S3Settings, env: list, optional: list, flags: list) -> None:
    env.append(("AWS_REGION", s3.region))
    for kind, bucket in s3.buckets.items():
        env.append((f"S3_STORAGE_{kind.upper().replace('-', '_')}_BUCKET", bucket))
    optional += [
        ("S3_ENDPOINT_URL", s3.endpoint),
        ("AWS_ACCESS_KEY_ID", s3.access_key_id.reveal() if s3.access_key_id else ""),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key.reveal() if s3.secret_access_key else ""),
        ("AWS_SESSION_TOKEN", s3.session_token.reveal() if s3.session_token else ""),
    ]
    flags += [
        ("AWS_S3_FORCE_PATH_STYLE", s3.force_path_style),
        ("AWS_S3_DISABLE_SSE", s3.disable_sse),
        ("AWS_S3_DISABLE_CHECKSUMS", s3.disable_checksums),
    ]


# Stand-ins for values known only as Outputs while the entries are put together; NUL never
# appears in a real environment value (the settings refuse it).
_SECRET_SLOT = "\x00instance-secret\x00"
_DATABASE_SLOT = "\x00database-url\x00"
_SECRET_ENV = frozenset({"INSTANCE_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                         "AWS_SESSION_TOKEN"})


def secret_env_names(settings: StackSettings) -> frozenset[str]:
    """Variables whose values are secrets: hidden in previews and encrypted in the state."""
    names = set(_SECRET_ENV)
    if settings.database.kind != "sqlite":
        names.add(settings.database.env_var)
    if settings.tuning.extra_env_secret:
        names.update(name for name, _ in settings.tuning.extra_env)
    return frozenset(names)


def backend_environment(settings: StackSettings, deployment: DeploymentSettings,
                        instance_secret: pulumi.Output[str],
                        database_url: Optional[pulumi.Output[str]]) -> list:
    """The backend's environment with only the secret entries secret, so `pulumi preview
    --diff` shows a changed setting (RUST_LOG=info => RUST_LOG=debug) and hides secrets."""
    entries = backend_env(settings, deployment, _SECRET_SLOT,
                          _DATABASE_SLOT if database_url is not None else None)
    secret_names = secret_env_names(settings)
    environment: list = []
    for entry in entries:
        if _SECRET_SLOT in entry:
            environment.append(pulumi.Output.secret(instance_secret.apply(
                lambda value, entry=entry: entry.replace(_SECRET_SLOT, value or ""))))
        elif _DATABASE_SLOT in entry:
            environment.append(pulumi.Output.secret(database_url.apply(
                lambda value, entry=entry: entry.replace(_DATABASE_SLOT, value or ""))))
        elif entry.partition("=")[0] in secret_names:
            environment.append(pulumi.Output.secret(entry))
        else:
            environment.append(entry)
    return environment


def backend_args(settings: StackSettings, engine: EngineFeatures,
                 deployment: DeploymentSettings,
                 image: pulumi.Input[str], network_name: pulumi.Input[str],
                 instance_secret: pulumi.Output[str],
                 database_url: Optional[pulumi.Output[str]],
                 depends_on: Sequence[pulumi.Resource]) -> BackendArgs:
    environment = backend_environment(settings, deployment, instance_secret, database_url)
    return BackendArgs(
        instance_name=deployment.instance_name,
        image=image,
        network_name=network_name,
        environment=environment,
        api_port=deployment.backend_port,
        site_port=deployment.site_port,
        bind_address=settings.bind_address,
        data_volume_name=deployment.data_volume_name,
        adopted_volume=deployment.adopted_volume,
        protect_data=settings.protect_data,
        start_timeout_seconds=settings.containers.backend_start_timeout_seconds,
        limits=limits(settings, engine),
        command=settings.tuning.backend_args,
        ca_certificate=settings.database.ca_cert,
        stack=settings.stack,
        docker_host=settings.docker_host,
        depends_on=depends_on,
    )


def dashboard_args(settings: StackSettings, engine: EngineFeatures,
                   deployment: DeploymentSettings,
                   image: pulumi.Input[str], network_name: pulumi.Input[str],
                   backend_healthy: pulumi.Resource) -> DashboardArgs:
    return DashboardArgs(
        instance_name=deployment.instance_name, image=image, network_name=network_name,
        deployment_url=deployment.cloud_origin, port=deployment.dashboard_port,
        bind_address=settings.bind_address,
        limits=limits(settings, engine), stack=settings.stack, docker_host=settings.docker_host,
        depends_on=[backend_healthy])


def postgres_args(settings: StackSettings, engine: EngineFeatures,
                  deployment: DeploymentSettings,
                  image: pulumi.Input[str], network_name: pulumi.Input[str]) -> PostgresArgs:
    return PostgresArgs(
        instance_name=deployment.instance_name, image=image, network_name=network_name,
        database=deployment.database_name,
        max_connections=settings.database.server_max_connections,
        protect_data=settings.protect_data, limits=limits(settings, engine), stack=settings.stack,
        docker_host=settings.docker_host)


def tls_routes(settings: StackSettings, deployment: DeploymentSettings) -> list[Route]:
    """API and HTTP actions to the backend (HTTP actions on the API domain under /http
    when no siteDomain is given), the dashboard to the dashboard."""
    routes = [Route(deployment.api_domain, f"{BACKEND_ALIAS}:{API_PORT}", block_metrics=True)]
    if deployment.site_domain:
        routes.append(Route(deployment.site_domain, f"{BACKEND_ALIAS}:{SITE_PROXY_PORT}",
                            block_metrics=True))
    if settings.dashboard:
        routes.append(Route(deployment.dashboard_domain, f"{DASHBOARD_ALIAS}:{DASHBOARD_PORT}"))
    return routes


def tls_args(settings: StackSettings, engine: EngineFeatures, deployment: DeploymentSettings,
             image: pulumi.Input[str], network_name: pulumi.Input[str],
             depends_on: Sequence[pulumi.Resource]) -> TlsProxyArgs:
    tls = settings.tls
    return TlsProxyArgs(
        instance_name=deployment.instance_name, image=image, network_name=network_name,
        routes=tls_routes(settings, deployment), email=tls.email,
        bind_address=tls.bind_address, http_port=tls.http_port, https_port=tls.https_port,
        limits=limits(settings, engine), stack=settings.stack, docker_host=settings.docker_host,
        depends_on=depends_on)


def backup_args(settings: StackSettings, engine: EngineFeatures, deployment: DeploymentSettings,
                image: pulumi.Input[str], network_name: pulumi.Input[str],
                admin_key: pulumi.Output[str],
                depends_on: Sequence[pulumi.Resource]) -> BackupArgs:
    backups = settings.backups
    return BackupArgs(
        instance_name=deployment.instance_name, image=image, network_name=network_name,
        backend_url=f"http://{BACKEND_ALIAS}:{API_PORT}", admin_key=admin_key,
        schedule=backups.schedule, keep=backups.keep, protect_data=settings.protect_data,
        limits=limits(settings, engine), stack=settings.stack, docker_host=settings.docker_host,
        depends_on=depends_on)

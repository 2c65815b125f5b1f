"""ConvexBackend: the backend image, its data volume and its container."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_docker as docker

from components import docker_common
from components.settings import DeploymentSettings, StackSettings

API_PORT = 3210
SITE_PROXY_PORT = 3211
DATA_PATH = "/convex/data"
NETWORK_ALIAS = "backend"


@dataclass(frozen=True)
class BackendArgs:
    settings: StackSettings
    deployment: DeploymentSettings
    image_id: pulumi.Input[str]  # the pulled backend image (ConvexImages)
    network_name: pulumi.Input[str]
    instance_secret: pulumi.Output[str]  # secret
    # Set for a provisioned Postgres (secret); external URLs come from settings.
    database_url: Optional[pulumi.Output[str]] = None
    depends_on: Sequence[pulumi.Resource] = ()


def build_backend_env(settings: StackSettings, deployment: DeploymentSettings,
                      instance_secret: str, database_url: Optional[str] = None) -> list[str]:
    """The backend's environment as `NAME=value` strings, following upstream's compose file.

    Flags that run_backend.sh tests with `${VAR:+--flag}` (and booleans generally) are
    omitted when false: upstream switches them on for any non-empty value, "false" too.
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
    optional_values = [
        ("RUST_BACKTRACE", tuning.rust_backtrace),
        ("V8_ACTION_USER_TIMEOUT_SECS", tuning.v8_action_timeout_seconds or ""),
        ("NODE_ACTION_USER_TIMEOUT_SECS", tuning.node_action_timeout_seconds or ""),
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

    s3 = settings.s3
    if s3 is not None:
        env.append(("AWS_REGION", s3.region))
        for kind, bucket in s3.buckets.items():
            env.append((f"S3_STORAGE_{kind.upper().replace('-', '_')}_BUCKET", bucket))
        optional_values += [
            ("S3_ENDPOINT_URL", s3.endpoint),
            ("AWS_ACCESS_KEY_ID", s3.access_key_id.reveal() if s3.access_key_id else ""),
            ("AWS_SECRET_ACCESS_KEY",
             s3.secret_access_key.reveal() if s3.secret_access_key else ""),
            ("AWS_SESSION_TOKEN", s3.session_token.reveal() if s3.session_token else ""),
        ]
        flags += [
            ("AWS_S3_FORCE_PATH_STYLE", s3.force_path_style),
            ("AWS_S3_DISABLE_SSE", s3.disable_sse),
            ("AWS_S3_DISABLE_CHECKSUMS", s3.disable_checksums),
        ]

    env += [(name, str(value)) for name, value in optional_values if value != ""]
    env += [(name, "true") for name, enabled in flags if enabled]
    env += list(tuning.extra_env)
    return [f"{name}={value}" for name, value in env]


class ConvexBackend(pulumi.ComponentResource):
    """The Convex backend: data volume and healthy container."""

    def __init__(self, name: str, args: BackendArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:Backend", name, None, opts)
        settings, deployment = args.settings, args.deployment
        stack, instance = settings.stack, deployment.instance_name
        adopted_volume = deployment.data_volume_name != f"{instance}-data"

        # An adopted volume keeps its own (label-free) definition so that `pulumi import`
        # matches it exactly and no replacement is ever planned.
        self.volume = docker.Volume(
            f"{name}-data",
            name=deployment.data_volume_name,
            labels=None if adopted_volume else docker_common.labels(
                docker.VolumeLabelArgs, stack, instance, "data"),
            opts=docker_common.data_volume_options(self, settings.protect_data),
        )

        database_url = args.database_url
        env = pulumi.Output.all(args.instance_secret, database_url).apply(
            lambda values: build_backend_env(settings, deployment, values[0], values[1]))
        start_timeout = settings.containers.backend_start_timeout_seconds
        bind = settings.bind_address
        self.container = docker.Container(
            f"{name}-container",
            name=f"{instance}-backend",
            image=args.image_id,
            # The env carries the instance secret and any database or AWS credentials.
            envs=pulumi.Output.secret(env),
            ports=[
                docker_common.published_port(API_PORT, deployment.backend_port, bind),
                docker_common.published_port(SITE_PROXY_PORT, deployment.site_port, bind),
            ],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name,
                                                container_path=DATA_PATH)],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(
                name=args.network_name, aliases=[NETWORK_ALIAS])],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD-SHELL", f"curl -f http://localhost:{API_PORT}/version"],
                interval="5s",
                timeout="5s",
                retries=3,
                # Failures during the start period do not count, so first-start
                # migrations may take up to the timeout; probing every second during it
                # lets `pulumi up` move on the moment the backend answers.
                start_period=f"{start_timeout}s",
                start_interval="1s",
            ),
            stop_signal="SIGINT",
            stop_timeout=10,
            destroy_grace_seconds=10,
            wait=True,
            wait_timeout=start_timeout,
            labels=docker_common.labels(docker.ContainerLabelArgs, stack, instance, "backend"),
            **docker_common.runtime_options(settings.containers),
            opts=docker_common.container_options(self, args.depends_on, ["envs"]),
        )

        self.url = deployment.cloud_origin
        self.site_url = deployment.site_origin
        self.register_outputs({
            "containerName": self.container.name,
            "volumeName": self.volume.name,
            "url": self.url,
        })

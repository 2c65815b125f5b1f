"""ConvexPostgres: a Postgres container on the deployment's private network.

Used when `provisionPostgres` is true. The database named after the instance (dashes
become underscores) is created by the image's POSTGRES_DB on first start, which is the
database the Convex backend looks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components import docker_common
from components.settings import DeploymentSettings, StackSettings

USER = "convex"
PORT = 5432
DATA_PATH = "/var/lib/postgresql/data"


@dataclass(frozen=True)
class PostgresArgs:
    settings: StackSettings
    deployment: DeploymentSettings
    image_id: pulumi.Input[str]  # the pulled Postgres image (ConvexImages)
    network_name: pulumi.Input[str]


class ConvexPostgres(pulumi.ComponentResource):
    """Pinned Postgres with a protected volume, a generated password and a healthcheck."""

    def __init__(self, name: str, args: PostgresArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:Postgres", name, None, opts)
        settings, deployment = args.settings, args.deployment
        stack, instance = settings.stack, deployment.instance_name
        database = deployment.database_name
        container_name = f"{instance}-postgres"

        # Letters and digits only: the password goes into a URL unescaped.
        self.password = random.RandomPassword(
            f"{name}-password", length=32, special=False,
            opts=pulumi.ResourceOptions(parent=self, protect=settings.protect_data))
        self.volume = docker.Volume(
            f"{name}-data",
            name=f"{instance}-pgdata",
            labels=docker_common.labels(docker.VolumeLabelArgs, stack, instance, "postgres-data"),
            opts=docker_common.data_volume_options(self, settings.protect_data),
        )
        env = self.password.result.apply(lambda password: [
            f"POSTGRES_USER={USER}",
            f"POSTGRES_PASSWORD={password}",
            f"POSTGRES_DB={database}",
        ])
        self.container = docker.Container(
            f"{name}-container",
            name=container_name,
            image=args.image_id,
            envs=pulumi.Output.secret(env),
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name,
                                                container_path=DATA_PATH)],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(
                name=args.network_name, aliases=["postgres"])],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD-SHELL", f"pg_isready -U {USER} -d {database}"],
                interval="5s", timeout="5s", retries=5,
                start_period="60s", start_interval="1s",
            ),
            stop_timeout=30,
            wait=True,
            wait_timeout=180,
            labels=docker_common.labels(docker.ContainerLabelArgs, stack, instance, "postgres"),
            **docker_common.runtime_options(settings.containers),
            opts=docker_common.container_options(self, secret_outputs=["envs"]),
        )
        # No database in the path: the backend picks the instance's database itself.
        # The network is private to the deployment, so SSL is not required on it.
        # (A password an engine does not report yields a URL the backend refuses loudly,
        # never a missing URL, which would silently mean SQLite.)
        self.url = pulumi.Output.secret(self.password.result.apply(
            lambda password: f"postgresql://{USER}:{password or ''}@{container_name}:{PORT}"))
        self.register_outputs({"containerName": self.container.name,
                               "volumeName": self.volume.name})

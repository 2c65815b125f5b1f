"""ConvexPostgres: a Postgres container on the deployment's private network.

The database named after the instance (dashes become underscores) is created by the
image's POSTGRES_DB on first start, which is the database the Convex backend looks for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.docker import docker_common
from components.docker.docker_common import ContainerLimits
from components.docker.health import HealthGate

USER = "convex"
PORT = 5432
DATA_PATH = "/var/lib/postgresql/data"
NETWORK_ALIAS = "postgres"
START_TIMEOUT_SECONDS = 180
# Postgres shuts down cleanly on SIGINT ("fast" shutdown); give it time to checkpoint.
STOP_GRACE_SECONDS = 60


@dataclass(frozen=True)
class PostgresArgs:
    instance_name: str
    image: pulumi.Input[str]
    network_name: pulumi.Input[str]
    database: str  # created on first start; the backend uses the instance's database
    max_connections: int = 200
    protect_data: bool = True
    limits: ContainerLimits = field(default_factory=ContainerLimits)
    stack: str = ""
    docker_host: str = ""


def health_test(database: str) -> list[str]:
    """A query over TCP in the instance's database. During first start the image runs a
    temporary server on the Unix socket only, before that database exists, and a plain
    `pg_isready` would call that healthy; `pg_isready` also answers yes for a database that
    does not exist. The image trusts connections from 127.0.0.1 inside the container."""
    return ["CMD", "psql", "--no-password", "--host", "127.0.0.1", "--port", str(PORT),
            "--username", USER, "--dbname", database, "--tuples-only", "--command",
            "SELECT 1"]


class ConvexPostgres(pulumi.ComponentResource):
    """Pinned Postgres with a protected volume, a generated password and a health gate."""

    password: random.RandomPassword
    volume: docker.Volume
    container: docker.Container
    healthy: HealthGate
    url: pulumi.Output[str]

    def __init__(self, name: str, args: PostgresArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:Postgres", name, None, opts)
        container_name = f"{args.instance_name}-postgres"

        # Letters and digits only: the password goes into a URL unescaped.
        self.password = random.RandomPassword(
            f"{name}-password", length=32, special=False,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect_data))
        self.volume = docker.Volume(
            f"{name}-data",
            name=f"{args.instance_name}-pgdata",
            labels=docker_common.labels(docker.VolumeLabelArgs, args.stack, args.instance_name,
                                        "postgres-data"),
            opts=docker_common.data_volume_options(self, args.protect_data),
        )
        env = self.password.result.apply(lambda password: [
            f"POSTGRES_USER={USER}",
            f"POSTGRES_PASSWORD={password}",
            f"POSTGRES_DB={args.database}",
        ])
        self.container = docker.Container(
            f"{name}-container",
            name=container_name,
            image=args.image,
            envs=pulumi.Output.secret(env),
            command=["postgres", "-c", f"max_connections={args.max_connections}"],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name,
                                                container_path=DATA_PATH)],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(
                name=args.network_name, aliases=[NETWORK_ALIAS])],
            healthcheck=docker_common.healthcheck(
                health_test(args.database), args.limits,
                interval=5, timeout=5, retries=5, start_period=START_TIMEOUT_SECONDS),
            stop_signal="SIGINT",
            stop_timeout=STOP_GRACE_SECONDS,
            # Delete and replace stop with this grace, not stop_timeout: without it Postgres
            # would get SIGKILL at once.
            destroy_grace_seconds=STOP_GRACE_SECONDS,
            labels=docker_common.container_labels(args.stack, args.instance_name, "postgres",
                                                  args.limits),
            **docker_common.runtime_options(args.limits),
            opts=docker_common.container_options(self, secret_outputs=["envs"]),
        )
        self.healthy = HealthGate(f"{name}-healthy", self.container, START_TIMEOUT_SECONDS,
                                  args.docker_host, pulumi.ResourceOptions(parent=self))
        # No database in the path: the backend picks the instance's database itself.
        # The network is private to the deployment, so SSL is not required on it.
        # (A password an engine does not report yields a URL the backend refuses loudly,
        # never a missing URL, which would silently mean SQLite.)
        self.url = pulumi.Output.secret(self.password.result.apply(
            lambda password: f"postgresql://{USER}:{password or ''}@{container_name}:{PORT}"))
        self.register_outputs({"containerName": self.container.name,
                               "volumeName": self.volume.name})

"""ScheduledBackup: a container that exports the deployment on a cron schedule.

It runs ops/backup.py and its modules (standard library only, uploaded into a pinned Python
image, so nothing is downloaded when it starts) against the backend on the deployment's
private network, and keeps the newest `keep` snapshots (file storage included) in a
retained `<instance>-backups` volume. A failed run makes the container unhealthy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_docker as docker

from components.core.backups import ENTRY, client_files
from components.docker import docker_common
from components.docker.docker_common import ContainerLimits
from components.docker.health import HealthGate

SCRIPT_DIR = "/app"
SCRIPT_PATH = f"{SCRIPT_DIR}/{ENTRY}"
BACKUP_PATH = "/backups"
START_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class BackupArgs:
    instance_name: str
    image: pulumi.Input[str]  # a pinned Python 3 image
    network_name: pulumi.Input[str]
    backend_url: str  # as reached on the deployment's network
    admin_key: pulumi.Input[str]  # secret
    schedule: str  # 5-field cron expression, UTC
    keep: int = 7
    protect_data: bool = True
    limits: ContainerLimits = field(default_factory=ContainerLimits)
    stack: str = ""
    docker_host: str = ""
    depends_on: Sequence[pulumi.Resource] = ()
    # Off-host copies (components/core/backups.py): the client's flags, and the secret
    # environment it reads the bucket's credentials and the encryption key from.
    offsite_arguments: Sequence[str] = ()
    offsite_secrets: Mapping[str, str] = field(default_factory=dict)


def command(args: BackupArgs) -> list[str]:
    return ["python3", SCRIPT_PATH, "schedule", "--url", args.backend_url, "--dest",
            BACKUP_PATH, "--keep", str(args.keep), "--cron", args.schedule,
            *args.offsite_arguments]


class ScheduledBackup(pulumi.ComponentResource):
    """Scheduled exports of one deployment into a retained volume."""

    volume: docker.Volume
    container: docker.Container
    healthy: HealthGate

    def __init__(self, name: str, args: BackupArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:ScheduledBackup", name, None, opts)
        self.volume = docker.Volume(
            f"{name}-data", name=f"{args.instance_name}-backups",
            labels=docker_common.labels(docker.VolumeLabelArgs, args.stack, args.instance_name,
                                        "backups"),
            opts=docker_common.data_volume_options(self, args.protect_data))
        env = pulumi.Output.from_input(args.admin_key).apply(
            lambda key: [f"CONVEX_SELF_HOSTED_ADMIN_KEY={key}",
                         *(f"{name}={value}" for name, value in args.offsite_secrets.items())])
        self.container = docker.Container(
            f"{name}-container",
            name=f"{args.instance_name}-backup",
            image=args.image,
            envs=pulumi.Output.secret(env),
            command=command(args),
            uploads=[docker.ContainerUploadArgs(file=f"{SCRIPT_DIR}/{name}", content=text)
                     for name, text in client_files().items()],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name,
                                                container_path=BACKUP_PATH)],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.network_name)],
            healthcheck=docker_common.healthcheck(
                ["CMD", "python3", SCRIPT_PATH, "health", "--dest", BACKUP_PATH], args.limits,
                interval=60, timeout=10, retries=1, start_period=START_TIMEOUT_SECONDS),
            # A run in progress finishes its download or leaves only a partial file that
            # the next run removes; SIGTERM stops the scheduler between runs.
            stop_timeout=30,
            destroy_grace_seconds=30,
            labels=docker_common.container_labels(args.stack, args.instance_name, "backup",
                                                  args.limits),
            **docker_common.runtime_options(args.limits),
            opts=docker_common.container_options(self, args.depends_on, ["envs"]),
        )
        self.healthy = HealthGate(f"{name}-healthy", self.container, START_TIMEOUT_SECONDS,
                                  args.docker_host, pulumi.ResourceOptions(parent=self))
        self.register_outputs({"containerName": self.container.name,
                               "volumeName": self.volume.name})

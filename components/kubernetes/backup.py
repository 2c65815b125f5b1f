"""Scheduled backups on a cluster: a CronJob running the same backup client as the other
targets (ops/backup.py and its modules, from a ConfigMap) once per schedule, into a retained claim.

The client needs nothing but Python's standard library, the backend's Service and the
admin key (from a Secret, never in plain `env`). A failed run is a failed Job
(`kubectl get jobs`); runs never overlap (concurrencyPolicy Forbid).
"""

from __future__ import annotations

import pulumi
from pulumi_kubernetes.batch.v1 import (
    CronJob,
    CronJobSpecArgs,
    JobSpecArgs,
    JobTemplateSpecArgs,
)
from pulumi_kubernetes.core.v1 import (
    ConfigMap,
    ConfigMapVolumeSourceArgs,
    ContainerArgs,
    EmptyDirVolumeSourceArgs,
    EnvVarArgs,
    EnvVarSourceArgs,
    PersistentVolumeClaim,
    PersistentVolumeClaimVolumeSourceArgs,
    PodSecurityContextArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    Secret,
    SecretKeySelectorArgs,
    VolumeArgs,
    VolumeMountArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.core.backups import ENTRY, client_files, offsite_arguments, offsite_secrets
from components.core.spec import DeploymentSpec
from components.kubernetes import workloads as w
from components.settings import KubernetesSettings

SCRIPT_DIR, BACKUP_PATH = "/app", "/backups"
RUN_TIMEOUT = 1800  # the client's own --timeout; the Job is stopped some minutes later
KEY_ENV = "CONVEX_SELF_HOSTED_ADMIN_KEY"


def command(spec: DeploymentSpec) -> list[str]:
    return ["python3", f"{SCRIPT_DIR}/{ENTRY}", "once",
            "--url", f"http://{spec.instance_name}-backend:{w.API_PORT}",
            "--dest", BACKUP_PATH, "--keep", str(spec.backups.keep),
            "--timeout", str(RUN_TIMEOUT), *offsite_arguments(spec.backups, spec.instance_name)]


class BackupJob(pulumi.ComponentResource):
    def __init__(self, name: str, spec: DeploymentSpec, namespace: pulumi.Input[str],
                 admin_key: pulumi.Output[str], claim: PersistentVolumeClaim,
                 kube: KubernetesSettings, opts: pulumi.ResourceOptions):
        super().__init__("convex:selfhost:KubernetesBackup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        instance = spec.instance_name
        secrets = offsite_secrets(spec.backups)  # bucket credentials, encryption key

        def meta(suffix: str) -> ObjectMetaArgs:
            return ObjectMetaArgs(name=f"{instance}-{suffix}", namespace=namespace,
                                  labels=w.labels(spec, "backup"))

        key = Secret(f"{name}-key", metadata=meta("backup"), type="Opaque",
                     string_data=pulumi.Output.secret(admin_key.apply(
                         lambda value: {KEY_ENV: value or "", **secrets})), opts=child)
        script = ConfigMap(f"{name}-client", metadata=meta("backup-client"),
                           data=client_files(), opts=child)
        container = ContainerArgs(
            name="backup", image=spec.backups.image, command=command(spec),
            env=[*(EnvVarArgs(name=name, value_from=EnvVarSourceArgs(
                       secret_key_ref=SecretKeySelectorArgs(name=key.metadata.name, key=name)))
                   for name in (KEY_ENV, *secrets)),
                 EnvVarArgs(name="PYTHONDONTWRITEBYTECODE", value="1")],
            volume_mounts=[VolumeMountArgs(name="client", mount_path=SCRIPT_DIR,
                                           read_only=True),
                           VolumeMountArgs(name="backups", mount_path=BACKUP_PATH),
                           VolumeMountArgs(name="tmp", mount_path="/tmp")],
            security_context=w.container_security(run_as=w.BACKUP_UID, read_only_root=True))
        pod = PodSpecArgs(
            restart_policy="Never", containers=[container],
            automount_service_account_token=False,
            # The claim's files belong to this group, so the unprivileged client may write.
            security_context=PodSecurityContextArgs(fs_group=w.BACKUP_UID),
            volumes=[VolumeArgs(name="client", config_map=ConfigMapVolumeSourceArgs(
                         name=script.metadata.name)),
                     VolumeArgs(name="backups", persistent_volume_claim=(
                         PersistentVolumeClaimVolumeSourceArgs(
                             claim_name=claim.metadata.name))),
                     VolumeArgs(name="tmp", empty_dir=EmptyDirVolumeSourceArgs())])
        self.cron_job = CronJob(
            f"{name}-cronjob", metadata=meta("backup"),
            spec=CronJobSpecArgs(
                schedule=spec.backups.schedule, time_zone="Etc/UTC",
                concurrency_policy="Forbid", successful_jobs_history_limit=3,
                failed_jobs_history_limit=3, starting_deadline_seconds=3600,
                job_template=JobTemplateSpecArgs(spec=JobSpecArgs(
                    backoff_limit=0, active_deadline_seconds=RUN_TIMEOUT + 300,
                    template=PodTemplateSpecArgs(
                        metadata=ObjectMetaArgs(labels=w.labels(spec, "backup")),
                        spec=pod)))),
            opts=child)
        self.register_outputs({"cronJob": self.cron_job.metadata.name})

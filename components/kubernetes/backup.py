"""Scheduled backups on a cluster: a CronJob running the same backup client as the other
targets (ops/backup.py and its modules, from a ConfigMap) once per schedule, into a retained claim.

The client needs nothing but Python's standard library, the backend's Service and the
admin key (from a Secret, never in plain `env`). A failed run is a failed Job
(`kubectl get jobs`); runs never overlap (concurrencyPolicy Forbid).

Beside it, a suspended CronJob `<instance>-drill` is the restore drill's template
(`python -m ops.drill` makes a Job of it): a throwaway backend of the same release, with its
own random instance secret and no volume, as a native sidecar (an init container that
keeps running, Kubernetes 1.29+), and the client's `drill` importing the newest snapshot
of the backups claim (or of the bucket, without local copies) into it. Nothing of the real
deployment is touched; the Job's pod is gone with it.
"""

from __future__ import annotations

import pulumi
import pulumi_random as random
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

from components.admin_key import issue_admin_key
from components.core.backups import ENTRY, client_files, offsite_arguments, offsite_secrets
from components.core.spec import DeploymentSpec
from components.kubernetes import workloads as w
from components.settings import KubernetesSettings

SCRIPT_DIR, BACKUP_PATH = "/app", "/backups"
RUN_TIMEOUT = 1800  # the client's own --timeout; the Job is stopped some minutes later
KEY_ENV = "CONVEX_SELF_HOSTED_ADMIN_KEY"
DRILL_TIMEOUT = 3600  # the drill's import and its export, each


def drill_instance_for(instance_name: str) -> str:
    """The drill CronJob's name, and its throwaway backend's instance name."""
    return f"{instance_name}-drill"


def drill_command(spec: DeploymentSpec) -> list[str]:
    """The client's drill against the sidecar: the claim's newest snapshot, or the
    bucket's when no local copies are kept."""
    source = (["--dest", BACKUP_PATH] if spec.backups.local or not spec.backups.s3_bucket
              else offsite_arguments(spec.backups, spec.instance_name))
    return ["python3", f"{SCRIPT_DIR}/{ENTRY}", "drill",
            "--url", f"http://127.0.0.1:{w.API_PORT}", *source,
            "--wait", str(spec.resources.backend_start_timeout_seconds),
            "--timeout", str(DRILL_TIMEOUT)]


def command(spec: DeploymentSpec) -> list[str]:
    return ["python3", f"{SCRIPT_DIR}/{ENTRY}", "once",
            "--url", f"http://{spec.instance_name}-backend:{w.API_PORT}",
            "--dest", BACKUP_PATH, "--keep", str(spec.backups.keep),
            "--timeout", str(RUN_TIMEOUT), *offsite_arguments(spec.backups, spec.instance_name)]


class BackupJob(pulumi.ComponentResource):
    def __init__(self, name: str, spec: DeploymentSpec, namespace: pulumi.Input[str],
                 admin_key: pulumi.Output[str], claim: PersistentVolumeClaim,
                 kube: KubernetesSettings, backend_image: str, opts: pulumi.ResourceOptions):
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
        self.drill = self._drill(name, spec, backend_image, meta, child, script, volumes=[
            pod.volumes[0], VolumeArgs(name="backups", persistent_volume_claim=(
                PersistentVolumeClaimVolumeSourceArgs(claim_name=claim.metadata.name,
                                                      read_only=True))),
            pod.volumes[2], VolumeArgs(name="data", empty_dir=EmptyDirVolumeSourceArgs())])
        self.register_outputs({"cronJob": self.cron_job.metadata.name,
                               "drillCronJob": self.drill.metadata.name})

    @staticmethod
    def _drill(name, spec: DeploymentSpec, backend_image: str, meta, child, script,
               volumes) -> CronJob:
        """The restore drill's template: suspended, started by `python -m ops.drill`."""
        instance = drill_instance_for(spec.instance_name)
        drill_secret = random.RandomBytes(f"{name}-drill-secret", length=32, opts=child)
        secrets = offsite_secrets(spec.backups) if not spec.backups.local else {}
        values = pulumi.Output.secret(drill_secret.hex.apply(lambda hexed: {
            "INSTANCE_SECRET": hexed or "",
            KEY_ENV: issue_admin_key(instance, hexed) if hexed else "", **secrets}))
        key = Secret(f"{name}-drill-key", metadata=meta("drill"), type="Opaque",
                     string_data=values, opts=child)

        def from_secret(env: str) -> EnvVarArgs:
            return EnvVarArgs(name=env, value_from=EnvVarSourceArgs(
                secret_key_ref=SecretKeySelectorArgs(name=key.metadata.name, key=env)))
        backend = ContainerArgs(
            name="drill-backend", image=backend_image, restart_policy="Always",
            env=[EnvVarArgs(name="INSTANCE_NAME", value=instance),
                 from_secret("INSTANCE_SECRET"),
                 EnvVarArgs(name="DISABLE_BEACON", value="true")],
            ports=w.backend_ports(), resources=w.resources(spec),
            volume_mounts=[VolumeMountArgs(name="data", mount_path=w.DATA_PATH)],
            security_context=w.container_security())
        client = ContainerArgs(
            name="drill", image=spec.backups.image, command=drill_command(spec),
            env=[from_secret(KEY_ENV), *map(from_secret, secrets),
                 EnvVarArgs(name="PYTHONDONTWRITEBYTECODE", value="1")],
            volume_mounts=[VolumeMountArgs(name="client", mount_path=SCRIPT_DIR,
                                           read_only=True),
                           VolumeMountArgs(name="backups", mount_path=BACKUP_PATH,
                                           read_only=True),
                           VolumeMountArgs(name="tmp", mount_path="/tmp")],
            security_context=w.container_security(run_as=w.BACKUP_UID, read_only_root=True))
        pod = PodSpecArgs(restart_policy="Never", init_containers=[backend],
                          containers=[client], automount_service_account_token=False,
                          security_context=PodSecurityContextArgs(fs_group=w.BACKUP_UID),
                          volumes=volumes)
        return CronJob(
            f"{name}-drill", metadata=meta("drill"),
            spec=CronJobSpecArgs(
                schedule=spec.backups.schedule, time_zone="Etc/UTC", suspend=True,
                concurrency_policy="Forbid", successful_jobs_history_limit=1,
                failed_jobs_history_limit=1,
                job_template=JobTemplateSpecArgs(spec=JobSpecArgs(
                    backoff_limit=0, ttl_seconds_after_finished=3600,
                    active_deadline_seconds=2 * DRILL_TIMEOUT + 600,
                    template=PodTemplateSpecArgs(
                        metadata=ObjectMetaArgs(labels=w.labels(spec, "drill")),
                        spec=pod)))),
            opts=child)

"""KubernetesDeployment: one Convex instance on a cluster.

Per deployment: an instance secret (pulumi-random, protected with the data) and the admin
keys derived from it; a Secret with every secret variable (referenced with secretKeyRef,
never in plain `env`); a retained data PersistentVolumeClaim; the backend as a
StatefulSet of exactly one replica; Services; the dashboard as a Deployment; optionally an
Ingress and a backup CronJob (backup.py). `pulumi up` ends when the provider has seen the
workloads ready (its await logic), so a backend that never answers /version fails it.
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_random as random
from pulumi_kubernetes.apps.v1 import Deployment as K8sDeployment
from pulumi_kubernetes.apps.v1 import (
    DeploymentSpecArgs,
    StatefulSet,
    StatefulSetSpecArgs,
    StatefulSetUpdateStrategyArgs,
)
from pulumi_kubernetes.core.v1 import (
    ConfigMap,
    ConfigMapVolumeSourceArgs,
    ContainerArgs,
    ContainerPortArgs,
    EnvVarArgs,
    PersistentVolumeClaim,
    PersistentVolumeClaimSpecArgs,
    PersistentVolumeClaimVolumeSourceArgs,
    PodSecurityContextArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    Secret,
    Service,
    ServicePortArgs,
    ServiceSpecArgs,
    VolumeArgs,
    VolumeMountArgs,
    VolumeResourceRequirementsArgs,
)
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

from components.core.keys import admin_keys
from components.core.spec import DeploymentSpec
from components.kubernetes import workloads as w
from components.kubernetes.backup import BackupJob
from components.kubernetes.ingress import ingress
from components.settings import KubernetesSettings, StackSettings


class KubernetesDeployment(pulumi.ComponentResource):
    """One Convex instance on Kubernetes: secret, keys, data, backend, dashboard."""

    def __init__(self, name: str, spec: DeploymentSpec, settings: StackSettings,
                 namespace: pulumi.Input[str], opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:KubernetesDeployment", name, None, opts)
        kube: KubernetesSettings = settings.kubernetes
        self.spec, self.kube, self.namespace = spec, kube, namespace
        child = pulumi.ResourceOptions(parent=self)
        if spec.instance_secret is not None:
            self.instance_secret = pulumi.Output.secret(spec.instance_secret.reveal())
        else:
            # Losing this secret invalidates every admin key: protect it with the data.
            secret = random.RandomBytes(f"{name}-instance-secret", length=32, opts=(
                pulumi.ResourceOptions(parent=self, protect=spec.protect_data)))
            self.instance_secret = pulumi.Output.secret(secret.hex)
        keys = admin_keys(spec.instance_name, spec.cloud_origin, self.instance_secret)
        database = spec.database.url.reveal() if spec.database.url is not None else ""
        self.secret = Secret(
            f"{name}-backend-secret", metadata=self._meta(w.backend_secret_name(spec),
                                                          "backend"),
            type="Opaque", string_data=pulumi.Output.secret(self.instance_secret.apply(
                lambda value: w.secret_values(spec, value or "", database))), opts=child)
        self.data = self._claim(name, "data", spec.protect_data)
        self.backend = self._backend(name, settings.backend_image)
        self.backend_service = self._service(
            name, "backend", [ServicePortArgs(name="api", port=w.API_PORT, target_port="api"),
                              ServicePortArgs(name="site", port=w.SITE_PORT,
                                              target_port="site")])
        self.dashboard = None
        if spec.dashboard:
            self.dashboard = self._dashboard(name, settings.dashboard_image)
            self._service(name, "dashboard", [ServicePortArgs(
                name="http", port=w.DASHBOARD_PORT, target_port="http")])
        self.ingress = ingress(name, spec, kube, namespace, child) if kube.ingress_class else None
        self.backup = None
        if spec.backups is not None:
            self.backup = BackupJob(f"{name}-backup", spec, namespace, keys.admin_key,
                                    self._claim(name, "backups", spec.protect_data),
                                    kube, settings.backend_image, child)
        self.instance_name, self.backend_url = spec.instance_name, spec.cloud_origin
        self.site_url, self.dashboard_url = spec.site_origin, spec.dashboard_url or None
        self.admin_key, self.read_only_admin_key = keys.admin_key, keys.read_only_admin_key
        self.env_local = keys.env_local
        self.register_outputs({"backendUrl": self.backend_url, "namespace": namespace})

    def _meta(self, name: str, component: str, **extra) -> ObjectMetaArgs:
        return ObjectMetaArgs(name=name, namespace=self.namespace,
                              labels=w.labels(self.spec, component), **extra)

    def _claim(self, name: str, role: str, protect: bool) -> PersistentVolumeClaim:
        """A claim Pulumi never deletes (retainOnDelete): destroy leaves the data. Not
        awaited on its own: with a WaitForFirstConsumer class it binds only once the pod
        that mounts it is scheduled, and the workload's own await covers that."""
        return PersistentVolumeClaim(
            f"{name}-{role}",
            metadata=self._meta(f"{self.spec.instance_name}-{role}", role,
                                annotations={"pulumi.com/skipAwait": "true"}),
            spec=PersistentVolumeClaimSpecArgs(
                access_modes=["ReadWriteOnce"],
                storage_class_name=self.kube.storage_class or None,
                resources=VolumeResourceRequirementsArgs(
                    requests={"storage": self.kube.storage_size})),
            opts=pulumi.ResourceOptions(parent=self, protect=protect, retain_on_delete=True))

    def _backend(self, name: str, image: str) -> StatefulSet:
        spec = self.spec
        mounts = [VolumeMountArgs(name="data", mount_path=w.DATA_PATH)]
        volumes = [VolumeArgs(name="data", persistent_volume_claim=(
            PersistentVolumeClaimVolumeSourceArgs(claim_name=self.data.metadata.name)))]
        if spec.database.ca_cert:
            ca = ConfigMap(f"{name}-database-ca",
                           metadata=self._meta(f"{spec.instance_name}-database-ca", "backend"),
                           data={"ca.pem": spec.database.ca_cert},
                           opts=pulumi.ResourceOptions(parent=self))
            volumes.append(VolumeArgs(name="database-ca", config_map=ConfigMapVolumeSourceArgs(
                name=ca.metadata.name)))
            mounts.append(VolumeMountArgs(name="database-ca", mount_path=w.ca_mount_path(),
                                          sub_path="ca.pem", read_only=True))
        container = ContainerArgs(
            name="backend", image=image, ports=w.backend_ports(), env=w.backend_env_vars(spec),
            args=list(spec.tuning.backend_args) or None, volume_mounts=mounts,
            resources=w.resources(spec), security_context=w.container_security(),
            **w.backend_probes(spec))
        timeout = w.await_timeout(spec)
        return StatefulSet(
            f"{name}-backend",
            metadata=self._meta(f"{spec.instance_name}-backend", "backend"),
            spec=StatefulSetSpecArgs(
                # Exactly one: two backends on one database take its lease from each other.
                replicas=1, service_name=f"{spec.instance_name}-backend",
                selector=LabelSelectorArgs(match_labels=w.selector(spec, "backend")),
                # One replica: the old pod is gone before the new one starts.
                update_strategy=StatefulSetUpdateStrategyArgs(type="RollingUpdate"),
                pod_management_policy="OrderedReady",
                template=PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=w.labels(spec, "backend")),
                    spec=PodSpecArgs(
                        containers=[container], volumes=volumes,
                        # As upstream's compose file: SIGINT-like shutdown, then 10 s more.
                        termination_grace_period_seconds=20,
                        automount_service_account_token=False,
                        security_context=PodSecurityContextArgs(
                            seccomp_profile=w.SeccompProfileArgs(type="RuntimeDefault"))))),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.secret],
                custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=timeout)))

    def _dashboard(self, name: str, image: str) -> K8sDeployment:
        spec = self.spec
        container = ContainerArgs(
            name="dashboard", image=image,
            ports=[ContainerPortArgs(name="http", container_port=w.DASHBOARD_PORT)],
            env=[EnvVarArgs(name="NEXT_PUBLIC_DEPLOYMENT_URL", value=spec.cloud_origin)],
            resources=w.resources(spec),
            security_context=w.container_security(run_as=w.DASHBOARD_UID),
            readiness_probe=w.http_probe("/", w.DASHBOARD_PORT, 3),
            liveness_probe=w.http_probe("/", w.DASHBOARD_PORT, 6, period=10))
        return K8sDeployment(
            f"{name}-dashboard",
            metadata=self._meta(f"{spec.instance_name}-dashboard", "dashboard"),
            spec=DeploymentSpecArgs(
                replicas=1,
                selector=LabelSelectorArgs(match_labels=w.selector(spec, "dashboard")),
                template=PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=w.labels(spec, "dashboard")),
                    spec=PodSpecArgs(containers=[container],
                                     automount_service_account_token=False))),
            opts=pulumi.ResourceOptions(parent=self))

    def _service(self, name: str, component: str, ports: list) -> Service:
        return Service(
            f"{name}-{component}-service",
            metadata=self._meta(f"{self.spec.instance_name}-{component}", component),
            spec=ServiceSpecArgs(type="ClusterIP", ports=ports,
                                 selector=w.selector(self.spec, component)),
            opts=pulumi.ResourceOptions(parent=self))

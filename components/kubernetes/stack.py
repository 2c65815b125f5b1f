"""The Kubernetes target for a whole stack: the namespace, then one KubernetesDeployment per
deployment spec, on the cluster of the kubernetes provider's configuration."""

from __future__ import annotations

from typing import Sequence

import pulumi
from pulumi_kubernetes.core.v1 import Namespace
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.core.spec import DeploymentSpec
from components.kubernetes.deployment import KubernetesDeployment
from components.kubernetes.workloads import MANAGED_BY
from components.settings import StackSettings


def deploy(settings: StackSettings,
           specs: Sequence[DeploymentSpec]) -> dict[str, KubernetesDeployment]:
    # Deleting a namespace deletes every claim in it: destroy leaves it (and the data).
    namespace = Namespace(
        "namespace", metadata=ObjectMetaArgs(
            name=settings.kubernetes.namespace,
            labels={"app.kubernetes.io/managed-by": MANAGED_BY}),
        opts=pulumi.ResourceOptions(retain_on_delete=True))
    return {spec.key: KubernetesDeployment(spec.key, spec, settings, namespace.metadata.name,
                                           pulumi.ResourceOptions(depends_on=[namespace]))
            for spec in specs}

"""The optional Ingress: the API (WebSockets included) on the host of cloudOrigin, HTTP
actions on the host of siteOrigin, the dashboard on kubernetesDashboardHost."""

from __future__ import annotations

import urllib.parse

import pulumi
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    HTTPIngressPathArgs,
    HTTPIngressRuleValueArgs,
    Ingress,
    IngressBackendArgs,
    IngressRuleArgs,
    IngressServiceBackendArgs,
    IngressSpecArgs,
    IngressTLSArgs,
    ServiceBackendPortArgs,
)

from components.core.spec import DeploymentSpec
from components.kubernetes import workloads as w
from components.settings import KubernetesSettings

CERT_MANAGER_ANNOTATION = "cert-manager.io/cluster-issuer"


def routes(spec: DeploymentSpec, kube: KubernetesSettings) -> list[tuple[str, str, int]]:
    """(host, service, port) per rule."""
    found = [(urllib.parse.urlsplit(spec.cloud_origin).hostname or "",
              f"{spec.instance_name}-backend", w.API_PORT),
             (urllib.parse.urlsplit(spec.site_origin).hostname or "",
              f"{spec.instance_name}-backend", w.SITE_PORT)]
    if spec.dashboard and kube.dashboard_host:
        found.append((kube.dashboard_host, f"{spec.instance_name}-dashboard", w.DASHBOARD_PORT))
    return found


def tls_secret(spec: DeploymentSpec, kube: KubernetesSettings) -> str:
    if kube.cert_manager_issuer:
        return f"{spec.instance_name}-tls"
    return kube.tls_secret


def ingress(name: str, spec: DeploymentSpec, kube: KubernetesSettings,
            namespace: pulumi.Input[str], opts: pulumi.ResourceOptions) -> Ingress:
    annotations = {**dict(kube.ingress_annotations), "pulumi.com/skipAwait": "true"}
    if kube.cert_manager_issuer:
        annotations[CERT_MANAGER_ANNOTATION] = kube.cert_manager_issuer
    rules = [IngressRuleArgs(host=host, http=HTTPIngressRuleValueArgs(paths=[
        HTTPIngressPathArgs(path="/", path_type="Prefix", backend=IngressBackendArgs(
            service=IngressServiceBackendArgs(name=service, port=ServiceBackendPortArgs(
                number=port))))]))
        for host, service, port in routes(spec, kube)]
    secret = tls_secret(spec, kube)
    tls = [IngressTLSArgs(hosts=[host for host, _, _ in routes(spec, kube)],
                          secret_name=secret)] if secret else None
    return Ingress(
        f"{name}-ingress",
        metadata=ObjectMetaArgs(name=spec.instance_name, namespace=namespace,
                                labels=w.labels(spec, "backend"),
                                annotations=annotations),
        # Not awaited: the provider would wait for an address in the Ingress's status,
        # which some controllers never publish (and none does before DNS and certificates
        # are in place); the workloads behind it are awaited.
        spec=IngressSpecArgs(ingress_class_name=kube.ingress_class, rules=rules, tls=tls),
        opts=opts)

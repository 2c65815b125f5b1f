"""The Kubernetes target (`target: kubernetes`): namespace, storage, ingress, and what that
target does not do reported as problems up front.

The cluster itself comes from the kubernetes provider's own configuration
(`kubernetes:kubeconfig`, `kubernetes:context`, else KUBECONFIG / ~/.kube/config), as for
any Pulumi program using pulumi-kubernetes.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from typing import Optional, Sequence

from components.settings.model import DeploymentSettings, KubernetesSettings
from components.settings.network import is_hostname
from components.settings.reader import Reader

KUBERNETES_KEYS = ("kubernetesNamespace", "kubernetesStorageClass", "kubernetesStorageSize",
                   "kubernetesIngressClass", "kubernetesIngressAnnotations",
                   "kubernetesIngressTlsSecret", "kubernetesCertManagerIssuer",
                   "kubernetesDashboardHost")
# Kubernetes object names: RFC 1123 labels (namespaces), subdomains (secrets, classes).
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_QUANTITY = re.compile(r"[1-9][0-9]{0,8}(Mi|Gi|Ti|M|G|T)")
_ANNOTATION = re.compile(r"(([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)/)?"
                         r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
# Upstream's ports inside the pods; Services use the same numbers.
API_PORT, SITE_PORT, DASHBOARD_PORT = 3210, 3211, 6791


def read_kubernetes(reader: Reader, target: str,
                    base_instance: str) -> Optional[KubernetesSettings]:
    if target != "kubernetes":
        for name in KUBERNETES_KEYS:
            if reader.differs_from_default(name) if name != "kubernetesIngressAnnotations" \
                    else reader.string_list(name):
                reader.problem(name, "only applies with `target: kubernetes`; remove it, or "
                                     "set `pulumi config set target kubernetes`.")
        return None
    namespace = reader.string("kubernetesNamespace") or base_instance
    if not _LABEL.fullmatch(namespace):
        reader.problem("kubernetesNamespace", f"{reader.shown('kubernetesNamespace')} is not a "
                                              "namespace name (lowercase letters, digits and "
                                              "dashes, at most 63).")
    storage_class = _name(reader, "kubernetesStorageClass")
    size = reader.string("kubernetesStorageSize")
    if not _QUANTITY.fullmatch(size):
        reader.problem("kubernetesStorageSize", f"{reader.shown('kubernetesStorageSize')} is "
                                                "not a storage size such as 10Gi or 500Mi.")
    ingress_class = _name(reader, "kubernetesIngressClass")
    annotations = _annotations(reader)
    tls_secret = _name(reader, "kubernetesIngressTlsSecret")
    issuer = _name(reader, "kubernetesCertManagerIssuer")
    dashboard_host = reader.string("kubernetesDashboardHost").lower()
    if dashboard_host and not (is_hostname(dashboard_host) and "." in dashboard_host):
        reader.problem("kubernetesDashboardHost", f"{reader.shown('kubernetesDashboardHost')} "
                                                  "is not a DNS name.")
    if not ingress_class:
        for name, value in (("kubernetesIngressAnnotations", annotations),
                            ("kubernetesIngressTlsSecret", tls_secret),
                            ("kubernetesCertManagerIssuer", issuer),
                            ("kubernetesDashboardHost", dashboard_host)):
            if value:
                reader.problem(name, "is set but kubernetesIngressClass is empty; set the "
                                     "ingress class that serves it (e.g. nginx) or remove it.")
    if tls_secret and issuer:
        reader.problem("kubernetesCertManagerIssuer", "and kubernetesIngressTlsSecret are both "
                                                      "set; keep one source of certificates.")
    _refuse_docker_only(reader)
    return KubernetesSettings(namespace=namespace, storage_class=storage_class,
                              storage_size=size, ingress_class=ingress_class,
                              ingress_annotations=tuple(annotations), tls_secret=tls_secret,
                              cert_manager_issuer=issuer, dashboard_host=dashboard_host)


def _name(reader: Reader, key: str) -> str:
    value = reader.string(key)
    if value and not _SUBDOMAIN.fullmatch(value):
        reader.problem(key, f"{reader.shown(key)} is not a Kubernetes object name (lowercase "
                            "letters, digits, dashes and dots).")
        return ""
    return value


def _annotations(reader: Reader) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for position, entry in enumerate(reader.string_list("kubernetesIngressAnnotations"), 1):
        name, equals, value = entry.partition("=")
        if not equals or not _ANNOTATION.fullmatch(name) or "\n" in value:
            reader.problem("kubernetesIngressAnnotations",
                           f"entry {position} is not name=value with an annotation name (e.g. "
                           "nginx.ingress.kubernetes.io/proxy-read-timeout=3600) and a "
                           "one-line value.")
            continue
        pairs.append((name, value))
    return pairs


def _refuse_docker_only(reader: Reader) -> None:
    for name, why in (
            ("provisionPostgres", "use a managed or operator-run Postgres and set "
                                  "databaseUrl"),
            ("tlsProxy", "set kubernetesIngressClass (and a TLS secret or cert-manager "
                         "issuer) instead"),
            ("dataVolumeName", "the data lives in the PersistentVolumeClaim <instance>-data"),
            ("bindAddress", "Services listen inside the cluster; expose them with the "
                            "ingress"),
            ("backendPort", "Services use upstream's ports 3210, 3211 and 6791"),
            ("sitePort", "Services use upstream's ports 3210, 3211 and 6791"),
            ("dashboardPort", "Services use upstream's ports 3210, 3211 and 6791"),
            ("publicHost", "set cloudOrigin and siteOrigin to the ingress URLs"),
            ("apiDomain", "the ingress serves the host of cloudOrigin"),
            ("siteDomain", "the ingress serves the host of siteOrigin"),
            ("dashboardDomain", "set kubernetesDashboardHost")):
        if reader.differs_from_default(name):
            reader.problem(name, f"does not apply with `target: kubernetes`: {why}. Remove it.")


def cluster_urls(deployments: Sequence[DeploymentSettings], kube: KubernetesSettings,
                 cloud_set: bool, site_set: bool, dashboard: bool
                 ) -> list[DeploymentSettings]:
    """Each deployment's URLs on a cluster: the configured origins (behind the ingress),
    else the in-cluster Service addresses; the dashboard at kubernetesDashboardHost."""
    result = []
    for d in deployments:
        service = f"{d.instance_name}-backend.{kube.namespace}.svc.cluster.local"
        scheme = "https" if kube.tls_secret or kube.cert_manager_issuer else "http"
        dashboard_url = ""
        if dashboard:
            dashboard_url = (f"{scheme}://{kube.dashboard_host}" if kube.dashboard_host else
                             f"http://{d.instance_name}-dashboard.{kube.namespace}"
                             f".svc.cluster.local:{DASHBOARD_PORT}")
        result.append(dataclasses.replace(
            d, cloud_origin=d.cloud_origin if cloud_set else f"http://{service}:{API_PORT}",
            site_origin=d.site_origin if site_set else f"http://{service}:{SITE_PORT}",
            dashboard_url=dashboard_url))
    return result


def check_ingress_origins(reader: Reader, kube: Optional[KubernetesSettings],
                          deployments: Sequence[DeploymentSettings]) -> None:
    """With an ingress, each deployment's API and site are served on the hosts of its
    origins: they must be set, distinct, and a single deployment's."""
    if kube is None or not kube.ingress_class:
        return
    if len(deployments) > 1:
        reader.problem("kubernetesIngressClass", "serves one deployment's origins; with "
                                                 "`deployments`, expose each another way.")
        return
    for d in deployments:
        hosts = [urllib.parse.urlsplit(url).hostname for url in (d.cloud_origin, d.site_origin)]
        if not reader.string("cloudOrigin") or not reader.string("siteOrigin"):
            reader.problem("cloudOrigin", "and siteOrigin are required with "
                                          "kubernetesIngressClass: the public URLs whose hosts "
                                          "the ingress serves (e.g. https://api.example.com and "
                                          "https://site.example.com).")
        elif hosts[0] == hosts[1]:
            reader.problem("siteOrigin", "needs a host of its own with kubernetesIngressClass "
                                         "(the ingress routes by host name).")

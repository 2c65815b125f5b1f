"""components/settings/kubernetes.py: the Kubernetes target's settings, and what it
refuses up front (every problem at once, naming the key)."""

import pytest
from test_settings import load, problems

INGRESS = {"target": "kubernetes", "kubernetesIngressClass": "nginx",
           "cloudOrigin": "https://api.example.com", "siteOrigin": "https://site.example.com"}


def test_defaults_on_a_plain_stack():
    settings = load(None, {"target": "kubernetes"}, stack_name="dev")
    kube = settings.kubernetes
    assert (kube.namespace, kube.storage_class, kube.storage_size, kube.ingress_class) == (
        "convex-dev", "", "10Gi", "")
    (d,) = settings.deployments
    assert d.cloud_origin == "http://convex-dev-backend.convex-dev.svc.cluster.local:3210"
    assert d.site_origin == "http://convex-dev-backend.convex-dev.svc.cluster.local:3211"
    assert d.dashboard_url == "http://convex-dev-dashboard.convex-dev.svc.cluster.local:6791"
    assert load(None, {}, stack_name="dev").kubernetes is None


def test_an_ingress_with_tls_makes_https_urls():
    settings = load(None, {**INGRESS, "kubernetesIngressTlsSecret": "api-tls",
                           "kubernetesDashboardHost": "Dash.Example.com",
                           "kubernetesIngressAnnotations": ["a.b/c=1", "d=x=y"]},
                    stack_name="dev")
    (d,) = settings.deployments
    assert (d.cloud_origin, d.site_origin, d.dashboard_url) == (
        "https://api.example.com", "https://site.example.com", "https://dash.example.com")
    assert settings.kubernetes.ingress_annotations == (("a.b/c", "1"), ("d", "x=y"))


def test_every_bad_kubernetes_value_is_reported_at_once():
    found = problems(None, {"target": "kubernetes", "kubernetesNamespace": "Convex_NS",
                            "kubernetesStorageClass": "fast ssd",
                            "kubernetesStorageSize": "lots",
                            "kubernetesIngressAnnotations": ["no-equals", "x=a\nb"],
                            "kubernetesIngressTlsSecret": "s", "kubernetesDashboardHost": "x",
                            "provisionPostgres": True, "tlsProxy": True,
                            "backendPort": 4000, "bindAddress": "0.0.0.0"},
                     stack_name="dev")
    assert list(found) == [
        "convex-selfhost:kubernetesNamespace: 'Convex_NS' is not a namespace name (lowercase "
        "letters, digits and dashes, at most 63).",
        "convex-selfhost:kubernetesStorageClass: 'fast ssd' is not a Kubernetes object name "
        "(lowercase letters, digits, dashes and dots).",
        "convex-selfhost:kubernetesStorageSize: 'lots' is not a storage size such as 10Gi or "
        "500Mi.",
        "convex-selfhost:kubernetesIngressAnnotations: entry 1 is not name=value with an "
        "annotation name (e.g. nginx.ingress.kubernetes.io/proxy-read-timeout=3600) and a "
        "one-line value.",
        "convex-selfhost:kubernetesIngressAnnotations: entry 2 is not name=value with an "
        "annotation name (e.g. nginx.ingress.kubernetes.io/proxy-read-timeout=3600) and a "
        "one-line value.",
        "convex-selfhost:kubernetesDashboardHost: 'x' is not a DNS name.",
        "convex-selfhost:kubernetesIngressTlsSecret: is set but kubernetesIngressClass is "
        "empty; set the ingress class that serves it (e.g. nginx) or remove it.",
        "convex-selfhost:kubernetesDashboardHost: is set but kubernetesIngressClass is empty; "
        "set the ingress class that serves it (e.g. nginx) or remove it.",
        "convex-selfhost:provisionPostgres: does not apply with `target: kubernetes`: use a "
        "managed or operator-run Postgres and set databaseUrl. Remove it.",
        "convex-selfhost:tlsProxy: does not apply with `target: kubernetes`: set "
        "kubernetesIngressClass (and a TLS secret or cert-manager issuer) instead. Remove it.",
        "convex-selfhost:bindAddress: does not apply with `target: kubernetes`: Services "
        "listen inside the cluster; expose them with the ingress. Remove it.",
        "convex-selfhost:backendPort: does not apply with `target: kubernetes`: Services use "
        "upstream's ports 3210, 3211 and 6791. Remove it."]


def test_an_ingress_needs_origins_with_hosts_of_their_own():
    assert list(problems(None, {**INGRESS, "cloudOrigin": None, "siteOrigin": None},
                         stack_name="dev")) == [
        "convex-selfhost:cloudOrigin: and siteOrigin are required with kubernetesIngressClass: "
        "the public URLs whose hosts the ingress serves (e.g. https://api.example.com and "
        "https://site.example.com)."]
    assert list(problems(None, {**INGRESS, "siteOrigin": "https://api.example.com/http"},
                         stack_name="dev")) == [
        "convex-selfhost:siteOrigin: needs a host of its own with kubernetesIngressClass (the "
        "ingress routes by host name)."]
    assert list(problems(None, {**INGRESS, "kubernetesIngressTlsSecret": "a",
                                "kubernetesCertManagerIssuer": "b"}, stack_name="dev")) == [
        "convex-selfhost:kubernetesCertManagerIssuer: and kubernetesIngressTlsSecret are both "
        "set; keep one source of certificates."]
    assert list(problems(None, {**INGRESS, "deployments": ["a", "b"], "cloudOrigin": None,
                                "siteOrigin": None}, stack_name="dev")) == [
        "convex-selfhost:kubernetesIngressClass: serves one deployment's origins; with "
        "`deployments`, expose each another way."]


@pytest.mark.parametrize("key, value", [
    ("kubernetesNamespace", "convex"), ("kubernetesStorageSize", "5Gi"),
    ("kubernetesIngressClass", "nginx"), ("kubernetesIngressAnnotations", ["a=b"])])
def test_kubernetes_keys_on_another_target_are_refused(key, value):
    assert list(problems(None, {key: value}, stack_name="dev")) == [
        f"convex-selfhost:{key}: only applies with `target: kubernetes`; remove it, or set "
        "`pulumi config set target kubernetes`."]

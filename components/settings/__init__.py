"""The one place that reads stack configuration.

`load_settings()` reads every key of the `convex-selfhost` namespace, validates all of
them, and returns one immutable `StackSettings`. Every problem found is collected and
raised together as a `ConfigError` (a `pulumi.RunError`, which `pulumi up` prints
without a Python traceback) before any resource is declared.

Each area has a module of its own (network, database, storage, tls, runtime); this one
ties them together and derives the deployments.
"""

from __future__ import annotations

import difflib
import ipaddress
from typing import Any, Mapping

import pulumi

from components import releases, rules
from components.releases import DEFAULT_VERSION
from components.settings.backups import read_backups
from components.settings.database import read_database
from components.settings.deployments import default_instance_name, read_deployments
from components.settings.host import read_host, read_target
from components.settings.keys import KEYS, KEYS_BY_NAME, NAMESPACE, Key
from components.settings.kubernetes import check_ingress_origins, cluster_urls, read_kubernetes
from components.settings.model import (
    BACKEND_IMAGE,
    DASHBOARD_IMAGE,
    BackendTuning,
    ContainerSettings,
    DatabaseSettings,
    DeploymentSettings,
    HostSettings,
    KubernetesSettings,
    S3Settings,
    StackSettings,
    TlsSettings,
)
from components.settings.network import check_ip
from components.settings.reader import ConfigError, Reader, SecretValue, quote
from components.settings.runtime import OWNED_ENV_VARS, read_containers, read_tuning
from components.settings.storage import S3_BUCKET_KEYS, S3_BUCKET_KINDS, read_s3
from components.settings.tls import read_domains, read_tls

__all__ = [
    "BACKEND_IMAGE",
    "DASHBOARD_IMAGE",
    "DEFAULT_VERSION",
    "KEYS",
    "KEYS_BY_NAME",
    "NAMESPACE",
    "OWNED_ENV_VARS",
    "S3_BUCKET_KEYS",
    "S3_BUCKET_KINDS",
    "BackendTuning",
    "ConfigError",
    "ContainerSettings",
    "DatabaseSettings",
    "DeploymentSettings",
    "HostSettings",
    "KubernetesSettings",
    "Key",
    "S3Settings",
    "SecretValue",
    "StackSettings",
    "TlsSettings",
    "default_instance_name",
    "load_settings",
    "settings_from_config",
]


def load_settings() -> StackSettings:
    """Read and validate the running stack's configuration (raises ConfigError)."""
    from pulumi.runtime import config as runtime_config

    # Every key the engine handed the program: the SDK has no listing call, so take the
    # config map and the process-wide PULUMI_CONFIG it falls back to.
    keys = set(runtime_config.CONFIG.get()) | set(pulumi.runtime.get_config_env())
    raw = {key: pulumi.runtime.get_config(key) for key in keys}
    secret_keys = {key for key in keys if pulumi.runtime.is_config_secret(key)} | set(
        pulumi.runtime.get_config_secret_keys_env()
    )
    return settings_from_config(pulumi.get_stack(), raw, secret_keys)


def settings_from_config(
    stack: str, raw: Mapping[str, Any], secret_keys: set[str]
) -> StackSettings:
    """Validate raw config (`namespace:key` -> CLI string) of `stack`: the testable core."""
    reader = Reader(raw, secret_keys, stack)
    warnings: list[str] = []
    _check_key_names(reader, raw)

    version = _read_version(reader, stack, warnings)
    target = read_target(reader)
    bind = check_ip(reader, "bindAddress")
    dashboard = reader.boolean("dashboard")
    database = read_database(reader, version)
    s3 = read_s3(reader, version)
    domains = read_domains(reader)
    # On a cluster the ingress serves TLS; kubernetes.py refuses the proxy's keys.
    tls = read_tls(reader, domains, dashboard) if target != "kubernetes" else None
    # A cluster's Services listen inside it (kubernetes.py refuses bindAddress there).
    deployments = read_deployments(reader, stack, bind if target != "kubernetes" else
                                   "127.0.0.1", dashboard, tls, domains)
    tuning = read_tuning(reader, version, database.kind, warnings)
    if reader.boolean("dashboardLoadMonacoInternally"):
        reader.problem(
            "dashboardLoadMonacoInternally",
            "has no effect on the published dashboard images: upstream reads "
            "NEXT_PUBLIC_LOAD_MONACO_INTERNALLY when the image is built "
            "(next.config.js), not when it runs. Remove it.",
        )
    _check_metrics_exposure(reader, bind, tuning, warnings)
    containers = read_containers(reader)

    kube = read_kubernetes(reader, target, _base_instance(reader, stack))
    if kube is not None:
        deployments = cluster_urls(deployments, kube, bool(reader.string("cloudOrigin")),
                                   bool(reader.string("siteOrigin")), dashboard)
        check_ingress_origins(reader, kube, deployments)
    settings = StackSettings(
        stack=stack,
        version=version,
        bind_address=bind or "",
        dashboard=dashboard,
        protect_data=reader.boolean("protectData"),
        multi=bool(reader.string_list("deployments")),
        deployments=tuple(deployments),
        database=database,
        s3=s3,
        tls=tls,
        tuning=tuning,
        containers=containers,
        docker_host=str(raw.get("docker:host") or "").strip(),
        backups=read_backups(reader),
        warnings=tuple(warnings),
        target=target,
        host=read_host(reader, target, bind),
        kubernetes=kube,
    )
    if reader.problems:
        raise ConfigError(stack, reader.problems)
    return settings


def _base_instance(reader: Reader, stack: str) -> str:
    name = reader.string("instanceName")
    return name if rules.is_valid_instance_name(name) else default_instance_name(stack)


def _check_key_names(reader: Reader, raw: Mapping[str, Any]) -> None:
    """Unknown keys of this project, and keys of a namespace that looks like a typo of it."""
    flat = NAMESPACE.replace("-", "")
    for full_key in sorted(raw):
        namespace, _, name = full_key.partition(":")
        shown_name = quote(name)[1:-1]  # escaped, without the quotes
        if namespace == NAMESPACE:
            if name not in KEYS_BY_NAME:
                close = [
                    k for k in KEYS_BY_NAME if k.lower() == name.lower()
                ] or difflib.get_close_matches(name, KEYS_BY_NAME, cutoff=0.75)
                hint = f" Did you mean {close[0]}?" if close else ""
                reader.problems.append(
                    f"{NAMESPACE}:{shown_name}: is not a convex-selfhost setting.{hint} "
                    f"Remove it with `pulumi config rm {shown_name}`."
                )
        elif (
            namespace.lower().replace("-", "").replace("_", "") == flat
            or difflib.SequenceMatcher(None, namespace.lower(), NAMESPACE).ratio() >= 0.85
        ):
            reader.problems.append(
                f"{quote(full_key)[1:-1]}: the namespace {quote(namespace)} is not "
                f"{NAMESPACE!r}, so this key is ignored; set it as {NAMESPACE}:{shown_name}."
            )


def _check_metrics_exposure(reader: Reader, bind, tuning, warnings: list[str]) -> None:
    """The backend's Prometheus /metrics stays on loopback or the private network."""
    if bind is None or ipaddress.ip_address(bind).is_loopback:
        return
    shown = reader.mention("bindAddress", bind)
    if "DISABLE_METRICS_ENDPOINT" in tuning.unread_env:
        warnings.append(f"this version always serves /metrics on the API port, which "
                        f"bindAddress {shown} publishes; bind to 127.0.0.1 behind a proxy, or "
                        "upgrade to a release that reads DISABLE_METRICS_ENDPOINT.")
    elif not tuning.disable_metrics_endpoint:
        reader.problem("disableMetricsEndpoint", f"is false while bindAddress {shown} "
                                                 "publishes the backend's ports: /metrics "
                                                 "would be public. Keep it true, or bind to "
                                                 "127.0.0.1.")


def _read_version(reader: Reader, stack: str, warnings: list[str]) -> str:
    version = reader.string("version")
    if not rules.is_valid_tag(version):
        reader.problem(
            "version",
            f"{reader.shown('version')} is not an image tag; use an "
            f"upstream release tag (a commit SHA), e.g. {DEFAULT_VERSION}.",
        )
        return DEFAULT_VERSION
    if rules.is_moving_tag(version):
        if rules.is_dev_stack(stack):
            warnings.append(
                f"version {reader.shown('version')} moves: every `pulumi up` may pick up a new "
                "release, and version checks are skipped. Pin a release tag "
                "outside dev."
            )
        else:
            reader.problem(
                "version",
                f"{reader.shown('version')} is a moving tag; pin a release tag (a "
                f"commit SHA such as {DEFAULT_VERSION}) so every "
                "`pulumi up` runs the version you previewed. Only dev "
                "stacks may use it.",
            )
    elif rules.tag_problem(BACKEND_IMAGE, version, reader.strict_images) is not None:
        reader.problem(
            "version",
            f"{reader.shown('version')} is not a release: upstream tags the Convex images "
            "with the commit SHA of each release, and only those stay put; pin one (such as "
            f"{DEFAULT_VERSION}). Only dev stacks may use other tags.",
        )
    elif releases.find(version) is None:
        warnings.append(
            f"version {reader.shown('version')} is not a release this project knows "
            f"(newest known: {releases.LATEST.tag[:7]} of {releases.LATEST.date}); "
            "version-specific checks were skipped."
        )
    return version

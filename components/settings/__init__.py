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
import hashlib
import ipaddress
from typing import Any, Mapping, Optional

import pulumi

from components import releases, rules
from components.admin_key import AdminKeyError, parse_instance_secret
from components.releases import DEFAULT_VERSION
from components.settings.database import read_database
from components.settings.keys import KEYS, KEYS_BY_NAME, NAMESPACE, Key
from components.settings.model import (
    BACKEND_IMAGE, DASHBOARD_IMAGE, BackendTuning, ContainerSettings, DatabaseSettings,
    DeploymentSettings, S3Settings, StackSettings, TlsSettings)
from components.settings.network import (
    SITE_PATH_ON_API, check_ip, check_origin, check_port, check_site_origin, is_hostname,
    url_host)
from components.settings.reader import ConfigError, Reader, SecretValue, quote
from components.settings.runtime import OWNED_ENV_VARS, read_containers, read_tuning
from components.settings.storage import S3_BUCKET_KEYS, S3_BUCKET_KINDS, read_s3
from components.settings.tls import read_domains, read_tls

__all__ = [
    "BACKEND_IMAGE", "DASHBOARD_IMAGE", "DEFAULT_VERSION", "KEYS", "KEYS_BY_NAME", "NAMESPACE",
    "OWNED_ENV_VARS", "S3_BUCKET_KEYS", "S3_BUCKET_KINDS", "BackendTuning", "ConfigError",
    "ContainerSettings", "DatabaseSettings", "DeploymentSettings", "Key", "S3Settings",
    "SecretValue", "StackSettings", "TlsSettings", "default_instance_name", "load_settings",
    "settings_from_config",
]

# Each extra deployment of a stack shifts all of its host ports by this much.
DEPLOYMENT_PORT_STRIDE = 10
# Volumes the program names after the instance: an adopted data volume may not be one.
MANAGED_VOLUME_SUFFIXES = ("-data", "-pgdata", "-caddy-data", "-backups")
_VOLUME_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789_.-")


def load_settings() -> StackSettings:
    """Read and validate the running stack's configuration (raises ConfigError)."""
    from pulumi.runtime import config as runtime_config

    # Every key the engine handed the program: the SDK has no listing call, so take the
    # config map and the process-wide PULUMI_CONFIG it falls back to.
    keys = set(runtime_config.CONFIG.get()) | set(pulumi.runtime.get_config_env())
    raw = {key: pulumi.runtime.get_config(key) for key in keys}
    secret_keys = {key for key in keys if pulumi.runtime.is_config_secret(key)} | set(
        pulumi.runtime.get_config_secret_keys_env())
    return settings_from_config(pulumi.get_stack(), raw, secret_keys)


def settings_from_config(stack: str, raw: Mapping[str, Any],
                         secret_keys: set[str]) -> StackSettings:
    """Validate raw config (`namespace:key` -> CLI string) of `stack`: the testable core."""
    reader = Reader(raw, secret_keys)
    warnings: list[str] = []
    _check_key_names(reader, raw)

    version = _read_version(reader, stack, warnings)
    bind = check_ip(reader, "bindAddress")
    dashboard = reader.boolean("dashboard")
    database = read_database(reader)
    s3 = read_s3(reader, version)
    domains = read_domains(reader)
    tls = read_tls(reader, domains, dashboard)
    deployments = _read_deployments(reader, stack, bind, dashboard, tls, domains)
    tuning = read_tuning(reader, version, database.kind)
    if reader.boolean("dashboardLoadMonacoInternally"):
        reader.problem("dashboardLoadMonacoInternally",
                       "has no effect on the published dashboard images: upstream reads "
                       "NEXT_PUBLIC_LOAD_MONACO_INTERNALLY when the image is built "
                       "(next.config.js), not when it runs. Remove it.")
    containers = read_containers(reader)

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
        docker_host=str(raw.get("docker:host", "") or "").strip(),
        warnings=tuple(warnings),
    )
    if reader.problems:
        raise ConfigError(stack, reader.problems)
    return settings


def _check_key_names(reader: Reader, raw: Mapping[str, Any]) -> None:
    """Unknown keys of this project, and keys of a namespace that looks like a typo of it."""
    flat = NAMESPACE.replace("-", "")
    for full_key in sorted(raw):
        namespace, _, name = full_key.partition(":")
        if namespace == NAMESPACE:
            if name not in KEYS_BY_NAME:
                close = [k for k in KEYS_BY_NAME if k.lower() == name.lower()] or \
                    difflib.get_close_matches(name, KEYS_BY_NAME, n=1, cutoff=0.75)
                hint = f" Did you mean {close[0]}?" if close else ""
                reader.problems.append(
                    f"{NAMESPACE}:{quote(name)[1:-1]}: is not a convex-selfhost setting.{hint} "
                    f"Remove it with `pulumi config rm {quote(name)[1:-1]}`.")
        elif namespace.lower().replace("-", "").replace("_", "") == flat or \
                difflib.SequenceMatcher(None, namespace.lower(), NAMESPACE).ratio() >= 0.85:
            reader.problems.append(
                f"{quote(full_key)[1:-1]}: the namespace {quote(namespace)} is not "
                f"{NAMESPACE!r}, so this key is ignored; set it as {NAMESPACE}:{quote(name)[1:-1]}.")


def _read_version(reader: Reader, stack: str, warnings: list[str]) -> str:
    version = reader.string("version")
    if not rules.is_valid_tag(version):
        reader.problem("version", f"{reader.shown('version')} is not an image tag; use an "
                                  f"upstream release tag (a commit SHA), e.g. {DEFAULT_VERSION}.")
        return DEFAULT_VERSION
    if rules.is_moving_tag(version):
        if rules.is_dev_stack(stack):
            warnings.append(f"version {reader.shown('version')} moves: every `pulumi up` may pick up a new "
                            "release, and version checks are skipped. Pin a release tag "
                            "outside dev.")
        else:
            reader.problem("version", f"{reader.shown('version')} is a moving tag; pin a release tag (a "
                                      f"commit SHA such as {DEFAULT_VERSION}) so every "
                                      "`pulumi up` runs the version you previewed. Only dev "
                                      "stacks may use it.")
    elif releases.find(version) is None:
        warnings.append(f"version {reader.shown('version')} is not a release this project knows "
                        f"(newest known: {releases.LATEST.tag[:7]} of {releases.LATEST.date}); "
                        "version-specific checks were skipped.")
    return version


def default_instance_name(stack: str) -> str:
    """`convex-<stack>`; a stack name that is not already a clean slug gets a short hash,
    so `Feature_X` and `feature-x` never share containers and volumes on one host."""
    slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in stack.lower())
    slug = "-".join(part for part in slug.split("-") if part) or "stack"
    if slug != stack:
        digest = hashlib.sha256(stack.encode()).hexdigest()[:6]
        return f"convex-{slug[:49].strip('-')}-{digest}"
    return f"convex-{slug}"[:63].rstrip("-")


def _read_identity(reader: Reader, stack: str) -> tuple[str, Optional[SecretValue], str]:
    base_name = reader.string("instanceName")
    if base_name and not rules.is_valid_instance_name(base_name):
        reader.problem("instanceName", f"{reader.shown('instanceName')} is not a valid instance "
                                       "name; use lowercase letters, digits and single dashes, "
                                       "at most 63 characters, e.g. convex-prod.")
    base_name = base_name if base_name and rules.is_valid_instance_name(base_name) else \
        default_instance_name(stack)
    secret = reader.secret("instanceSecret")
    if secret is not None:
        try:
            parse_instance_secret(secret.reveal())
        except AdminKeyError:
            reader.problem("instanceSecret", "must be 64 hex characters (32 bytes), as in "
                                             "/convex/data/credentials/instance_secret; generate "
                                             "one with `openssl rand -hex 32`.")
    volume = reader.string("dataVolumeName")
    if volume and (len(volume) > 128 or len(volume) < 2 or not set(volume) <= _VOLUME_NAME_CHARS
                   or not volume[0].isalnum()):
        reader.problem("dataVolumeName", f"{reader.shown('dataVolumeName')} is not a Docker "
                                         "volume name (letters, digits, _ . -, starting with a "
                                         "letter or digit).")
        volume = ""
    return base_name, secret, volume


def _read_deployments(reader: Reader, stack: str, bind: Optional[str], dashboard: bool,
                      tls, domains: dict[str, str]) -> list[DeploymentSettings]:
    base_name, secret, volume = _read_identity(reader, stack)
    names = reader.string_list("deployments")
    ports = [check_port(reader, k) for k in ("backendPort", "sitePort", "dashboardPort")]
    cloud_origin = check_origin(reader, "cloudOrigin")
    site_origin = check_site_origin(reader, cloud_origin)
    public_host = _read_public_host(reader, bind)
    if names:
        _check_deployment_names(reader, names, tls)
    if None in ports or bind is None or public_host is None:
        return []
    host = public_host or ("127.0.0.1" if ipaddress.ip_address(bind).is_unspecified else bind)
    if not (public_host or tls or cloud_origin) and not ipaddress.ip_address(bind).is_loopback \
            and ipaddress.ip_address(bind).is_unspecified:
        reader.problem("publicHost", f"is required when bindAddress is {bind}: the URLs in the "
                                     "outputs and the dashboard must name this host as other "
                                     "machines reach it; set publicHost (a DNS name or IP) or "
                                     "cloudOrigin and siteOrigin.")
    if cloud_origin and not site_origin and not tls and ipaddress.ip_address(bind).is_unspecified:
        reader.problem("siteOrigin", "is required with cloudOrigin when bindAddress is every "
                                     "interface; set it (or cloudOrigin + /http).")

    deployments = []
    for index, name in enumerate(names or [""]):
        offset = index * DEPLOYMENT_PORT_STRIDE
        instance = f"{base_name}-{name}" if name else base_name
        if name and len(instance) > rules.INSTANCE_NAME_MAX_LEN:
            reader.problem("deployments", f"instance name of {reader.shown('deployments', name)} is longer than 63 "
                                          "characters; shorten instanceName or the name.")
        backend_port, site_port, dashboard_port = (p + offset for p in ports)
        if max(backend_port, site_port, dashboard_port) > 65535:
            reader.problem("deployments", f"deployment {reader.shown('deployments', name)} would need host ports beyond "
                                          "65535; lower the base ports.")
        if tls:
            api = f"https://{domains['apiDomain']}"
            origins = (api, f"https://{domains['siteDomain']}" if domains["siteDomain"]
                       else api + SITE_PATH_ON_API,
                       f"https://{domains['dashboardDomain']}" if dashboard else "")
        else:
            origins = (cloud_origin or f"http://{url_host(host)}:{backend_port}",
                       site_origin or f"http://{url_host(host)}:{site_port}",
                       f"http://{url_host(host)}:{dashboard_port}" if dashboard else "")
        data_volume = volume or f"{instance}-data"
        deployments.append(DeploymentSettings(
            key=name or instance, instance_name=instance,
            instance_secret=secret if not names else None,
            backend_port=backend_port, site_port=site_port, dashboard_port=dashboard_port,
            cloud_origin=origins[0], site_origin=origins[1], dashboard_url=origins[2],
            data_volume_name=data_volume, adopted_volume=data_volume != f"{instance}-data",
            api_domain=domains["apiDomain"], site_domain=domains["siteDomain"],
            dashboard_domain=domains["dashboardDomain"]))
    _check_volume_collisions(reader, deployments)
    _check_port_clashes(reader, deployments, bind, dashboard, tls)
    if tls and not ipaddress.ip_address(bind).is_loopback:
        reader.problem("bindAddress", f"{bind} publishes the raw backend ports beside the TLS "
                                      "proxy; keep them on 127.0.0.1 when tlsProxy is true.")
    return deployments


def _read_public_host(reader: Reader, bind: Optional[str]) -> Optional[str]:
    """The public host, "" when not given, None when given but invalid."""
    host = reader.string("publicHost").lower()
    if not host:
        return ""
    if not is_hostname(host):
        reader.problem("publicHost", f"{reader.shown('publicHost')} is not a host name or IP "
                                     "address; write it like convex.example.com or 203.0.113.7.")
        return None
    if bind and ipaddress.ip_address(bind).is_loopback:
        reader.problem("publicHost", "is set but bindAddress is a loopback address, which no "
                                     "other machine reaches; set bindAddress too, or remove it.")
    for key in ("cloudOrigin", "siteOrigin"):
        if reader.string(key):
            reader.problem(key, "is set together with publicHost; use one: publicHost derives "
                                "every URL from the ports.")
    return host


def _check_deployment_names(reader: Reader, names: list[str], tls) -> None:
    seen = set()
    for name in names:
        if not rules.is_valid_instance_name(name):
            reader.problem("deployments", f"deployment name {reader.shown('deployments', name)} is not a valid instance "
                                          "name; use lowercase letters, digits and single "
                                          "dashes.")
        if name in seen:
            reader.problem("deployments", f"{reader.shown('deployments', name)} is listed twice; names must be unique.")
        seen.add(name)
    for key in ("instanceSecret", "dataVolumeName", "cloudOrigin", "siteOrigin"):
        if reader.string(key):
            reader.problem(key, "adopts or addresses one deployment and cannot be combined "
                                "with deployments; remove it or the deployments list.")
    if tls:
        reader.problem("tlsProxy", "serves one deployment's domains and cannot be combined "
                                   "with deployments yet; use one stack per public deployment.")


def _check_volume_collisions(reader: Reader, deployments: list[DeploymentSettings]) -> None:
    managed = {d.instance_name + suffix for d in deployments for suffix in MANAGED_VOLUME_SUFFIXES
               if suffix != "-data" or d.adopted_volume}
    for d in deployments:
        if d.adopted_volume and d.data_volume_name in managed:
            reader.problem("dataVolumeName", f"{reader.shown('dataVolumeName')} is a volume this stack "
                                             "manages for another purpose (Postgres, TLS "
                                             "certificates or backups); name the volume that "
                                             "holds the backend's /convex/data.")


def _check_port_clashes(reader: Reader, deployments: list[DeploymentSettings], bind: str,
                        dashboard: bool, tls) -> None:
    ports = []
    for d in deployments:
        ports += [(f"backendPort ({d.key})", bind, d.backend_port),
                  (f"sitePort ({d.key})", bind, d.site_port)]
        if dashboard:
            ports.append((f"dashboardPort ({d.key})", bind, d.dashboard_port))
    if tls and tls.bind_address:
        ports += [("httpPort", tls.bind_address, tls.http_port),
                  ("httpsPort", tls.bind_address, tls.https_port)]

    def overlaps(a: str, b: str) -> bool:
        return a == b or any(ipaddress.ip_address(ip).is_unspecified for ip in (a, b))

    for i, (name_a, ip_a, port_a) in enumerate(ports):
        for name_b, ip_b, port_b in ports[i + 1:]:
            if port_a == port_b and overlaps(ip_a, ip_b):
                reader.problem(name_b.split(" ")[0], f"host port {port_b} of {name_b} clashes "
                                                     f"with {name_a}; give each published port "
                                                     "its own number.")

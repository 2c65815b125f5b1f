"""The stack's deployments: instance names, secrets, volumes, host ports and public URLs."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Optional, Sequence

from components import rules
from components.admin_key import AdminKeyError, parse_instance_secret
from components.settings.model import DeploymentSettings, TlsSettings
from components.settings.network import (
    SITE_PATH_ON_API,
    check_origin,
    check_port,
    check_site_origin,
    is_hostname,
    url_host,
)
from components.settings.reader import Reader, SecretValue

# Each extra deployment of a stack shifts all of its host ports by this much.
DEPLOYMENT_PORT_STRIDE = 10
# Volumes the program names after the instance: an adopted data volume may not be one.
MANAGED_VOLUME_SUFFIXES = ("-data", "-pgdata", "-caddy-data", "-backups")
_VOLUME_NAME_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass(frozen=True)
class _Addressing:
    """What every deployment's public URLs derive from."""

    host: str  # the host part of derived URLs
    cloud_origin: str
    site_origin: str
    tls: Optional[TlsSettings]
    domains: dict[str, str]
    dashboard: bool

    def urls(self, ports: Sequence[int]) -> tuple[str, str, str]:
        """(cloud origin, site origin, dashboard URL) for one deployment's host ports."""
        if self.tls:
            api = f"https://{self.domains['apiDomain']}"
            site = self.domains["siteDomain"]
            return (api, f"https://{site}" if site else api + SITE_PATH_ON_API,
                    f"https://{self.domains['dashboardDomain']}" if self.dashboard else "")
        host = url_host(self.host)
        return (self.cloud_origin or f"http://{host}:{ports[0]}",
                self.site_origin or f"http://{host}:{ports[1]}",
                f"http://{host}:{ports[2]}" if self.dashboard else "")


def default_instance_name(stack: str) -> str:
    """`convex-<stack>`; a stack name that is not already a clean slug gets a short hash,
    so `Feature_X` and `feature-x` never share containers and volumes on one host."""
    slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in stack.lower())
    slug = "-".join(part for part in slug.split("-") if part) or "stack"
    if slug != stack:
        digest = hashlib.sha256(stack.encode()).hexdigest()[:6]
        return f"convex-{slug[:49].strip('-')}-{digest}"
    return f"convex-{slug}"[:63].rstrip("-")


def read_deployments(reader: Reader, stack: str, bind: Optional[str], dashboard: bool,
                     tls: Optional[TlsSettings], domains: dict[str, str]
                     ) -> list[DeploymentSettings]:
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
    unspecified = ipaddress.ip_address(bind).is_unspecified
    if unspecified and not tls:
        _check_reachable_urls(reader, bind, public_host, cloud_origin, site_origin)
    addressing = _Addressing(public_host or ("127.0.0.1" if unspecified else bind),
                             cloud_origin, site_origin, tls, domains, dashboard)
    deployments = [
        _deployment(reader, name, index, base_name, secret, volume, ports, addressing)
        for index, name in enumerate(names or [""])]
    _check_volume_collisions(reader, deployments)
    _check_port_clashes(reader, deployments, bind, dashboard, tls)
    if tls and not ipaddress.ip_address(bind).is_loopback:
        reader.problem("bindAddress", f"{reader.mention('bindAddress', bind)} publishes the "
                                      "raw backend ports beside the TLS proxy; keep them on "
                                      "127.0.0.1 when tlsProxy is true.")
    return deployments


def _deployment(reader: Reader, name: str, index: int, base_name: str,
                secret: Optional[SecretValue], volume: str, base_ports: Sequence[int],
                addressing: _Addressing) -> DeploymentSettings:
    instance = f"{base_name}-{name}" if name else base_name
    shown = reader.shown("deployments", name)
    if name and len(instance) > rules.INSTANCE_NAME_MAX_LEN:
        reader.problem("deployments", f"instance name of {shown} is longer than 63 characters; "
                                      "shorten instanceName or the name.")
    ports = [port + index * DEPLOYMENT_PORT_STRIDE for port in base_ports]
    if max(ports) > 65535:
        reader.problem("deployments", f"deployment {shown} would need host ports beyond 65535; "
                                      "lower the base ports.")
    cloud_origin, site_origin, dashboard_url = addressing.urls(ports)
    data_volume = volume or f"{instance}-data"
    domains = addressing.domains
    return DeploymentSettings(
        key=name or instance, instance_name=instance, instance_secret=secret,
        backend_port=ports[0], site_port=ports[1], dashboard_port=ports[2],
        cloud_origin=cloud_origin, site_origin=site_origin, dashboard_url=dashboard_url,
        data_volume_name=data_volume, adopted_volume=data_volume != f"{instance}-data",
        api_domain=domains["apiDomain"], site_domain=domains["siteDomain"],
        dashboard_domain=domains["dashboardDomain"])


def _read_identity(reader: Reader, stack: str) -> tuple[str, Optional[SecretValue], str]:
    base_name = reader.string("instanceName")
    if base_name and not rules.is_valid_instance_name(base_name):
        reader.problem("instanceName", f"{reader.shown('instanceName')} is not a valid instance "
                                       "name; use lowercase letters, digits and single dashes, "
                                       "at most 63 characters, e.g. convex-prod.")
        base_name = ""
    secret = reader.secret("instanceSecret")
    if secret is not None:
        try:
            parse_instance_secret(secret.reveal())
        except AdminKeyError:
            reader.problem("instanceSecret", "must be 64 hex characters (32 bytes), as in "
                                             "/convex/data/credentials/instance_secret; generate "
                                             "one with `openssl rand -hex 32`.")
    volume = reader.string("dataVolumeName")
    if volume and (not 2 <= len(volume) <= 128 or not set(volume) <= _VOLUME_NAME_CHARS
                   or not volume[0].isalnum()):
        reader.problem("dataVolumeName", f"{reader.shown('dataVolumeName')} is not a Docker "
                                         "volume name (letters, digits, _ . -, starting with a "
                                         "letter or digit).")
        volume = ""
    return base_name or default_instance_name(stack), secret, volume


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


def _check_reachable_urls(reader: Reader, bind: str, public_host: str, cloud_origin: str,
                          site_origin: str) -> None:
    """Bound to every interface, the URLs must name this host as others reach it."""
    if not (public_host or cloud_origin):
        reader.problem("publicHost", f"is required when bindAddress is "
                                     f"{reader.mention('bindAddress', bind)}: "
                                     "the URLs in the outputs and the dashboard must name this "
                                     "host as other machines reach it; set publicHost (a DNS "
                                     "name or IP) or cloudOrigin and siteOrigin.")
    elif cloud_origin and not site_origin:
        reader.problem("siteOrigin", "is required with cloudOrigin when bindAddress is every "
                                     "interface; set it (or cloudOrigin + /http).")


def _check_deployment_names(reader: Reader, names: list[str], tls) -> None:
    seen = set()
    for name in names:
        shown = reader.shown("deployments", name)
        if not rules.is_valid_instance_name(name):
            reader.problem("deployments", f"deployment name {shown} is not a valid instance "
                                          "name; use lowercase letters, digits and single "
                                          "dashes.")
        if name in seen:
            reader.problem("deployments", f"{shown} is listed twice; names must be unique.")
        seen.add(name)
    for key in ("instanceSecret", "dataVolumeName", "cloudOrigin", "siteOrigin"):
        if reader.string(key):
            reader.problem(key, "adopts or addresses one deployment and cannot be combined "
                                "with deployments; remove it or the deployments list.")
    if tls:
        reader.problem("tlsProxy", "serves one deployment's domains and cannot be combined "
                                   "with deployments yet; use one stack per public deployment.")


def _check_volume_collisions(reader: Reader, deployments: list[DeploymentSettings]) -> None:
    # An adopted volume may not be one the program names after the instance.
    managed = {d.instance_name + suffix for d in deployments
               for suffix in MANAGED_VOLUME_SUFFIXES}
    for d in deployments:
        if d.adopted_volume and d.data_volume_name in managed:
            reader.problem("dataVolumeName", f"{reader.shown('dataVolumeName')} is a volume this "
                                             "stack manages for another purpose (Postgres, TLS "
                                             "certificates or backups); name the volume that "
                                             "holds the backend's /convex/data.")


def _check_port_clashes(reader: Reader, deployments: list[DeploymentSettings], bind: str,
                        dashboard: bool, tls: Optional[TlsSettings]) -> None:
    named_by_secret = reader.is_secret("deployments") or reader.is_secret("instanceName")
    ports = []  # (key, label, address, port)
    for index, d in enumerate(deployments, start=1):
        label = f"deployment {index}" if named_by_secret else d.key
        ports += [("backendPort", label, bind, d.backend_port),
                  ("sitePort", label, bind, d.site_port)]
        if dashboard:
            ports.append(("dashboardPort", label, bind, d.dashboard_port))
    if tls and tls.bind_address:
        ports += [("httpPort", "", tls.bind_address, tls.http_port),
                  ("httpsPort", "", tls.bind_address, tls.https_port)]

    def overlaps(a: str, b: str) -> bool:
        return a == b or any(ipaddress.ip_address(ip).is_unspecified for ip in (a, b))

    def name(key: str, label: str) -> str:
        return f"{key} ({label})" if label else key

    for i, (key_a, label_a, ip_a, port_a) in enumerate(ports):
        for key_b, label_b, ip_b, port_b in ports[i + 1:]:
            if port_a == port_b and overlaps(ip_a, ip_b):
                port = "" if reader.is_secret(key_a) or reader.is_secret(key_b) else f" {port_b}"
                reader.problem(key_b, f"host port{port} of {name(key_b, label_b)} clashes "
                                      f"with {name(key_a, label_a)}; give each published port "
                                      "its own number.")

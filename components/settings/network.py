"""Addresses, ports, public origins and domains: the settings users reach Convex by."""

from __future__ import annotations

import ipaddress
import re
from typing import Optional
from urllib.parse import urlsplit

from components import rules
from components.settings.reader import Reader

# RFC 1035 labels, at least two of them, a letter-only top-level label; lowercase only.
_DOMAIN_PATTERN = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_HOST_LABELS = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
# Upstream serves HTTP actions on the API port under this path, so a single public
# origin can carry both (siteOrigin = cloudOrigin + "/http").
SITE_PATH_ON_API = "/http"


def check_ip(reader: Reader, name: str) -> Optional[str]:
    """The address in canonical form, or None (with a problem reported).

    Canonical: an IPv4-mapped address is the IPv4 address Docker binds it as, so
    ::ffff:0.0.0.0 meets every rule 0.0.0.0 does, and every spelling of :: is ::.
    """
    value = reader.string(name)
    address = rules.bind_address(value)
    if address is None or "%" in value:
        reader.problem(name, f"{reader.shown(name)} is not an IP address; use 127.0.0.1 (this "
                             "host only), 0.0.0.0 (every interface) or one interface's address "
                             "(no zone id).")
        return None
    return str(address)


def check_port(reader: Reader, name: str) -> Optional[int]:
    return reader.integer(name, 1, 65535)


def is_hostname(host: str) -> bool:
    """A DNS name or an IP literal, as it may appear in a URL."""
    try:
        ipaddress.ip_address(host)
        return "%" not in host
    except ValueError:
        return bool(_HOST_LABELS.fullmatch(host))


def parse_http_url(reader: Reader, name: str, value: str, *, allow_path: bool = False):
    """The urlsplit parts of an http(s) URL, or None with a problem reported.

    Never raises: a malformed bracket or port is a message, not a traceback.
    """
    shown = reader.shown(name, value)
    if not value.isascii() or not value.isprintable() or " " in value:
        reader.problem(name, f"{shown} is not a URL: use plain ASCII without spaces "
                             "(punycode for international domains).")
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
        host = parts.hostname
    except ValueError:
        reader.problem(name, f"{shown} is not a valid URL (check the brackets around an IPv6 "
                             "address and the port number).")
        return None
    if parts.scheme not in ("http", "https") or not host or not is_hostname(host):
        reader.problem(name, f"{shown} is not an http(s) URL; write it like "
                             "https://convex.example.com.")
        return None
    if parts.username is not None or parts.password is not None:
        reader.problem(name, "contains credentials (user:password@); remove them: this URL "
                             "is published in outputs and to every browser.")
        return None
    if port == 0:
        reader.problem(name, f"{shown} has port 0; use a port from 1 to 65535.")
        return None
    # "?" and "#" also catch an empty query or fragment, which urlsplit drops.
    if "?" in value or "#" in value or (parts.path and not allow_path):
        reader.problem(name, f"{shown} must be an origin (scheme, host, optional port) "
                             "without a path, query or fragment.")
        return None
    del port
    return parts


def check_origin(reader: Reader, name: str) -> str:
    value = reader.string(name).rstrip("/")
    if value and parse_http_url(reader, name, value) is None:
        return ""
    return value


def check_site_origin(reader: Reader, cloud_origin: str) -> str:
    """siteOrigin: an origin, or `<cloudOrigin>/http` for a single public domain."""
    value = reader.string("siteOrigin").rstrip("/")
    if not value:
        return ""
    parts = parse_http_url(reader, "siteOrigin", value, allow_path=True)
    if parts is None:
        return ""
    if parts.path and not (cloud_origin and value == cloud_origin + SITE_PATH_ON_API):
        reader.problem("siteOrigin", f"{reader.shown('siteOrigin')} has a path; a site origin "
                                     "is an origin of its own, or exactly the cloudOrigin "
                                     f"followed by {SITE_PATH_ON_API} (one domain for both).")
        return ""
    return value


def check_domain(reader: Reader, name: str) -> str:
    value = reader.string(name)
    if value and not _DOMAIN_PATTERN.fullmatch(value):
        reader.problem(name, f"{reader.shown(name)} is not a domain name; write it in lowercase "
                             "like api.convex.example.com (no scheme, no port, punycode for "
                             "international names).")
        return ""
    return value


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

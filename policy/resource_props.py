"""What the policies read from resources: the program's shapes and safe property access.

pulumi-policy wraps props in proxies that raise UnknownValueError for values unknown
during preview; the helpers here read through them without failing a whole policy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Iterator, List, Optional, Tuple

from pulumi_policy import Secret
from pulumi_policy.proxy import UnknownValueError

from components import rules

# --------------------------------------------------------------------------
# Shapes declared by the program
# --------------------------------------------------------------------------

REMOTE_IMAGE_TYPE = "docker:index/remoteImage:RemoteImage"
CONTAINER_TYPE = "docker:index/container:Container"
VOLUME_TYPE = "docker:index/volume:Volume"
NETWORK_TYPE = "docker:index/network:Network"

LABEL_STACK = "convex-selfhost.stack"
LABEL_DEPLOYMENT = "convex-selfhost.deployment"
LABEL_ROLE = "convex-selfhost.role"

ROLE_TLS_PROXY = "tls-proxy"
PROTECTED_VOLUME_ROLES = frozenset({"data", "postgres-data"})
# Role of the data volume a container of the given role mounts (used for unlabelled volumes).
MOUNTING_ROLE_TO_VOLUME_ROLE = {"backend": "data", "postgres": "postgres-data"}

ADMIN_KEY_PUBLIC_ENV = "NEXT_PUBLIC_ADMIN_KEY"

SECRET_ENV_KEYS = frozenset(
    {
        "INSTANCE_SECRET",
        "POSTGRES_URL",
        "MYSQL_URL",
        "DATABASE_URL",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "POSTGRES_PASSWORD",
        "CONVEX_SELF_HOSTED_ADMIN_KEY",
    }
)

PROD_STACK_PATTERN_KEY = "prodStackPattern"
DEFAULT_PROD_STACK_PATTERN = rules.PRODUCTION_STACK_PATTERN  # matched case-insensitively


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _convex_component(repository: str) -> Optional[str]:
    """'backend'/'dashboard' for a convex image repository (any registry mirror)."""
    return rules.convex_component(repository)


def _stack_of(urn: str) -> Optional[str]:
    """The stack of `urn:pulumi:<stack>::<project>::<type>::<name>`; else PULUMI_STACK."""
    head = urn.split("::", 1)[0] if isinstance(urn, str) else ""
    if head.startswith("urn:pulumi:") and head != "urn:pulumi:":
        return head[len("urn:pulumi:"):]
    return os.environ.get("PULUMI_STACK") or None


def _get(props: Any, key: str, default: Any = None) -> Any:
    """``props.get`` that works on the pulumi-policy proxies and plain dicts.

    Unknown values still raise ``UnknownValueError`` (Mapping.get only
    swallows KeyError)."""
    if props is None or not isinstance(props, Mapping):
        return default
    value = props.get(key)
    return default if value is None else value


def _labels(props: Any) -> dict:
    """Docker labels ``[{label, value}, ...]`` as a dict; unknown entries are skipped."""
    result = {}
    for entry in _known_items(_get(props, "labels")):
        if isinstance(entry, Mapping):
            try:
                label = _get(entry, "label")
                value = _get(entry, "value")
            except UnknownValueError:
                continue
            if isinstance(label, str):
                result[label] = value
    return result


def _known_items(seq: Any) -> Iterator[Any]:
    """Iterate a (proxied) list, skipping elements that are unknown in preview."""
    if seq is None or isinstance(seq, (str, bytes)) or not isinstance(seq, Sequence):
        return
    for i in range(len(seq)):
        try:
            yield seq[i]
        except UnknownValueError:
            continue


def _env_entries(envs: Any) -> Tuple[List[Tuple[str, str]], Optional[UnknownValueError]]:
    """Parse ``["KEY=VALUE", ...]``; returns the known entries and the first
    ``UnknownValueError`` met (an element whose value is unknown in preview)."""
    entries: List[Tuple[str, str]] = []
    first_unknown: Optional[UnknownValueError] = None
    if envs is None or isinstance(envs, (str, bytes)) or not isinstance(envs, Sequence):
        return entries, None
    for i in range(len(envs)):
        try:
            item = envs[i]
        except UnknownValueError as e:
            first_unknown = first_unknown or e
            continue
        if isinstance(item, Secret):  # only seen with remediation-style props
            item = item.value
        if not isinstance(item, str):
            continue
        key, _, value = item.partition("=")
        entries.append((key.strip(), value))
    return entries, first_unknown


def _display_name(props: Any, fallback: str) -> str:
    try:
        name = _get(props, "name")
    except UnknownValueError:
        return fallback
    return name if isinstance(name, str) and name else fallback


def _is_public_address(ip: Optional[str]) -> bool:
    """Docker host-port bind address -> reachable from other hosts?

    Empty/missing means Docker's default 0.0.0.0.  Unspecified (0.0.0.0, ::) and
    any global address are public; loopback and private ranges are not.  A value
    that is not an IP literal cannot be proven private, so it counts as public.
    """
    text = str(ip).strip()  # None and "" are no address: Docker's default
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    addr = rules.bind_address(text.partition("%")[0])  # IPv4-mapped: the IPv4 address
    if addr is None:
        return True
    if addr.is_unspecified:
        return True
    return not (addr.is_loopback or addr.is_private)

"""CrossGuard policies for the convex-selfhost Pulumi program.

Everything here is a plain module-level object so the tests can import and call
the validate functions directly.  Only ``__main__.py`` builds the ``PolicyPack``:
``PolicyPack()`` starts a gRPC server and blocks forever, so it must never run
on import.

How pulumi-policy (Python, 1.21) hands data to these functions
---------------------------------------------------------------
* Resource policies get a ``ResourceValidationArgs`` (``resource_type``,
  ``props``, ``urn``, ``name``, ``opts``, ``get_config()``); stack policies get a
  ``StackValidationArgs`` whose ``resources`` are ``PolicyResource`` objects with
  the same ``resource_type``/``props``/``urn``/``name``/``opts``.
  ``opts`` is a ``PolicyResourceOptions`` (``protect``,
  ``additional_secret_outputs``, ...).
* ``props`` use the engine's camelCase names and are wrapped by
  ``unknown_checking_proxy``: reading a value that is unknown during preview
  raises ``UnknownValueError``, which pulumi-policy turns into an *advisory*
  "can't run policy during preview" diagnostic.  The stack policies below check
  every resource they can and only then re-raise the first such error, so one
  unknown value does not hide violations elsewhere.
* ``report_violation(message, urn=None)``; the urn is ignored for resource
  policies and attributes a stack-policy violation to a resource.

Secretness (policy ``secret-envs-are-secret``)
----------------------------------------------
The engine *does* send secrets to analyzers (``MarshalOptions{KeepSecrets:
true}`` in pulumi's ``sdk/go/common/resource/plugin/analyzer_plugin.go``), but
pulumi-policy's ``Analyze``/``AnalyzeStack`` deserialize with
``deserialize_properties(..., proxy_secrets=False)`` (policy.py), and for a
secret signature ``_deserialize_property`` then returns the bare inner value
(deserialize.py): the "secret" marker is thrown away before ``validate`` runs.
Only ``Remediate`` deserializes with ``proxy_secrets=True``, and even there
``_DictSecretsProxy.__getitem__`` unwraps ``Secret`` on every read.  So a
validate function cannot tell ``envs=["K=v"]`` from
``envs=pulumi.Output.secret(["K=v"])``.

What *is* visible is ``opts.additional_secret_outputs`` (engine:
``marshalResourceOptions``; pulumi-policy: ``_get_resource_options``).  The
engine marks every property named there as secret in the resource's state.  So
the policy requires ``additional_secret_outputs`` to contain ``"envs"`` — the
closest honest, checkable marker.  It additionally accepts a ``Secret`` marker
in the raw property tree, which only exists if pulumi-policy ever hands one
over (today: remediation-style deserialization only).
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Iterable, Iterator, List, NamedTuple, Optional, Tuple

from pulumi_policy import (
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Secret,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

# The pack lives inside the project: its rules come from the one module the settings use
# too (standard library only, so this virtualenv needs nothing else).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from components import rules  # noqa: E402
from components.rules import MOVING_TAGS, ImageRef, parse_image_ref  # noqa: E402,F401

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

CONVEX_BACKEND_REPO = "ghcr.io/get-convex/convex-backend"
CONVEX_DASHBOARD_REPO = "ghcr.io/get-convex/convex-dashboard"

ADMIN_KEY_PUBLIC_ENV = "NEXT_PUBLIC_ADMIN_KEY"

SECRET_ENV_KEYS = frozenset({
    "INSTANCE_SECRET",
    "POSTGRES_URL",
    "MYSQL_URL",
    "DATABASE_URL",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "POSTGRES_PASSWORD",
    "CONVEX_SELF_HOSTED_ADMIN_KEY",
})

PROD_STACK_PATTERN_KEY = "prodStackPattern"
DEFAULT_PROD_STACK_PATTERN = r"^prod(uction)?(-.*)?$"

# OCI digest grammar: algorithm ":" encoded (hex for sha256/sha512).
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[A-Fa-f0-9]{32,}$")


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def _convex_component(repository: str) -> Optional[str]:
    """'backend'/'dashboard' for a convex image repository (any registry mirror)."""
    repo = repository.lower()
    for full, component in ((CONVEX_BACKEND_REPO, "backend"), (CONVEX_DASHBOARD_REPO, "dashboard")):
        path = full.split("/", 1)[1]  # get-convex/convex-...
        if repo in (full, path) or repo.endswith("/" + path):
            return component
    return None


def _get(props: Any, key: str, default: Any = None) -> Any:
    """``props.get`` that works on the pulumi-policy proxies and plain dicts.

    Unknown values still raise ``UnknownValueError`` (Mapping.get only
    swallows KeyError)."""
    if props is None or not isinstance(props, Mapping):
        return default
    value = props.get(key, default)
    return default if value is None else value


def _labels(props: Any) -> dict:
    """Docker labels ``[{label, value}, ...]`` as a dict; unknown entries are skipped."""
    result = {}
    for entry in _known_items(_get(props, "labels", [])):
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
        name = None
    return name if isinstance(name, str) and name else fallback


def _unwrap_proxy(value: Any) -> Any:
    """The raw object behind pulumi-policy's unknown/secret proxies."""
    from pulumi_policy.proxy import _DictProxy, _ListProxy  # pylint: disable=import-outside-toplevel
    from pulumi_policy.secret import _DictSecretsProxy, _ListSecretsProxy  # pylint: disable=import-outside-toplevel
    while isinstance(value, (_DictProxy, _ListProxy, _DictSecretsProxy, _ListSecretsProxy)):
        value = value["__target"]
    return value


def _property_carries_secret_marker(props: Any, key: str, secret_keys: Iterable[str]) -> bool:
    """True if the raw property tree marks ``props[key]`` (or every element of it
    that holds one of ``secret_keys``) as a pulumi-policy ``Secret``.

    With pulumi-policy 1.21 this never happens inside ``Analyze``/``AnalyzeStack``
    (see module docstring); it is here so the policy uses real secret markers
    if they are ever provided, and so the tests can show the difference.
    """
    raw = _unwrap_proxy(props)
    if not isinstance(raw, Mapping) or key not in raw:
        return False
    value = _unwrap_proxy(raw[key])
    if isinstance(value, Secret):
        return True
    if isinstance(value, list):
        wanted = set(secret_keys)
        sensitive = [e for e in value
                     if _env_key(e.value if isinstance(e, Secret) else e) in wanted]
        return bool(sensitive) and all(isinstance(e, Secret) for e in sensitive)
    return False


def _env_key(item: Any) -> Optional[str]:
    return item.partition("=")[0].strip() if isinstance(item, str) else None


def _is_public_address(ip: Optional[str]) -> bool:
    """Docker host-port bind address -> reachable from other hosts?

    Empty/missing means Docker's default 0.0.0.0.  Unspecified (0.0.0.0, ::) and
    any global address are public; loopback and private ranges are not.  A value
    that is not an IP literal cannot be proven private, so it counts as public.
    """
    if ip is None:
        return True
    text = str(ip).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text == "":
        return True
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_unspecified:
        return True
    return not (addr.is_loopback or addr.is_private)


# --------------------------------------------------------------------------
# 1. pinned-images
# --------------------------------------------------------------------------

def validate_pinned_images(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != REMOTE_IMAGE_TYPE:
        return
    name = _get(args.props, "name")
    if not isinstance(name, str) or not name.strip():
        report_violation(
            f"RemoteImage '{args.name}' has no image name, so its version cannot be checked. "
            "Set name to '<repository>:<version-tag>' or '<repository>@sha256:<digest>'.")
        return
    problem = rules.image_ref_problem(name.strip())
    if problem is not None:
        repository = parse_image_ref(name.strip()).repository
        report_violation(
            f"Image '{name}' {problem}: two deployments of the same code could run different "
            f"versions. Pin an explicit version tag or a digest: '{repository}:<version>' or "
            f"'{repository}@sha256:<digest>'.")


pinned_images = ResourceValidationPolicy(
    name="pinned-images",
    description=("Docker images must be pinned to an explicit version tag or a sha256 digest, "
                 "never to a moving tag such as latest, main, master, stable, edge, nightly "
                 "or dev (in any letter case)."),
    validate=validate_pinned_images,
)


# --------------------------------------------------------------------------
# 2. convex-versions-match
# --------------------------------------------------------------------------

def validate_convex_versions_match(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    images = []  # (component, image name, tag, urn)
    first_unknown: Optional[UnknownValueError] = None
    for r in args.resources:
        if r.resource_type != REMOTE_IMAGE_TYPE:
            continue
        try:
            name = _get(r.props, "name")
        except UnknownValueError as e:
            first_unknown = first_unknown or e
            continue
        if not isinstance(name, str):
            continue
        ref = parse_image_ref(name.strip())
        component = _convex_component(ref.repository)
        if component is None:
            continue
        if not ref.tag and ref.digest:
            report_violation(
                f"Convex {component} image '{name}' is pinned by digest only, so its version cannot be "
                "compared with the other Convex image. Use '<repository>:<version>@sha256:<digest>' "
                "(the same <version> for backend and dashboard).", r.urn)
            continue
        images.append((component, name, ref.tag or "latest", r.urn))

    tags = sorted({tag for _, _, tag, _ in images})
    if len(tags) > 1:
        summary = ", ".join(f"{component} '{name}'" for component, name, _, _ in images)
        for component, name, tag, urn in images:
            report_violation(
                f"Convex {component} image '{name}' uses tag '{tag}', but the Convex images in this stack "
                f"use different tags ({', '.join(tags)}): {summary}. The backend and dashboard must run "
                "the same version: set both images to the same tag.", urn)
    if first_unknown is not None:
        raise first_unknown


convex_versions_match = StackValidationPolicy(
    name="convex-versions-match",
    description=("ghcr.io/get-convex/convex-backend and ghcr.io/get-convex/convex-dashboard images "
                 "in a stack must use the same tag (backend and dashboard must run the same version)."),
    validate=validate_convex_versions_match,
)


# --------------------------------------------------------------------------
# 3. no-admin-key-in-dashboard
# --------------------------------------------------------------------------

def validate_no_admin_key_in_dashboard(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != CONTAINER_TYPE:
        return
    entries, unknown = _env_entries(_get(args.props, "envs"))
    if any(key == ADMIN_KEY_PUBLIC_ENV for key, _ in entries):
        cname = _display_name(args.props, args.name)
        report_violation(
            f"Container '{cname}' sets {ADMIN_KEY_PUBLIC_ENV}. NEXT_PUBLIC_* variables are built into the "
            "dashboard's JavaScript and sent to every browser that opens it, so this publishes the "
            f"Convex admin key. Remove {ADMIN_KEY_PUBLIC_ENV} from envs and paste the admin key into "
            "the dashboard's login form instead.")
        return
    if unknown is not None:
        raise unknown


no_admin_key_in_dashboard = ResourceValidationPolicy(
    name="no-admin-key-in-dashboard",
    description=(f"No container may set {ADMIN_KEY_PUBLIC_ENV}: NEXT_PUBLIC_* values are sent to every "
                 "browser, which would leak the admin key."),
    validate=validate_no_admin_key_in_dashboard,
)


# --------------------------------------------------------------------------
# 4. protect-data-in-prod
# --------------------------------------------------------------------------

def _stack_name_for(labels: Mapping) -> Optional[str]:
    """The stack a resource belongs to: its convex-selfhost.stack label, or, when
    the label is missing, PULUMI_STACK (the CLI sets it for policy packs)."""
    value = labels.get(LABEL_STACK)
    if isinstance(value, str) and value:
        return value
    return os.environ.get("PULUMI_STACK") or None


def validate_protect_data_in_prod(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    config = args.get_config() or {}
    pattern = config.get(PROD_STACK_PATTERN_KEY) or DEFAULT_PROD_STACK_PATTERN
    try:
        prod_re = re.compile(pattern)
    except (re.error, TypeError) as e:
        report_violation(
            f"Policy config {PROD_STACK_PATTERN_KEY}={pattern!r} is not a valid regular expression ({e}); "
            "cannot decide which stacks are production. Fix the pattern in the policy pack config.")
        return

    first_unknown: Optional[UnknownValueError] = None
    # Volumes without labels (e.g. an adopted pre-existing data volume) get their
    # role from the labelled container that mounts them.
    mounted_by: dict = {}
    for r in args.resources:
        if r.resource_type != CONTAINER_TYPE:
            continue
        try:
            clabels = _labels(r.props)
            inferred = MOUNTING_ROLE_TO_VOLUME_ROLE.get(clabels.get(LABEL_ROLE))
            if inferred is None:
                continue
            for mount in _known_items(_get(r.props, "volumes", [])):
                vol = _get(mount, "volumeName") if isinstance(mount, Mapping) else None
                if isinstance(vol, str) and vol:
                    mounted_by[vol] = (inferred, clabels)
        except UnknownValueError as e:
            first_unknown = first_unknown or e

    for r in args.resources:
        if r.resource_type != VOLUME_TYPE:
            continue
        try:
            labels = _labels(r.props)
            vname = _display_name(r.props, r.name)
        except UnknownValueError as e:
            first_unknown = first_unknown or e
            continue
        role = labels.get(LABEL_ROLE)
        if role is None and vname in mounted_by:
            role, labels = mounted_by[vname]
        if role not in PROTECTED_VOLUME_ROLES:
            continue
        stack = _stack_name_for(labels)
        if stack is None or not prod_re.search(stack):
            continue
        if not (r.opts is not None and r.opts.protect):
            report_violation(
                f"Volume '{vname}' (role {role}) in production stack '{stack}' is not protected "
                f"(stacks matching {PROD_STACK_PATTERN_KEY} '{pattern}' are production). It holds Convex "
                "data, so a destroy or replacement would delete it. Create it with "
                "pulumi.ResourceOptions(protect=True).", r.urn)
    if first_unknown is not None:
        raise first_unknown


protect_data_in_prod = StackValidationPolicy(
    name="protect-data-in-prod",
    description=("In production stacks, Docker volumes holding Convex data (role data or postgres-data, "
                 "or unlabelled volumes mounted by the backend/postgres container) must be created with "
                 "protect=True."),
    validate=validate_protect_data_in_prod,
    config_schema=PolicyConfigSchema(
        properties={
            PROD_STACK_PATTERN_KEY: {
                "type": "string",
                "default": DEFAULT_PROD_STACK_PATTERN,
                "description": ("Regular expression (Python re.search) matched against the "
                                f"{LABEL_STACK} label; matching stacks are production."),
            },
        },
    ),
)


# --------------------------------------------------------------------------
# 5. no-public-ports-without-tls
# --------------------------------------------------------------------------

def validate_no_public_ports(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    first_unknown: Optional[UnknownValueError] = None
    for r in args.resources:
        if r.resource_type != CONTAINER_TYPE:
            continue
        try:
            labels = _labels(r.props)
            role = labels.get(LABEL_ROLE)
            if role == ROLE_TLS_PROXY:
                continue
            cname = _display_name(r.props, r.name)
            ports = _get(r.props, "ports", [])
        except UnknownValueError as e:
            first_unknown = first_unknown or e
            continue
        for port in _known_items(ports):
            if not isinstance(port, Mapping):
                continue
            try:
                ip = _get(port, "ip")
                internal = _get(port, "internal", "?")
                external = _get(port, "external")
                protocol = _get(port, "protocol", "tcp")
            except UnknownValueError as e:
                first_unknown = first_unknown or e
                continue
            if not _is_public_address(ip):
                continue
            shown_ip = ip if isinstance(ip, str) and ip.strip() else "0.0.0.0 (Docker default, no ip set)"
            host_port = external if external is not None else "<random>"
            report_violation(
                f"Container '{cname}' (role {role or 'unlabelled'}) publishes port {internal}/{protocol} "
                f"on public address {shown_ip}, host port {host_port}. Raw Convex ports must stay on "
                "loopback or private addresses; public traffic goes through the TLS proxy. Set "
                "bindAddress to 127.0.0.1 and enable the TLS proxy.", r.urn)
    if first_unknown is not None:
        raise first_unknown


no_public_ports_without_tls = StackValidationPolicy(
    name="no-public-ports-without-tls",
    description=("Only the TLS proxy may publish ports on a public address; every other container must "
                 "bind its published ports to loopback or a private address."),
    validate=validate_no_public_ports,
)


# --------------------------------------------------------------------------
# 6. secret-envs-are-secret
# --------------------------------------------------------------------------

def _envs_marked_secret(args: ResourceValidationArgs) -> bool:
    opts = getattr(args, "opts", None)
    secret_outputs = list(getattr(opts, "additional_secret_outputs", None) or [])
    if "envs" in secret_outputs:
        return True
    return _property_carries_secret_marker(args.props, "envs", SECRET_ENV_KEYS)


def validate_secret_envs_are_secret(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != CONTAINER_TYPE:
        return
    # Decide from the options first: if envs is declared secret we never need
    # to read it (its value may be unknown during preview).
    if _envs_marked_secret(args):
        return
    entries, unknown = _env_entries(_get(args.props, "envs"))
    sensitive = sorted({key for key, _ in entries if key in SECRET_ENV_KEYS})
    if sensitive:
        cname = _display_name(args.props, args.name)
        report_violation(
            f"Container '{cname}' passes {', '.join(sensitive)} in envs, but envs is not declared secret. "
            "Add pulumi.ResourceOptions(additional_secret_outputs=[\"envs\"]) to the container (and keep "
            "building the values with pulumi.Output.secret) so the environment is encrypted in the state "
            "file and masked in previews. (Policies cannot see Output.secret markers on inputs, so "
            "additional_secret_outputs is what this policy checks.)")
        return
    if unknown is not None:
        raise unknown


secret_envs_are_secret = ResourceValidationPolicy(
    name="secret-envs-are-secret",
    description=("Containers whose envs carry credentials (INSTANCE_SECRET, database URLs/passwords, AWS "
                 "secret keys, the admin key) must declare envs secret via additional_secret_outputs."),
    validate=validate_secret_envs_are_secret,
)


# --------------------------------------------------------------------------

ALL_POLICIES = [
    pinned_images,
    convex_versions_match,
    no_admin_key_in_dashboard,
    protect_data_in_prod,
    no_public_ports_without_tls,
    secret_envs_are_secret,
]

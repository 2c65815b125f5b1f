"""Stack-wide policies: production data is protected, raw ports stay private."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Optional

from pulumi_policy import (
    PolicyConfigSchema,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from policy.resource_props import (
    CONTAINER_TYPE,
    DEFAULT_PROD_STACK_PATTERN,
    LABEL_ROLE,
    LABEL_STACK,
    MOUNTING_ROLE_TO_VOLUME_ROLE,
    PROD_STACK_PATTERN_KEY,
    PROTECTED_VOLUME_ROLES,
    ROLE_TLS_PROXY,
    VOLUME_TYPE,
    _display_name,
    _get,
    _is_public_address,
    _known_items,
    _labels,
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


def _volume_roles_from_containers(resources) -> tuple[dict, Optional[UnknownValueError]]:
    """Volumes without labels (e.g. an adopted pre-existing data volume) get their role
    from the labelled container that mounts them: volume name -> (role, labels)."""
    first_unknown: Optional[UnknownValueError] = None
    mounted_by: dict = {}
    for r in resources:
        if r.resource_type != CONTAINER_TYPE:
            continue
        try:
            clabels = _labels(r.props)
            inferred = MOUNTING_ROLE_TO_VOLUME_ROLE.get(clabels.get(LABEL_ROLE))
            if inferred is None:
                continue
            for mount in _known_items(_get(r.props, "volumes")):
                vol = _get(mount, "volumeName")  # None for an odd entry
                if isinstance(vol, str):
                    mounted_by[vol] = (inferred, clabels)
        except UnknownValueError as e:
            first_unknown = first_unknown or e
    return mounted_by, first_unknown


def validate_protect_data_in_prod(
    args: StackValidationArgs, report_violation: ReportViolation
) -> None:
    config = args.get_config() or {}
    pattern = config.get(PROD_STACK_PATTERN_KEY) or DEFAULT_PROD_STACK_PATTERN
    try:
        prod_re = re.compile(pattern, re.IGNORECASE)
    except (re.error, TypeError) as e:
        report_violation(
            f"Policy config {PROD_STACK_PATTERN_KEY}={pattern!r} is not a valid regular "
            f"expression ({e}); "
            "cannot decide which stacks are production. Fix the pattern in the policy pack config."
        )
        return

    mounted_by, first_unknown = _volume_roles_from_containers(args.resources)
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
                f"(stacks matching {PROD_STACK_PATTERN_KEY} '{pattern}' are production). It holds "
                "Convex data, so a destroy or replacement would delete it. Create it with "
                "pulumi.ResourceOptions(protect=True).",
                r.urn,
            )
    if first_unknown is not None:
        raise first_unknown


protect_data_in_prod = StackValidationPolicy(
    name="protect-data-in-prod",
    description=(
        "In production stacks, Docker volumes holding Convex data (role data or postgres-data, "
        "or unlabelled volumes mounted by the backend/postgres container) must be created with "
        "protect=True."
    ),
    validate=validate_protect_data_in_prod,
    config_schema=PolicyConfigSchema(
        properties={
            PROD_STACK_PATTERN_KEY: {
                "type": "string",
                "default": DEFAULT_PROD_STACK_PATTERN,
                "description": (
                    "Regular expression (Python re.search, case-insensitive) matched against "
                    f"the {LABEL_STACK} label; matching stacks are production. Default: "
                    "prod, production, prd and live, alone or with a -suffix."
                ),
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
            ports = _get(r.props, "ports")
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
            shown_ip = (
                ip if isinstance(ip, str) and ip.strip() else "0.0.0.0 (Docker default, no ip set)"
            )
            host_port = external if external is not None else "<random>"
            report_violation(
                f"Container '{cname}' (role {role or 'unlabelled'}) publishes port "
                f"{internal}/{protocol} "
                f"on public address {shown_ip}, host port {host_port}. Raw Convex ports must stay "
                "on "
                "loopback or private addresses; public traffic goes through the TLS proxy. Set "
                "bindAddress to 127.0.0.1 and enable the TLS proxy.",
                r.urn,
            )
    if first_unknown is not None:
        raise first_unknown


no_public_ports_without_tls = StackValidationPolicy(
    name="no-public-ports-without-tls",
    description=(
        "Only the TLS proxy may publish ports on a public address; every other container must "
        "bind its published ports to loopback or a private address."
    ),
    validate=validate_no_public_ports,
)

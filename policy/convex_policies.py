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
closest honest, checkable marker, read through pulumi-policy's public API only.
"""

from __future__ import annotations

from typing import Optional

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from components import rules
from components.rules import MOVING_TAGS, ImageRef, parse_image_ref  # noqa: F401
from policy.kubernetes_policies import KUBERNETES_POLICIES
from policy.resource_props import (
    ADMIN_KEY_PUBLIC_ENV,
    CONTAINER_TYPE,
    REMOTE_IMAGE_TYPE,
    SECRET_ENV_KEYS,
    _convex_component,
    _display_name,
    _env_entries,
    _get,
    _stack_of,
)
from policy.stack_policies import (  # noqa: F401  (re-exported for the tests)
    _stack_name_for,
    no_public_ports_without_tls,
    protect_data_in_prod,
    validate_no_public_ports,
    validate_protect_data_in_prod,
)

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
            "Set name to '<repository>:<version-tag>' or '<repository>@sha256:<digest>'."
        )
        return
    stack = _stack_of(args.urn)
    problem = rules.image_ref_problem(name.strip(), strict=not rules.is_dev_stack(stack or ""))
    if problem is not None:
        repository = parse_image_ref(name.strip()).repository
        report_violation(
            f"Image '{name}' {problem}: two deployments of the same code could run different "
            f"versions. Pin an explicit version tag or a digest: '{repository}:<version>' or "
            f"'{repository}@sha256:<digest>'."
        )


pinned_images = ResourceValidationPolicy(
    name="pinned-images",
    description=(
        "Docker images must be pinned to an explicit version tag or a sha256 digest, "
        "never to a moving tag such as latest, main, master, stable, edge, nightly "
        "or dev (in any letter case). Outside dev stacks a Convex image needs a release's "
        "commit SHA and any other image its full version (major.minor.patch; "
        "major.minor for postgres), so floating tags such as postgres:17 or caddy:2 fail."
    ),
    validate=validate_pinned_images,
)


# --------------------------------------------------------------------------
# 2. convex-versions-match
# --------------------------------------------------------------------------


def validate_convex_versions_match(
    args: StackValidationArgs, report_violation: ReportViolation
) -> None:
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
                f"Convex {component} image '{name}' is pinned by digest only, so its version "
                "cannot be "
                "compared with the other Convex image. Use "
                "'<repository>:<version>@sha256:<digest>' "
                "(the same <version> for backend and dashboard).",
                r.urn,
            )
            continue
        images.append((component, name, ref.tag or "latest", r.urn))

    tags = sorted({tag for _, _, tag, _ in images})
    if len(tags) > 1:
        summary = ", ".join(f"{component} '{name}'" for component, name, _, _ in images)
        for component, name, tag, urn in images:
            report_violation(
                f"Convex {component} image '{name}' uses tag '{tag}', but the Convex images in "
                "this stack "
                f"use different tags ({', '.join(tags)}): {summary}. The backend and dashboard "
                "must run "
                "the same version: set both images to the same tag.",
                urn,
            )
    if first_unknown is not None:
        raise first_unknown


convex_versions_match = StackValidationPolicy(
    name="convex-versions-match",
    description=(
        "ghcr.io/get-convex/convex-backend and ghcr.io/get-convex/convex-dashboard images "
        "in a stack must use the same tag (backend and dashboard must run the same version)."
    ),
    validate=validate_convex_versions_match,
)


# --------------------------------------------------------------------------
# 3. no-admin-key-in-dashboard
# --------------------------------------------------------------------------


def validate_no_admin_key_in_dashboard(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    if args.resource_type != CONTAINER_TYPE:
        return
    entries, unknown = _env_entries(_get(args.props, "envs"))
    if any(key == ADMIN_KEY_PUBLIC_ENV for key, _ in entries):
        cname = _display_name(args.props, args.name)
        report_violation(
            f"Container '{cname}' sets {ADMIN_KEY_PUBLIC_ENV}. NEXT_PUBLIC_* variables are built "
            "into the "
            "dashboard's JavaScript and sent to every browser that opens it, so this publishes the "
            f"Convex admin key. Remove {ADMIN_KEY_PUBLIC_ENV} from envs and paste the admin key "
            "into "
            "the dashboard's login form instead."
        )
        return
    if unknown is not None:
        raise unknown


no_admin_key_in_dashboard = ResourceValidationPolicy(
    name="no-admin-key-in-dashboard",
    description=(
        f"No container may set {ADMIN_KEY_PUBLIC_ENV}: NEXT_PUBLIC_* values are sent to every "
        "browser, which would leak the admin key."
    ),
    validate=validate_no_admin_key_in_dashboard,
)


# --------------------------------------------------------------------------
# 6. secret-envs-are-secret
# --------------------------------------------------------------------------


def _envs_marked_secret(args: ResourceValidationArgs) -> bool:
    return "envs" in (args.opts.additional_secret_outputs or [])


def validate_secret_envs_are_secret(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    if args.resource_type != CONTAINER_TYPE:
        return
    # Decide from the options first: if envs is declared secret we never need
    # to read it (its value may be unknown during preview).
    if _envs_marked_secret(args):
        return
    entries, unknown = _env_entries(_get(args.props, "envs"))
    sensitive = sorted({key for key, _ in entries
                        if key in SECRET_ENV_KEYS or rules.looks_secret_env_name(key)})
    if sensitive:
        cname = _display_name(args.props, args.name)
        report_violation(
            f"Container '{cname}' passes {', '.join(sensitive)} in envs, but envs is not declared "
            "secret. "
            'Add pulumi.ResourceOptions(additional_secret_outputs=["envs"]) to the container (and '
            'keep '
            "building the values with pulumi.Output.secret) so the environment is encrypted in "
            "the state "
            "file and masked in previews. (Policies cannot see Output.secret markers on inputs, so "
            "additional_secret_outputs is what this policy checks.)"
        )
        return
    if unknown is not None:
        raise unknown


secret_envs_are_secret = ResourceValidationPolicy(
    name="secret-envs-are-secret",
    description=(
        "Containers whose envs carry credentials (INSTANCE_SECRET, database URLs/passwords, AWS "
        "secret keys, the admin key, any name with SECRET, TOKEN, PASSWORD, KEY, DSN, AUTH...) "
        "must declare envs secret via additional_secret_outputs."
    ),
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
    *KUBERNETES_POLICIES,
]

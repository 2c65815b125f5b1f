"""CrossGuard policies for the Kubernetes target (see convex_policies.py for how
pulumi-policy hands data to these functions).

* single-convex-backend: a workload running the Convex backend image has at most one
  replica and never runs an old and a new pod side by side. Upstream supports one backend
  process per database: a starting backend takes the database's lease and the older one
  stops with LeaseLostError (crates/postgres/src/lib.rs). A Deployment must use Recreate, or
  RollingUpdate with maxSurge 0; a StatefulSet of one replica replaces its pod only after
  the old one is gone.
* pinned-workload-images: every container image of a workload (StatefulSet, Deployment,
  CronJob, Job, Pod) is pinned, by the same rules as the Docker images.
* protect-claims-in-prod: in production stacks the claims holding Convex data (labelled
  convex-data, or mounted by the backend) are created with protect=True.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterator, Optional

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from components import rules
from policy.resource_props import (
    DEFAULT_PROD_STACK_PATTERN,
    PROD_STACK_PATTERN_KEY,
    _convex_component,
    _get,
    _stack_of,
)

WORKLOAD_TYPES = {
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
}
CLAIM_TYPE = "kubernetes:core/v1:PersistentVolumeClaim"
DATA_CLAIM_LABEL = "convex-data"


def _pod_spec(props: Any, path: tuple) -> Any:
    for key in path:
        props = _get(props, key)
        if props is None:
            return None
    return props


def _images(props: Any, resource_type: str) -> Iterator[str]:
    pod = _pod_spec(props, WORKLOAD_TYPES[resource_type])
    for group in ("initContainers", "containers"):
        for container in _get(pod, group) or []:
            image = _get(container, "image")
            if isinstance(image, str):
                yield image.strip()


def _runs_backend(props: Any, resource_type: str) -> bool:
    return any(_convex_component(rules.parse_image_ref(image).repository) == "backend"
               for image in _images(props, resource_type))


def validate_single_backend(args: ResourceValidationArgs,
                            report_violation: ReportViolation) -> None:
    if args.resource_type not in WORKLOAD_TYPES or not _runs_backend(args.props,
                                                                     args.resource_type):
        return
    kind = args.resource_type.rsplit(":", 1)[-1]
    replicas = _get(_get(args.props, "spec"), "replicas")
    if kind in ("DaemonSet",) or (isinstance(replicas, int) and replicas > 1):
        report_violation(
            f"{kind} '{args.name}' runs the Convex backend with "
            f"{replicas if kind != 'DaemonSet' else 'one pod per node'} replicas: upstream "
            "supports one backend per database (a second one takes its lease and the first "
            "stops). Set replicas to 1; scale with more deployments, bigger pods, an "
            "external database and S3.")
    if kind == "Deployment":
        strategy = _get(_get(args.props, "spec"), "strategy") or {}
        kind_of = _get(strategy, "type") or "RollingUpdate"
        surge = _get(_get(strategy, "rollingUpdate"), "maxSurge")
        if kind_of == "RollingUpdate" and surge not in (0, "0", "0%"):
            report_violation(
                f"Deployment '{args.name}' runs the Convex backend with a rolling update that "
                "starts the new pod before the old one stops: two backends on one database. "
                "Use strategy Recreate (or maxSurge 0), or a StatefulSet of one replica.")


single_convex_backend = ResourceValidationPolicy(
    name="single-convex-backend",
    description=("A Kubernetes workload running the Convex backend has at most one replica "
                 "and an update strategy that never runs two backend pods at once."),
    validate=validate_single_backend,
)


def validate_pinned_workload_images(args: ResourceValidationArgs,
                                    report_violation: ReportViolation) -> None:
    if args.resource_type not in WORKLOAD_TYPES:
        return
    strict = not rules.is_dev_stack(_stack_of(args.urn) or "")
    for image in _images(args.props, args.resource_type):
        problem = rules.image_ref_problem(image, strict=strict)
        if problem is not None:
            repository = rules.parse_image_ref(image).repository
            report_violation(
                f"Image '{image}' of '{args.name}' {problem}. Pin an explicit version tag or "
                f"a digest: '{repository}:<version>' or '{repository}@sha256:<digest>'.")


pinned_workload_images = ResourceValidationPolicy(
    name="pinned-workload-images",
    description=("Container images of Kubernetes workloads are pinned like Docker images: no "
                 "moving tags; outside dev stacks a release's commit SHA or a full version."),
    validate=validate_pinned_workload_images,
)


def _claims_mounted_by_backend(resources) -> tuple[set, Optional[UnknownValueError]]:
    names, unknown = set(), None
    for r in resources:
        if r.resource_type not in WORKLOAD_TYPES:
            continue
        try:
            if not _runs_backend(r.props, r.resource_type):
                continue
            pod = _pod_spec(r.props, WORKLOAD_TYPES[r.resource_type])
            for volume in _get(pod, "volumes") or []:
                claim = _get(_get(volume, "persistentVolumeClaim"), "claimName")
                if isinstance(claim, str):
                    names.add(claim)
        except UnknownValueError as error:
            unknown = unknown or error
    return names, unknown


def validate_protect_claims_in_prod(args: StackValidationArgs,
                                    report_violation: ReportViolation) -> None:
    pattern = (args.get_config() or {}).get(PROD_STACK_PATTERN_KEY) or \
        DEFAULT_PROD_STACK_PATTERN
    try:
        production = re.compile(pattern, re.IGNORECASE)
    except (re.error, TypeError):
        return  # protect-data-in-prod reports the pattern itself
    mounted, unknown = _claims_mounted_by_backend(args.resources)
    stack = os.environ.get("PULUMI_STACK") or ""
    for r in args.resources:
        if r.resource_type != CLAIM_TYPE:
            continue
        try:
            metadata = _get(r.props, "metadata") or {}
            name = _get(metadata, "name") or r.name
            label = (_get(metadata, "labels") or {}).get("app.kubernetes.io/name")
        except UnknownValueError as error:
            unknown = unknown or error
            continue
        owner = _stack_of(r.urn) or stack
        if (label == DATA_CLAIM_LABEL or name in mounted) and production.search(owner) and \
                not (r.opts is not None and r.opts.protect):
            report_violation(
                f"PersistentVolumeClaim '{name}' holds Convex data in production stack "
                f"'{owner}' and is not protected: a destroy or replacement would delete it. "
                "Create it with pulumi.ResourceOptions(protect=True) (protectData: true).",
                r.urn)
    if unknown is not None:
        raise unknown


protect_claims_in_prod = StackValidationPolicy(
    name="protect-claims-in-prod",
    description=("In production stacks, PersistentVolumeClaims holding Convex data are "
                 "created with protect=True."),
    validate=validate_protect_claims_in_prod,
)

KUBERNETES_POLICIES = [single_convex_backend, pinned_workload_images, protect_claims_in_prod]

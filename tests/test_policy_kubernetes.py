"""policy/kubernetes_policies.py, against what the program declares for the Kubernetes
target and against hostile workloads written by hand."""

import pytest
from harness import evaluate
from pulumi_policy import ResourceValidationArgs
from test_policy import Violations, analyze_props, options
from test_policy_on_stacks import violations

from policy import kubernetes_policies as kp

BACKEND = "ghcr.io/get-convex/convex-backend:652b828b5129e6cdbcaa3c20efa8d116d09ff3bf"
URN = "urn:pulumi:prod::convex-selfhost::kubernetes:apps/v1:{kind}::x"


def workload(kind, spec):
    return {"kind": kind, "spec": spec}


def check(policy, kind, props):
    found = Violations()
    policy.validate(ResourceValidationArgs(f"kubernetes:apps/v1:{kind}", analyze_props(props),
                                           URN.format(kind=kind), "x", options(False, []),
                                           None, None), found)
    return found.messages


def pod_template(image=BACKEND):
    return {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}


def test_the_program_passes_on_the_kubernetes_stack():
    assert violations(evaluate("kubernetes")) == []


@pytest.mark.parametrize("kind, spec, expected", [
    ("StatefulSet", {"replicas": 2}, "with 2 replicas"),
    ("Deployment", {"replicas": 1}, "rolling update"),
    ("Deployment", {"replicas": 1, "strategy": {"type": "RollingUpdate",
                                                "rollingUpdate": {"maxSurge": "25%"}}},
     "rolling update"),
    ("ReplicaSet", {"replicas": 3}, "with 3 replicas"),
    ("DaemonSet", {}, "one pod per node"),
])
def test_a_second_backend_is_refused(kind, spec, expected):
    (message,) = check(kp.single_convex_backend, kind, workload(kind, {**spec,
                                                                        **pod_template()}))
    assert expected in message


@pytest.mark.parametrize("spec", [
    {"replicas": 1, "strategy": {"type": "Recreate"}},
    {"replicas": 1, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0}}},
])
def test_a_deployment_that_never_overlaps_is_accepted(spec):
    assert check(kp.single_convex_backend, "Deployment",
                 workload("Deployment", {**spec, **pod_template()})) == []


def test_other_images_may_scale():
    assert check(kp.single_convex_backend, "Deployment", workload("Deployment", {
        "replicas": 5, **pod_template("ghcr.io/get-convex/convex-dashboard:652b828")})) == []


def test_moving_tags_in_workloads_are_refused():
    (message,) = check(kp.pinned_workload_images, "StatefulSet", workload("StatefulSet", {
        "replicas": 1, **pod_template("ghcr.io/get-convex/convex-backend:latest")}))
    assert "ghcr.io/get-convex/convex-backend:latest" in message
    found = violations(evaluate("kubernetes", {"version": "latest"}, stack_name="dev"))
    assert any("latest" in m for m in found)


def test_unprotected_claims_in_production_are_refused():
    found = violations(evaluate("kubernetes", {"protectData": False}, stack_name="prod"))
    # The data claim, and the backups claim the restore drill's backend reads from.
    assert sorted(m for m in found if "PersistentVolumeClaim" in m) == [
        f"PersistentVolumeClaim 'convex-prod-{role}' holds Convex data in production stack "
        "'prod' and is not protected: a destroy or replacement would delete it. Create it "
        "with pulumi.ResourceOptions(protect=True) (protectData: true)."
        for role in ("backups", "data")]
    assert violations(evaluate("kubernetes", {"protectData": False},
                               stack_name="staging")) == []

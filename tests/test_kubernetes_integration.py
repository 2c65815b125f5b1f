"""The Kubernetes target against a real API server (opt-in, a few minutes): the Pulumi CLI
and the pulumi-kubernetes plugin deploy a stack to the cluster of a kubeconfig you give,
meant for a disposable one such as kwok's (docs/contributing.md says how to start one):

    CONVEX_SELFHOST_INTEGRATION=1 CONVEX_SELFHOST_KUBECONFIG=<file> \\
        ./test.sh -m integration tests/test_kubernetes_integration.py -s

It checks: the first `up` creates everything and the provider awaits the StatefulSet,
Deployment and Services; a second `preview` and a `refresh` show no changes; a version
change updates only the workloads; nothing secret is in `pulumi stack export` in plain
text; `ops.drill` makes a Job of the drill CronJob and deletes it; `destroy` keeps the
data claims and the namespace; an unreachable cluster fails `up` with a clear error. The
claims are bound to PersistentVolumes the test makes (a cluster without a provisioner,
such as kwok's, binds nothing on its own). On kwok no container
runs: pods become Ready by kwok's rules, so probes, images and the backend itself are not
exercised; the API server's validation, defaulting and admission, the controllers
(StatefulSet, Deployment, CronJob, the claim binder) and the provider's await logic are.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_integration import ENABLE_VAR, project_copy

from components.releases import DEFAULT_VERSION
from components.settings.model import BACKEND_IMAGE

REPO = Path(__file__).resolve().parents[1]
KUBECONFIG_VAR = "CONVEX_SELFHOST_KUBECONFIG"
OLDER_VERSION = "4d3b0a5de955a258e70e3813bbff486051d88820"
pytestmark = pytest.mark.integration


def skip_reason():
    missing = []
    if os.environ.get(ENABLE_VAR) != "1":
        missing.append(f"{ENABLE_VAR}=1 (real-engine tests are opt-in)")
    for tool in ("pulumi", "kubectl"):
        if shutil.which(tool) is None:
            missing.append(f"the {tool} CLI on PATH")
    kubeconfig = os.environ.get(KUBECONFIG_VAR, "")
    if not kubeconfig or not Path(kubeconfig).is_file():
        missing.append(f"{KUBECONFIG_VAR}=<kubeconfig of a disposable cluster>")
    if missing:
        return "needs " + ", ".join(missing)
    done = subprocess.run(["pulumi", "plugin", "ls"], capture_output=True, text=True)
    if "kubernetes" not in done.stdout:
        return "the kubernetes provider plugin is not installed (pulumi plugin ls)"
    ready = kubectl("get", "--raw", "/readyz", check=False)
    if ready.returncode != 0:
        return f"the cluster of {KUBECONFIG_VAR} does not answer: {ready.stderr.strip()[:200]}"
    return None


def kubectl(*args: str, check: bool = True, stdin: str = "") -> subprocess.CompletedProcess:
    done = subprocess.run(["kubectl", "--kubeconfig", os.environ[KUBECONFIG_VAR], *args],
                          capture_output=True, text=True, timeout=120, input=stdin or None)
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
    return done


def volume(name: str, storage_class: str) -> str:
    """A PersistentVolume the claims of that class bind to (hostPath: nothing mounts it)."""
    return json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"convex-selfhost-test": storage_class}},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": storage_class, "persistentVolumeReclaimPolicy": "Retain",
                 "hostPath": {"path": f"/tmp/{name}"}}})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    ws = project_copy(tmp_path_factory.mktemp("k8sit"))
    storage_class = f"{ws.prefix}-class"
    for role in ("data", "backups"):
        kubectl("apply", "-f", "-", stdin=volume(f"{ws.prefix}-{role}", storage_class))
    yield ws, storage_class
    for stack in ws.stacks:
        ws.pulumi("state", "unprotect", "--all", "--yes", stack=stack, check=False)
        ws.pulumi("destroy", "--yes", "--skip-preview", stack=stack, check=False)
        ws.pulumi("stack", "rm", "--yes", "--force", stack=stack, check=False)
    kubectl("delete", "namespace", f"{ws.prefix}-ns", "--ignore-not-found", "--wait=false",
            check=False)
    kubectl("delete", "pv", "-l", f"convex-selfhost-test={storage_class}", "--wait=false",
            check=False)


def _stack(ws, role: str, kubeconfig: str, **extra) -> str:
    config = {"target": "kubernetes", "kubernetesNamespace": f"{ws.prefix}-ns",
              "kubernetesStorageSize": "1Gi", "version": OLDER_VERSION, "protectData": "false",
              "backendStartTimeoutSeconds": 60, **extra}
    stack = ws.new_stack(role, config)
    ws.pulumi("config", "set", "kubernetes:kubeconfig", kubeconfig, stack=stack)
    return stack


def _changes(ws, stack):
    steps = ws.preview_steps(stack)
    return sorted((s["op"], s["urn"].rsplit("::", 1)[-1]) for s in steps if s["op"] != "same")


def test_the_kubernetes_target_deploys_updates_and_keeps_the_data(cluster):
    ws, storage_class = cluster
    stack = _stack(ws, "k8s", os.environ[KUBECONFIG_VAR],
                   kubernetesStorageClass=storage_class, backupSchedule="0 3 * * *")
    ws.pulumi("up", "--yes", "--skip-preview", stack=stack)
    outputs = ws.outputs(stack)
    instance, namespace = outputs["instanceName"], f"{ws.prefix}-ns"
    assert outputs["backendUrl"] == (f"http://{instance}-backend.{namespace}.svc.cluster."
                                     "local:3210")
    sts = json.loads(kubectl("get", "statefulset", f"{instance}-backend", "-n", namespace,
                             "-o", "json").stdout)
    assert sts["spec"]["replicas"] == 1 and sts["status"].get("readyReplicas") == 1
    claims = json.loads(kubectl("get", "pvc", "-n", namespace, "-o", "json").stdout)["items"]
    print(f"\nclaims: {[(c['metadata']['name'], c['status']['phase']) for c in claims]}")
    assert {c["metadata"]["name"]: c["status"]["phase"] for c in claims} == {
        f"{instance}-data": "Bound", f"{instance}-backups": "Bound"}
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "value" not in env["INSTANCE_SECRET"] and "valueFrom" in env["INSTANCE_SECRET"]
    assert kubectl("get", "cronjob", f"{instance}-backup", "-n", namespace).returncode == 0
    # status.sh reads the workloads with kubectl (the backend's in-cluster URL does not
    # resolve here, so the checks of the backend itself fail and are not looked at).
    status = subprocess.run([sys.executable, "-m", "ops.status", stack], cwd=ws.project,
                            env=ws.env, capture_output=True, text=True, timeout=300)
    print(f"\nstatus: {status.stdout}{status.stderr}")
    assert f"ok    StatefulSet {instance}-backend has its replica ready in {namespace}" \
        in status.stdout
    assert f"ok    backups: CronJob {instance}-backup, last success none yet" in status.stdout

    # Nothing to do the second time, also after reading everything back.
    assert _changes(ws, stack) == []
    refresh = ws.pulumi("refresh", "--yes", "--skip-preview", stack=stack)
    assert "error" not in refresh.stdout.lower()
    assert _changes(ws, stack) == []

    # Nothing secret in plain text in the state.
    state = ws.pulumi("stack", "export", stack=stack).stdout
    for value in (outputs["instanceSecret"], outputs["adminKey"],
                  outputs["adminKey"].split("|", 1)[1]):
        assert value not in state

    # A new release: only the workloads change, and the backend runs the new image.
    ws.pulumi("config", "set", "convex-selfhost:version", DEFAULT_VERSION, stack=stack)
    changes = _changes(ws, stack)
    print(f"\nversion change: {changes}")
    assert changes == [("update", f"{instance}-backend"), ("update", f"{instance}-backup-drill"),
                       ("update", f"{instance}-dashboard")]
    ws.pulumi("up", "--yes", "--skip-preview", stack=stack)
    image = kubectl("get", "statefulset", f"{instance}-backend", "-n", namespace, "-o",
                    "jsonpath={.spec.template.spec.containers[0].image}").stdout
    assert image == f"{BACKEND_IMAGE}:{DEFAULT_VERSION}"
    assert _changes(ws, stack) == []

    # The restore drill: a Job made from the suspended drill CronJob, deleted afterwards.
    # kwok runs no container: its pod "completes" with no log, which the drill must not
    # take for a pass (tests/test_kubernetes_drill_pod.py runs the same pod's containers).
    drill = subprocess.run([sys.executable, "-m", "ops.drill", "--stack", stack],
                           cwd=ws.project, env=ws.env, capture_output=True, text=True,
                           timeout=600)
    print(f"\ndrill: {drill.stdout}{drill.stderr}")
    assert f"job {instance}-drill-" in drill.stdout and "deleted job" in drill.stdout
    assert drill.returncode == 1 and "without a result line" in drill.stderr
    assert kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout.strip() == ""

    # destroy: the workloads go; the claims (the data) and the namespace stay.
    ws.pulumi("destroy", "--yes", "--skip-preview", stack=stack)
    assert kubectl("get", "statefulset", f"{instance}-backend", "-n", namespace,
                   check=False).returncode != 0
    kept = kubectl("get", "pvc", "-n", namespace, "-o", "name").stdout.split()
    print(f"\nclaims after destroy: {kept}")
    assert sorted(kept) == [f"persistentvolumeclaim/{instance}-backups",
                            f"persistentvolumeclaim/{instance}-data"]


def test_an_unreachable_cluster_fails_up_with_a_clear_error(cluster, tmp_path):
    ws, _ = cluster
    unreachable = tmp_path / "unreachable.kubeconfig"
    unreachable.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "gone", "user": {"token": "x"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "gone"}}]}))
    stack = _stack(ws, "gone", str(unreachable), kubernetesNamespace=f"{ws.prefix}-gone")
    done = ws.pulumi("up", "--yes", "--skip-preview", stack=stack, check=False)
    text = done.stdout + done.stderr
    print("\n" + "\n".join(line for line in text.splitlines() if "error" in line.lower())[:1500])
    assert done.returncode != 0
    assert "unreachable" in text.lower() or "connection refused" in text.lower()

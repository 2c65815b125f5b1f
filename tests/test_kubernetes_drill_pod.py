"""The Kubernetes restore drill's pod, run for real with Docker (opt-in): kwok runs no
container, so the containers the program declares in the `<instance>-drill` CronJob are
started here as a kubelet would start them, from the program's own inputs (under the mock
engine): the sidecar backend (the stand-in backend image) and the client beside it in the
sidecar's network namespace, as the same non-root user with a read-only root, the client
files from the ConfigMap's data, the secrets from the Secret's data, and a backups
directory holding a real backup, as the claim would.

    CONVEX_SELFHOST_INTEGRATION=1 ./test.sh -m integration tests/test_kubernetes_drill_pod.py
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess

import pytest
from harness import evaluate
from test_restore_standin import Deployment, seed_zip

from components.releases import DEFAULT_VERSION
from ops import backup, backup_drill

pytestmark = pytest.mark.integration


def skip_reason(images: list[str]) -> str:
    if os.environ.get("CONVEX_SELFHOST_INTEGRATION") != "1" or not shutil.which("docker"):
        return "needs CONVEX_SELFHOST_INTEGRATION=1 and a Docker engine"
    for image in images:
        if subprocess.run(["docker", "image", "inspect", image],
                          capture_output=True).returncode != 0:
            return f"needs the image {image} (tests/standins/build.sh)"
    return ""


def docker_argv(container: dict, secret: dict, volumes: dict[str, str]) -> list[str]:
    """`docker run` options for a pod's container: its env (secretKeyRef from SECRET's
    data), its mounts (VOLUMES: name -> a host directory, or "" for an emptyDir), its user
    and read-only root."""
    argv = []
    for env in container.get("env", []):
        ref = (env.get("valueFrom") or {}).get("secretKeyRef")
        argv += ["-e", f"{env['name']}={secret[ref['key']] if ref else env['value']}"]
    for mount in container.get("volumeMounts", []):
        source = volumes[mount["name"]]
        if source:
            argv += ["-v", f"{source}:{mount['mountPath']}"
                     + (":ro" if mount.get("readOnly") else "")]
        else:
            argv += ["--tmpfs", f"{mount['mountPath']}:mode=1777"]
    context = container.get("securityContext") or {}
    if context.get("runAsUser") is not None:
        argv += ["--user", f"{context['runAsUser']}:{context.get('runAsGroup', 0)}"]
    if context.get("readOnlyRootFilesystem"):
        argv.append("--read-only")
    if context.get("allowPrivilegeEscalation") is False:
        argv += ["--security-opt", "no-new-privileges"]
    if "ALL" in (context.get("capabilities") or {}).get("drop", []):
        argv += ["--cap-drop", "ALL"]
    return argv


def test_the_drill_pod_imports_the_claims_newest_snapshot_into_its_sidecar(tmp_path):
    run = evaluate("kubernetes", {"version": DEFAULT_VERSION})
    cron = run.named("convex-kubernetes-backup-drill")
    pod = cron.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (sidecar,), (client,) = pod["initContainers"], pod["containers"]
    reason = skip_reason([sidecar["image"], client["image"]])
    if reason:
        pytest.skip(reason)
    secret = run.named("convex-kubernetes-backup-drill-key").inputs["stringData"]

    # The ConfigMap's files, and a backups directory as the backup CronJob leaves it.
    files = tmp_path / "client"
    files.mkdir()
    for name, text in run.named("convex-kubernetes-backup-client").inputs["data"].items():
        (files / name).write_text(text)
    backups = tmp_path / "backups"
    backups.mkdir()
    prod = Deployment("convex-kubernetes", tmp_path / "prod")
    try:
        client_for_prod = backup.Client(prod.url, prod.key, run_timeout=60)
        try:
            assert backup.Restore(client_for_prod, str(seed_zip(tmp_path / "seed.zip")), 0.05,
                                  print, lambda _summary: True).run() == 32
        finally:
            client_for_prod.close()
        assert backup.run_once(prod.url, prod.key, str(backups), 3, 60, 0.05)
    finally:
        prod.close()
    # fsGroup 65534 on a cluster: the client (uid 65534) reads the claim's files.
    subprocess.run(["chown", "-R", "65534:65534", str(backups)], check=True)
    os.chmod(files, 0o755)
    for path in files.iterdir():
        path.chmod(0o644)

    volumes = {"client": str(files), "backups": str(backups), "tmp": "", "data": ""}
    name = f"convex-drill-pod-{secrets.token_hex(3)}"
    started = subprocess.run(["docker", "run", "-d", "--name", name,
                              *docker_argv(sidecar, secret, volumes), sidecar["image"]],
                             capture_output=True, text=True)
    try:
        assert started.returncode == 0, started.stderr
        done = subprocess.run(["docker", "run", "--rm", "--network", f"container:{name}",
                               *docker_argv(client, secret, volumes), client["image"],
                               *client["command"]], capture_output=True, text=True,
                              timeout=300)
        print(done.stdout[-2000:], done.stderr[-2000:])
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        ok, line = backup_drill.parse_result(done.stdout)
        assert ok and line.endswith("tables=2 documents=32 files=0")
        newest = sorted(p.name for p in backups.glob("snapshot-*.zip"))[-1]
        assert f"file=/backups/{newest}" in line
        assert secret["CONVEX_SELF_HOSTED_ADMIN_KEY"] not in done.stdout + done.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)

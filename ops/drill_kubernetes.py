"""The restore drill on the Kubernetes target (`python -m ops.drill`, ops/drill.py): a Job
made from the stack's suspended `<instance>-drill` CronJob (components/kubernetes/backup.py),
waited for (bounded), its client's log read, and the Job deleted whatever happened."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from ops.backup_drill import DrillFailed, result_counts
from ops.commands import last_line

KUBECTL_TIMEOUT = 120.0
IMPORT_TIMEOUT = 3600.0  # as the CronJob's client: the import, and the export after it


@contextlib.contextmanager
def kubectl_for(config: dict) -> Iterator[list[str]]:
    """kubectl's argv prefix for the stack's cluster: `kubernetes:kubeconfig` (a path, or
    the file's text, kept in a 0600 temporary file) and `kubernetes:context`."""
    def value(key: str) -> str:
        item = config.get(key)
        return str(item.get("value") or "") if isinstance(item, dict) else ""
    kubeconfig, context = value("kubernetes:kubeconfig"), value("kubernetes:context")
    with tempfile.TemporaryDirectory(prefix="convex-drill-kube-") as directory:
        argv = ["kubectl"]
        if kubeconfig and "\n" not in kubeconfig and Path(kubeconfig).expanduser().is_file():
            argv += ["--kubeconfig", str(Path(kubeconfig).expanduser())]
        elif kubeconfig:
            path = Path(directory, "kubeconfig")
            path.touch(mode=0o600)
            path.write_text(kubeconfig)
            argv += ["--kubeconfig", str(path)]
        if context:
            argv += ["--context", context]
        yield argv


JOB_POLL = 2.0


def drill_kubernetes(settings, deployment, config: dict, run: Callable, say: Callable,
                     timeout: float, sleep=time.sleep) -> dict:
    from components.kubernetes.backup import drill_instance_for

    if shutil.which("kubectl") is None:
        raise DrillFailed("kubectl is not on PATH; the drill on a cluster runs as a Job that "
                          "kubectl makes (https://kubernetes.io/docs/tasks/tools/)")
    if settings.backups is None:
        raise DrillFailed("the stack takes no backups (backupSchedule), so it has no drill "
                         "CronJob: on a cluster the drill runs on its own snapshots")
    namespace = settings.kubernetes.namespace
    cron = drill_instance_for(deployment.instance_name)
    job = f"{cron}-{secrets.token_hex(3)}"
    deadline = time.monotonic() + timeout + 2 * IMPORT_TIMEOUT + 600
    with kubectl_for(config) as kubectl:
        kube = [*kubectl, "--namespace", namespace, "--request-timeout", "60s"]
        made = run([*kube, "create", "job", job, f"--from=cronjob/{cron}"], KUBECTL_TIMEOUT)
        if made.returncode != 0:
            raise DrillFailed(f"kubectl create job {job} --from=cronjob/{cron} failed: "
                             f"{last_line(made.stderr)} (did `pulumi up` make it?)")
        say(f"drill: job {job} started in namespace {namespace}")
        try:
            state = ""
            while not state:
                done = run([*kube, "get", "job", job, "-o", "json"], KUBECTL_TIMEOUT)
                if done.returncode == 0:
                    state = job_state(done.stdout)
                if not state and time.monotonic() > deadline:
                    raise DrillFailed(f"job {job} did not finish in time")
                if not state:
                    sleep(JOB_POLL)
            logs = run([*kube, "logs", f"job/{job}", "--container", "drill"], KUBECTL_TIMEOUT)
            output = logs.stdout if logs.returncode == 0 else ""
            for line in output.splitlines():
                say(line)
            return result_counts(0 if state == "Complete" else 1, output, f"job {job} ({state})")
        finally:
            gone = run([*kube, "delete", "job", job, "--cascade=background", "--wait=false"],
                       KUBECTL_TIMEOUT)
            say(f"drill: deleted job {job}" if gone.returncode == 0 else
                f"drill: could not delete job {job}: {last_line(gone.stderr)}; delete it "
                "by hand (its pod is gone with it)")


def job_state(text: str) -> str:
    """'Complete' or 'Failed' once the Job has ended (its conditions), '' before."""
    try:
        conditions = (json.loads(text).get("status") or {}).get("conditions") or []
    except (ValueError, AttributeError):
        return ""
    for condition in conditions:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return condition["type"]
    return ""

"""`./status.sh` on the Kubernetes target: the workloads as the cluster reports them, read
with `kubectl` (the stack's `kubernetes:kubeconfig` / `kubernetes:context`), besides the
backend checked from here: the backend StatefulSet has its one replica ready and, with
scheduled backups, the backup CronJob is not suspended, its last Job did not fail, and a
successful run is not overdue (two scheduled times plus a run's bound since the last
success, or since the CronJob was made)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from typing import Callable, Optional

from ops.commands import last_line
from ops.drill_kubernetes import kubectl_for
from ops.status_host import overdue

KUBECTL_TIMEOUT = 60


def _get(run: Callable, kube: list, kind: str, name: str) -> tuple[Optional[dict], str]:
    done = run([*kube, "get", kind, name, "-o", "json"], KUBECTL_TIMEOUT)
    if done.returncode != 0:
        return None, last_line(done.stderr)
    try:
        found = json.loads(done.stdout)
    except ValueError:
        return None, f"`kubectl get {kind}` did not print JSON"
    return (found, "") if isinstance(found, dict) else (None, "not an object")


def _jobs_failed(run: Callable, kube: list, cron: str) -> list[str]:
    """The names of the CronJob's Jobs whose last condition says Failed, newest last."""
    done = run([*kube, "get", "jobs", "-o", "json"], KUBECTL_TIMEOUT)
    try:
        items = json.loads(done.stdout).get("items") or [] if done.returncode == 0 else []
    except (ValueError, AttributeError):
        items = []
    mine = [job for job in items if isinstance(job, dict) and any(
        ref.get("kind") == "CronJob" and ref.get("name") == cron
        for ref in (job.get("metadata") or {}).get("ownerReferences") or [])]
    mine.sort(key=lambda job: (job.get("metadata") or {}).get("creationTimestamp") or "")
    if not mine:
        return []
    conditions = (mine[-1].get("status") or {}).get("conditions") or []
    failed = any(c.get("type") == "Failed" and c.get("status") == "True" for c in conditions)
    return [mine[-1]["metadata"].get("name", "?")] if failed else []


def check_cluster(settings, config: dict, instance: str, report, run: Callable,
                  now: Optional[dt.datetime] = None) -> None:
    namespace = settings.kubernetes.namespace
    if shutil.which("kubectl") is None:
        report.fail("kubectl is not on PATH: the cluster's workloads cannot be read "
                    "(https://kubernetes.io/docs/tasks/tools/)")
        return
    with kubectl_for(config) as kubectl:
        kube = [*kubectl, "--namespace", namespace, "--request-timeout", "30s"]
        backend, problem = _get(run, kube, "statefulset", f"{instance}-backend")
        if backend is None:
            report.fail(f"cannot read StatefulSet {instance}-backend in {namespace}: {problem}")
            return
        ready = (backend.get("status") or {}).get("readyReplicas") or 0
        if ready == 1:
            report.ok(f"StatefulSet {instance}-backend has its replica ready in {namespace}")
        else:
            report.fail(f"StatefulSet {instance}-backend has {ready} ready replica(s) "
                        f"(`kubectl describe statefulset {instance}-backend -n {namespace}`)")
        if settings.backups is None:
            return
        cron, problem = _get(run, kube, "cronjob", f"{instance}-backup")
        if cron is None:
            report.fail(f"cannot read CronJob {instance}-backup: {problem}")
            return
        status = cron.get("status") or {}
        if (cron.get("spec") or {}).get("suspend"):
            report.fail(f"CronJob {instance}-backup is suspended: no backups are taken")
        failed = _jobs_failed(run, kube, f"{instance}-backup")
        if failed:
            report.fail(f"the last backup Job {failed[0]} failed (`kubectl logs job/"
                        f"{failed[0]} -n {namespace}`)")
        success = status.get("lastSuccessfulTime") or ""
        since = success or (cron.get("metadata") or {}).get("creationTimestamp") or ""
        late = overdue(since, settings.backups.schedule,
                       now or dt.datetime.now(dt.timezone.utc))
        if late:
            report.fail(f"backups: no successful run since {since}; one was due by {late} "
                        f"(cron {settings.backups.schedule})")
        elif not failed:
            report.ok(f"backups: CronJob {instance}-backup, last success "
                      f"{success or 'none yet'}")

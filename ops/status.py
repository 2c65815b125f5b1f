"""Is a stack's deployment up? `./status.sh [stack]` (this module) answers per deployment:

- every container the stack's state records exists, runs, is healthy, and runs the image
  the stack recorded (a container removed, stopped or swapped by hand shows here, while
  `pulumi preview` without --refresh says "unchanged");
- the backend answers at `backendUrl` and accepts the stack's admin key
  (`GET /api/check_admin_key`, the call `npx convex` makes);
- the backend runs the Convex version the stack pins (`version`, else the default
  release): an upgrade set with `pulumi config set version` but not applied shows here;
- with scheduled backups, the backup container is healthy: its health check fails when the
  last successful backup is older than the schedule allows;
- on the host target, over SSH with the stack's pinned host key: the unit is active, and
  with backups the timer is active, the last run succeeded and is not overdue
  (ops/status_host.py); on a cluster, with kubectl: the backend's replica is ready and,
  with backups, the CronJob runs, its last Job did not fail and none is overdue
  (ops/status_kubernetes.py).

Exit status: 0 when everything holds, 1 when something does not (each problem is one line
starting with "FAIL"), 2 when the stack cannot be read. The admin key is read from the
stack's outputs and sent only to the backend, never printed. Every command and request is
bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from components.docker.docker_common import LABEL_PREFIX
from components.releases import DEFAULT_VERSION
from ops.backup import NoRedirect, redact
from ops.commands import Runner, last_line, run_command
from ops.stack_settings import StackSettingsError, stack_config, stack_settings
from ops.status_host import check_host
from ops.status_kubernetes import check_cluster

PULUMI_TIMEOUT = 120
DOCKER_TIMEOUT = 30
HTTP_TIMEOUT = 10
CONTAINER_TYPE = "docker:index/container:Container"
IMAGE_TYPE = "docker:index/remoteImage:RemoteImage"


class StatusError(Exception):
    """The stack cannot be read at all (exit 2)."""





@dataclass
class Expected:
    """A container as the stack's state records it."""

    name: str
    image: str  # the image id the container was created from
    deployment: str
    role: str
    image_name: str = ""  # e.g. ghcr.io/get-convex/convex-backend:<tag>, when the state has it


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: int = 0

    def ok(self, text: str) -> None:
        self.lines.append(f"  ok    {text}")

    def fail(self, text: str) -> None:
        self.failures += 1
        self.lines.append(f"  FAIL  {text}")



def read_stack(stack: str, run: Runner) -> tuple[dict, list[Expected], str]:
    """(outputs, containers, docker host) of the stack."""
    done = run(["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", stack],
               PULUMI_TIMEOUT)
    if done.returncode != 0:
        raise StatusError(f"cannot read the outputs of stack '{stack}': "
                          f"{last_line(done.stderr)}")
    try:
        outputs = json.loads(done.stdout or "{}")
    except ValueError:
        outputs = None
    if not isinstance(outputs, dict):
        raise StatusError(f"`pulumi stack output --json` of '{stack}' printed no JSON object")
    done = run(["pulumi", "stack", "export", "--stack", stack], PULUMI_TIMEOUT)
    if done.returncode != 0:
        raise StatusError(f"cannot read the state of stack '{stack}': "
                          f"{last_line(done.stderr)}")
    try:
        state = json.loads(done.stdout)
        resources = state.get("deployment", {}).get("resources") or []
    except (ValueError, AttributeError):
        raise StatusError(f"`pulumi stack export` of '{stack}' printed no state") from None
    image_names = {}
    for resource in resources:
        if isinstance(resource, dict) and resource.get("type") == IMAGE_TYPE:
            outs = resource.get("outputs") or {}
            for id_key in ("imageId", "repoDigest", "id"):
                if outs.get(id_key):
                    image_names[str(outs[id_key])] = str(outs.get("name", ""))
    containers = []
    for resource in resources:
        if not isinstance(resource, dict) or resource.get("type") != CONTAINER_TYPE:
            continue
        outs = resource.get("outputs") or {}
        labels = {item.get("label"): item.get("value") for item in outs.get("labels") or []
                  if isinstance(item, dict)}
        containers.append(Expected(
            name=str(outs.get("name", "")), image=str(outs.get("image", "")),
            deployment=str(labels.get(f"{LABEL_PREFIX}.deployment", "")),
            role=str(labels.get(f"{LABEL_PREFIX}.role", "")),
            image_name=image_names.get(str(outs.get("image", "")), "")))
    done = run(["pulumi", "config", "get", "docker:host", "--stack", stack], PULUMI_TIMEOUT)
    docker_host = done.stdout.strip() if done.returncode == 0 else ""
    return outputs, containers, docker_host


def deployments(outputs: dict) -> dict[str, dict]:
    """Per deployment: instanceName, backendUrl, adminKey (maps for a multi-deployment
    stack, plain values for a single one)."""
    names = outputs.get("instanceName")
    keys = ("instanceName", "backendUrl", "adminKey")
    if isinstance(names, dict):
        return {key: {k: (outputs.get(k) or {}).get(key, "") for k in keys} for key in names}
    if isinstance(names, str):
        return {names: {k: outputs.get(k, "") for k in keys}}
    return {}


def inspect(names: Sequence[str], docker_host: str, run: Runner) -> dict[str, dict]:
    """docker inspect of each named container that exists."""
    if not names:
        return {}
    host = ["--host", docker_host] if docker_host else []
    found = {}
    for name in names:  # one by one: a missing container fails the whole call otherwise
        done = run(["docker", *host, "inspect", "--type", "container", "--", name],
                   DOCKER_TIMEOUT)
        if done.returncode != 0:
            if "No such" not in done.stderr:
                found[name] = {"_error": last_line(done.stderr)}
            continue
        try:
            value = json.loads(done.stdout)
            found[name] = value[0] if isinstance(value, list) and value else {}
        except ValueError:
            found[name] = {"_error": "docker inspect printed no JSON"}
    return found


def healthcheck_passes(name: str, seen: dict, docker_host: str, run: Runner) -> tuple[bool, str]:
    """Run the container's own healthcheck test once inside it (bounded): whether it passes,
    and its last output line."""
    config = seen.get("Config") if isinstance(seen.get("Config"), dict) else {}
    check = config.get("Healthcheck") if isinstance(config.get("Healthcheck"), dict) else {}
    test = check.get("Test") if isinstance(check.get("Test"), list) else []
    if len(test) < 2 or test[0] not in ("CMD", "CMD-SHELL"):
        return False, "no healthcheck test to run"
    command = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
    host = ["--host", docker_host] if docker_host else []
    done = run(["docker", *host, "exec", name, *command], DOCKER_TIMEOUT)
    return done.returncode == 0, last_line(done.stdout + done.stderr)


def check_container(want: Expected, seen: Optional[dict], report: Report,
                    probe: Optional[Callable[[str, dict], tuple[bool, str]]] = None) -> None:
    label = f"{want.role or 'container'} {want.name}"
    if seen is None:
        report.fail(f"{label}: missing (removed by hand?). `./up.sh` recreates it.")
        return
    if "_error" in seen:
        report.fail(f"{label}: cannot be inspected: {seen['_error']}")
        return
    state = seen.get("State") if isinstance(seen.get("State"), dict) else {}
    if not state.get("Running"):
        report.fail(f"{label}: not running (status {state.get('Status', 'unknown')}, exit code "
                    f"{state.get('ExitCode')}); see `docker logs {want.name}`; `./up.sh` "
                    "starts it again.")
        return
    health = state.get("Health") if isinstance(state.get("Health"), dict) else {}
    status = health.get("Status")
    if status == "starting" and probe is not None:
        # Before Docker's first probe (up to one interval after a start on engines below
        # API 1.44, which `up` no longer waits for): run the healthcheck test itself.
        passes, output = probe(want.name, seen)
        if not passes:
            report.fail(f"{label}: starting (its healthcheck does not pass yet: {output})")
            return
        status = "healthy"
    if status and status != "healthy":
        probes = health.get("Log") if isinstance(health.get("Log"), list) else []
        last = probes[-1].get("Output", "") if probes and isinstance(probes[-1], dict) else ""
        report.fail(f"{label}: {status}" + (f" (last probe: {last_line(last)})"
                                            if last else ""))
        return
    if want.image and seen.get("Image") and seen.get("Image") != want.image:
        report.fail(f"{label}: runs image {seen.get('Image')[:19]}, not the stack's "
                    f"{want.image[:19]} (replaced by hand?); `./up.sh` puts the stack's back.")
        return
    report.ok(f"{label}: running" + (", healthy" if status else "") + ", the stack's image")


class Backend:
    """GETs against one backend, direct (no proxy: the admin key must not go to one)."""

    def __init__(self, url: str, key: str):
        self.url, self.key = url.rstrip("/"), key
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                   NoRedirect())

    def get(self, path: str, with_key: bool) -> tuple[int, str]:
        headers = {"Authorization": f"Convex {self.key}"} if with_key else {}
        request = urllib.request.Request(self.url + path, headers=headers, method="GET")
        try:
            with self._opener.open(request, timeout=HTTP_TIMEOUT) as answer:
                return answer.status, answer.read(4096).decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read(4096).decode("utf-8", "replace")
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            return 0, str(reason)


def check_version(backend: Optional[Expected], version: str, report: Report) -> None:
    deployed = backend.image_name.rpartition(":")[2] if backend and backend.image_name else ""
    if not deployed:
        report.fail("the stack's state names no backend image")
    elif deployed != version:
        report.fail(f"the stack pins Convex {version[:12]} but {deployed[:12]} is deployed: "
                    "apply the upgrade (see the README's Upgrades) or reset `version`")
    else:
        report.ok(f"Convex {deployed[:12]}, the version the stack pins")


def check_backend(values: dict, report: Report, backend_type=Backend) -> None:
    url, key = str(values.get("backendUrl") or ""), str(values.get("adminKey") or "")
    if not url.startswith(("http://", "https://")):
        report.fail(f"backendUrl {url!r} is not an http(s) URL")
        return
    backend = backend_type(url, key)
    status, body = backend.get("/version", with_key=False)
    if status != 200:
        report.fail(f"backend at {url} does not answer /version ({status or body})")
        return
    report.ok(f"backend at {url} answers")
    status, body = backend.get("/api/check_admin_key", with_key=True)
    if status == 200:
        report.ok("the stack's admin key is accepted")
    else:
        report.fail(f"the stack's admin key is refused ({status or redact(body, key)[:200]}); "
                    "was the instance secret changed outside the stack?")


def status(stack: str, run: Runner = run_command, backend_type=Backend,
           out=sys.stdout) -> int:
    outputs, containers, docker_host = read_stack(stack, run)
    done = run(["pulumi", "config", "get", "convex-selfhost:version", "--stack", stack],
               PULUMI_TIMEOUT)
    version = done.stdout.strip() if done.returncode == 0 else ""
    version = version or DEFAULT_VERSION
    done = run(["pulumi", "config", "get", "convex-selfhost:target", "--stack", stack],
               PULUMI_TIMEOUT)
    target = done.stdout.strip() if done.returncode == 0 else "docker"
    per_deployment = deployments(outputs)
    if not per_deployment:
        raise StatusError(f"stack '{stack}' has no deployment outputs: was it deployed "
                          f"(./up.sh {stack})?")
    seen = inspect([c.name for c in containers], docker_host, run)
    target_settings, config = None, {}
    if target in ("host", "kubernetes"):
        try:
            config = stack_config(stack, run)
            target_settings = stack_settings(stack, config)
        except StackSettingsError as error:
            raise StatusError(str(error)) from None
    failures = 0
    for key, values in per_deployment.items():
        report = Report()
        instance = str(values.get("instanceName") or key)
        mine = [c for c in containers if c.deployment == instance
                or (not c.deployment and c.name.startswith(f"{instance}-"))]
        if target == "host":
            # The systemd units on the host, over SSH; the backend also from here (below).
            check_host(target_settings, instance, report, run)
        elif target == "kubernetes":
            # The workloads as the cluster reports them; the backend also from here (its
            # in-cluster URL: run this where it resolves, or `kubectl port-forward`).
            check_cluster(target_settings, config, instance, report, run)
        else:
            if not mine:
                report.fail("the stack's state records no container for it")
            for want in mine:
                check_container(want, seen.get(want.name), report, lambda name, found:
                                healthcheck_passes(name, found, docker_host, run))
            check_version(next((c for c in mine if c.role == "backend"), None), version,
                          report)
        check_backend(values, report, backend_type)
        print(f"{instance}:", file=out)
        for line in report.lines:
            print(line, file=out)
        failures += report.failures
    verdict = "all checks passed" if not failures else f"{failures} check(s) failed"
    print(f"stack '{stack}': {verdict}", file=out)
    return 0 if not failures else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="status.sh", description="Check that a stack's deployments run as recorded.")
    parser.add_argument("stack", nargs="?", default="dev", help="the stack (default: dev)")
    args = parser.parse_args(argv)
    if shutil.which("pulumi") is None:
        print("status: error: `pulumi` is not on PATH", file=sys.stderr)
        return 2
    try:
        return status(args.stack)
    except StatusError as error:
        print(f"status: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("status: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PULUMI_SKIP_UPDATE_CHECK", "1")
    sys.exit(main())

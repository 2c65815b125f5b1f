"""HealthGate: `pulumi up` succeeds only once a container reports healthy, every time.

The docker provider's own `wait` records the container even when the wait times out,
and the next `pulumi up` sees no diff and accepts the unhealthy container. A gate is a
separate (dynamic) resource that depends on the container: it is recorded only after
Docker reports the container healthy, so a failed wait fails this `pulumi up`, and the
next one waits (and fails) again until the container is healthy. A replaced container
(a new id) is waited for again.

It asks Docker through the `docker` CLI, against the same engine as the provider
(`docker:host`, or DOCKER_HOST and friends from the environment).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from typing import Mapping, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult

# Inputs whose change means "wait again" (a new container, another engine, another limit,
# other settings).
_WATCHED = ("container_id", "container_name", "docker_host", "timeout_seconds", "settings")
_OUTPUT_LIMIT = 300


class HealthGateError(Exception):
    pass


def _inspect_state(name: str, docker_host: str) -> dict:
    command = ["docker"] + (["--host", docker_host] if docker_host else []) + [
        "inspect", "--type", "container", "--format", "{{json .State}}", "--", name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return {}
    if done.returncode != 0:
        raise HealthGateError(f"`docker inspect {name}` failed: "
                              f"{readable(done.stderr)}")
    return parse_state(name, done.stdout)


def parse_state(name: str, printed: str) -> dict:
    """The container state `docker inspect --format '{{json .State}}'` printed, or an error."""
    try:
        state = json.loads(printed)
    except ValueError:
        state = None
    if not isinstance(state, dict) or not state:
        raise HealthGateError(
            f"`docker inspect {name}` did not print a container state (it printed "
            f"{readable(printed) or 'nothing'!r}); check that the `docker` CLI on PATH talks "
            "to the engine the stack deploys to. The next `pulumi up` checks again.")
    return state


_METER_HEADER = ("% Total", "Dload")
_METER_ROW = re.compile(r"[\d.:kMGTP-]+(\s+[\d.:kMGTP-]+)+")


def readable(output) -> str:
    """What a probe or command printed, for a message: curl's progress meter (printed by
    `curl -f` without `-sS`) and control characters dropped, cut to a readable length."""
    lines = str(output).replace("\r", "\n").splitlines()
    kept = [line.strip() for line in lines
            if line.strip() and not line.strip().startswith(_METER_HEADER)
            and not _METER_ROW.fullmatch(line.strip())]
    text = "".join(ch if ch.isprintable() else " " for ch in " ".join(kept))
    return text[:_OUTPUT_LIMIT]


def wait_until_healthy(name: str, docker_host: str, timeout_seconds: int,
                       inspect=_inspect_state, clock=time.monotonic, sleep=time.sleep) -> str:
    """Poll until healthy (or running, without a healthcheck); raise with the reason."""
    if inspect is _inspect_state and shutil.which("docker") is None:
        raise HealthGateError(
            "the `docker` CLI is not on PATH; it is needed to check that containers are "
            "healthy (install the Docker CLI where you run pulumi).")
    deadline = clock() + timeout_seconds
    last = ""
    while True:
        state = inspect(name, docker_host)
        health = state.get("Health") or {}
        if not isinstance(health, dict):
            health = {}
        status = health.get("Status")
        if state and not state.get("Running") and not state.get("Restarting"):
            raise HealthGateError(
                f"container {name} is not running (status {state.get('Status')!r}, exit code "
                f"{state.get('ExitCode')}); see `docker logs {name}`. The next `pulumi up` "
                "checks again.")
        if status == "healthy" or (state.get("Running") and not health):
            return status or "running"
        probes = health.get("Log") or []
        if isinstance(probes, list) and probes and isinstance(probes[-1], dict):
            last = readable(probes[-1].get("Output", ""))
        if clock() >= deadline:
            raise HealthGateError(
                f"container {name} did not become healthy within {timeout_seconds}s (status "
                f"{status or 'unknown'}; last probe: {last or 'none yet'}). See `docker logs "
                f"{name}`; the next `pulumi up` checks again and fails until it is healthy.")
        sleep(1)


class _HealthGateProvider(ResourceProvider):
    def create(self, props):
        wait_until_healthy(props["container_name"], props.get("docker_host") or "",
                           int(props["timeout_seconds"]))
        return CreateResult(id_=str(props["container_id"]), outs=dict(props))

    def diff(self, _id, olds, news):
        changed = any(olds.get(key) != news.get(key) for key in _WATCHED)
        return DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def update(self, _id, _olds, news):
        wait_until_healthy(news["container_name"], news.get("docker_host") or "",
                           int(news["timeout_seconds"]))
        return UpdateResult(outs=dict(news))


class HealthGate(Resource):
    """Recorded only once `container` reports healthy within `timeout_seconds`."""

    container_id: pulumi.Output[str]

    def __init__(self, name: str, container, timeout_seconds: int, docker_host: str = "",
                 opts: Optional[pulumi.ResourceOptions] = None,
                 settings: Optional[Mapping[str, str]] = None):
        """`settings`: what the container runs with, secrets left out (its plain environment
        variables and labels). The container's own envs are secret as a whole in the
        state, so a preview shows their change only as [secret]; the gate's map shows it
        by name (RUST_LOG: "info" => "debug")."""
        # container.id and container.name as inputs make the gate depend on the container.
        # The engine address may carry credentials (and `docker:host` may be set with
        # --secret): it is kept secret in the gate's state whatever it holds.
        super().__init__(
            _HealthGateProvider(), name,
            {"container_id": container.id, "container_name": container.name,
             "timeout_seconds": timeout_seconds,
             "docker_host": pulumi.Output.secret(docker_host) if docker_host else "",
             **({"settings": dict(settings)} if settings else {})},
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=["docker_host"])))

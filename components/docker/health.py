"""HealthGate: `pulumi up` succeeds only once a container answers its healthcheck, every time.

The docker provider's own `wait` records the container even when the wait times out,
and the next `pulumi up` sees no diff and accepts the unhealthy container. Here every
`pulumi up` (like `docker compose up --wait`) confirms each container's health in the
program itself, before it registers the container's gate: a small record in the state
(a Stash, kept by the engine itself) that what depends on the container's health
depends on. A failed wait fails this `pulumi up`, and the next one waits (and fails)
again until the container is healthy; a container Docker already reports healthy costs
one `docker inspect`. A preview waits for nothing.

Healthy means: the container's own healthcheck test passes. Docker runs that test only
every `interval` (and, below API 1.44, the first time only one interval after the start),
so waiting for Docker's status costs up to an interval (5 s for the backend, 10 s for the
dashboard) after the container already answers. The gate runs the same test itself,
through the engine (`docker exec`, so it works on a remote engine and on unpublished
ports alike), in a loop inside the container every PROBE_INTERVAL seconds: it knows
within a fraction of a second. Docker's own status still counts (a container Docker
already calls healthy is not probed), and the containers keep their healthchecks for
Docker's view (`docker ps`, restarts). An image without `sh` falls back to Docker's status.

It asks the same engine as the provider (`docker:host`, or DOCKER_HOST and friends from
the environment): the provider's local engine on its socket for `inspect`
(components/docker/engine_api.py: no process to start), any other through the `docker`
CLI; the probes always run with `docker exec`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, Optional

import pulumi
from pulumi.dynamic import ResourceProvider
from pulumi.runtime.proto.resource_pb2_grpc import ResourceMonitorStub

from components.docker import engine_api

_OUTPUT_LIMIT = 300
# Between two probes inside the container: a ready container is noticed within about this
# long, and a waiting gate costs one probe process per interval.
PROBE_INTERVAL = 0.2
# One `docker exec` probes for at most this long before the gate looks at the container
# again (exited? replaced?); a container that exits ends the exec at once anyway.
PROBE_ROUND_SECONDS = 30
# Runs the healthcheck's test in a loop: $1 seconds, $2 the test's kind (CMD or
# CMD-SHELL), then the test. Exit 0 once it passes; 3 with the last output when time is up.
PROBE_SCRIPT = (
    'end=$(($(date +%s) + $1)); kind=$2; shift 2; '
    'while :; do '
    'if [ "$kind" = CMD-SHELL ]; then out=$(sh -c "$1" 2>&1); else out=$("$@" 2>&1); fi '
    '&& exit 0; '
    '[ "$(date +%s)" -lt "$end" ] || { printf "%s" "$out" | tail -c 2000; exit 3; }; '
    f'sleep {PROBE_INTERVAL} 2>/dev/null || sleep 1; '
    'done')
PROBE_TIMED_OUT = 3


class HealthGateError(pulumi.RunError):
    """Why a container is not healthy; a RunError, so `pulumi up` prints the message
    alone."""


def _docker(docker_host: str) -> list[str]:
    return ["docker"] + (["--host", docker_host] if docker_host else [])


def _inspect_state(name: str, docker_host: str) -> dict:
    """The container's State, with its configured healthcheck (or None) under
    "Healthcheck"; {} when the engine did not answer in time. The local engine is asked on
    its socket (no process to start), any other through the CLI."""
    socket_path = engine_api.local_socket(docker_host)
    if socket_path:
        try:
            return state_from_api(name, engine_api.get_json(
                socket_path, engine_api.container_path(name)))
        except engine_api.NotFound:
            raise HealthGateError(f"`docker inspect {name}` failed: no such container "
                                  f"{name}") from None
        except engine_api.EngineApiError:
            pass  # ask through the CLI instead
    command = _docker(docker_host) + [
        "inspect", "--type", "container", "--format", INSPECT_FORMAT, "--", name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return {}
    if done.returncode != 0:
        raise HealthGateError(f"`docker inspect {name}` failed: "
                              f"{readable(done.stderr)}")
    return parse_state(name, done.stdout)


INSPECT_FORMAT = "{{json .State}}\t{{json .Config.Healthcheck}}"


def parse_state(name: str, printed: str) -> dict:
    """The container state (and healthcheck) `docker inspect --format INSPECT_FORMAT`
    printed, or an error."""
    state_text, _, check_text = printed.partition("\t")
    try:
        state = json.loads(state_text)
        healthcheck = json.loads(check_text) if check_text.strip() else None
    except ValueError:
        state = None
    if not isinstance(state, dict) or not state:
        raise HealthGateError(
            f"`docker inspect {name}` did not print a container state (it printed "
            f"{readable(printed) or 'nothing'!r}); check that the `docker` CLI on PATH talks "
            "to the engine the stack deploys to. The next `pulumi up` checks again.")
    return {**state, "Healthcheck": healthcheck}


def state_from_api(name: str, container) -> dict:
    """parse_state's result from the engine's GET /containers/<name>/json."""
    state = container.get("State") if isinstance(container, dict) else None
    config = container.get("Config") if isinstance(container, dict) else None
    if not isinstance(state, dict) or not state:
        raise HealthGateError(f"the engine's answer about container {name} has no state; "
                              "the next `pulumi up` checks again.")
    healthcheck = config.get("Healthcheck") if isinstance(config, dict) else None
    return {**state, "Healthcheck": healthcheck}


def healthcheck_test(state: dict) -> list[str]:
    """The test the container's healthcheck runs (["CMD", ...] or ["CMD-SHELL", cmd]);
    [] when it has none we can run."""
    check = state.get("Healthcheck")
    test = check.get("Test") if isinstance(check, dict) else None
    if (isinstance(test, list) and len(test) >= 2 and test[0] in ("CMD", "CMD-SHELL")
            and all(isinstance(part, str) for part in test)):
        return test
    return []


def _probe_inside(name: str, docker_host: str, test: list[str],
                  seconds: int) -> tuple[str, str]:
    """Run the healthcheck's test in the container until it passes or `seconds` pass:
    ("passed", ""), ("failed", last output), or ("unavailable", why) when the probe
    itself could not run (container not running, no `sh` in the image, engine hung)."""
    command = _docker(docker_host) + ["exec", name, "sh", "-c", PROBE_SCRIPT, "probe",
                                      str(max(1, seconds)), *test]
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=seconds + 60, check=False)
    except subprocess.TimeoutExpired:
        return "unavailable", "`docker exec` did not return"
    if done.returncode == 0:
        return "passed", ""
    if done.returncode == PROBE_TIMED_OUT:
        return "failed", readable(done.stdout)
    return "unavailable", readable(done.stderr or done.stdout)


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
                       inspect=_inspect_state, clock=time.monotonic, sleep=time.sleep,
                       probe=_probe_inside) -> str:
    """Wait until the container's healthcheck test passes (probed inside it, or Docker
    reports healthy), or it runs without a healthcheck; raise with the reason. A container
    Docker already calls unhealthy has had its start period (as long as the timeout
    here): one short probe, and if that fails too, the error at once."""
    if inspect is _inspect_state and shutil.which("docker") is None:
        raise HealthGateError(
            "the `docker` CLI is not on PATH; it is needed to check that containers are "
            "healthy (install the Docker CLI where you run pulumi).")
    deadline = clock() + timeout_seconds
    last = ""
    can_probe = True
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
            last = readable(probes[-1].get("Output", "")) or last
        test = healthcheck_test(state)
        remaining = deadline - clock()
        if remaining > 0 and can_probe and test and state.get("Running"):
            started = clock()
            outcome, output = probe(name, docker_host, test, 1 if status == "unhealthy"
                                    else int(min(remaining, PROBE_ROUND_SECONDS)))
            if outcome == "passed":
                return "healthy"
            last = output or last
            if status == "unhealthy":
                raise HealthGateError(_unhealthy(name, last))
            # A probe that cannot run at all (no `sh` in the image) is not tried again;
            # one that failed at once (the container stopping) is retried after a pause.
            can_probe = "executable file not found" not in output
            if outcome == "unavailable" and clock() - started < 1:
                sleep(min(0.5, max(0.0, deadline - clock())))
        elif status == "unhealthy":
            raise HealthGateError(_unhealthy(name, last))
        elif clock() < deadline:
            sleep(PROBE_INTERVAL if can_probe and test else 1)
        if clock() >= deadline:
            raise HealthGateError(
                f"container {name} did not become healthy within {timeout_seconds}s (status "
                f"{status or 'unknown'}; last probe: {last or 'none yet'}). See `docker logs "
                f"{name}`; the next `pulumi up` checks again and fails until it is healthy.")


def _unhealthy(name: str, last: str) -> str:
    return (f"container {name} is unhealthy: Docker counts its healthcheck as failing after "
            f"its start period, and a probe now fails too (last probe: {last or 'none'}). See "
            f"`docker logs {name}`; the next `pulumi up` checks again and fails until it is "
            "healthy.")


# Waits block on `docker` processes: they run on threads of their own, never on the
# program's default executor (its threads carry the SDK's own calls to the engine).
_WAITS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="health-gate")


def exit_quietly_when_interrupted() -> None:
    """Under the Pulumi language host, let SIGINT end the program at once and quietly.
    The engine interrupts the program when the update fails elsewhere (another resource) or
    is cancelled; health waits may still be running then, and Python's default would print
    a KeyboardInterrupt traceback for each call still blocked on the stopped engine. What
    failed is the engine's to report; nothing the program says afterwards reaches anyone."""
    # Only against a real engine (a gRPC resource monitor), never under the SDK's mocks.
    if (threading.current_thread() is threading.main_thread()
            and isinstance(pulumi.runtime.settings.get_monitor(), ResourceMonitorStub)):
        signal.signal(signal.SIGINT, _exit_now)


def _exit_now(_signum, _frame) -> None:
    os._exit(1)


async def confirm_healthy(container_id: str, container_name: str, docker_host: str,
                          timeout_seconds: int) -> str:
    """The container's id, once it passes its healthcheck (`pulumi up`); at once in a
    preview, which changes nothing and so has nothing to wait for."""
    if not pulumi.runtime.is_dry_run():
        await asyncio.get_running_loop().run_in_executor(
            _WAITS, wait_until_healthy, container_name, docker_host, timeout_seconds)
    return container_id


class HealthGate(pulumi.Stash):
    """Recorded only once `container` passes its healthcheck within `timeout_seconds`.

    A Stash (a value the engine itself keeps in the state: no provider process to start
    on any run). Its input resolves only after `confirm_healthy`, so the gate and what
    depends on it are registered after the container is healthy, and a failed wait fails
    the program with the wait's message (HealthGateError is a RunError: no traceback)."""

    def __init__(self, name: str, container, timeout_seconds: int, docker_host: str = "",
                 opts: Optional[pulumi.ResourceOptions] = None,
                 settings: Optional[Mapping[str, str]] = None):
        """`settings`: what the container runs with, secrets left out (its plain environment
        variables and labels). The container's own envs are secret as a whole in the
        state, so a preview shows their change only as [secret]; the gate's map shows it
        by name (RUST_LOG: "info" => "debug"). The engine address (which may carry
        credentials) is used for the wait and never recorded."""
        exit_quietly_when_interrupted()
        confirmed = pulumi.Output.all(container.id, container.name).apply(
            lambda values: confirm_healthy(values[0], values[1], docker_host,
                                           int(timeout_seconds)))
        record = {"container_id": confirmed, "container_name": container.name,
                  **({"settings": dict(settings)} if settings else {})}
        super().__init__(name, input=record, opts=opts)


class _HealthGateProvider(ResourceProvider):
    """The provider of the gates of earlier releases (dynamic resources). Their state names
    this class, so it stays: the first `pulumi up` after an upgrade deletes those gates
    (deleting one does nothing) and records the Stash gates instead."""

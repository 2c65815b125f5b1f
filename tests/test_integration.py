"""End to end: a real `pulumi up` on a real Docker engine, then the deployment answers.

Opt-in (it pulls images, starts containers and takes minutes):

    CONVEX_SELFHOST_INTEGRATION=1 pytest -m integration tests/test_integration.py

It needs the Pulumi CLI on PATH, a Docker engine that answers `docker info`, network
access to ghcr.io, and the project's virtualenv (`pulumi install` creates it; the test
runs it when `venv/` is missing). State lives in a temporary file backend; the stack is
a fresh `integration-<random>` stack with its own instance name and free ports, so a
developer's dev stack on the same host is left alone. A stack named "dev" would rewrite
the tracked stacks/Pulumi.dev.yaml (config and passphrase salt), hence the unique name;
its stacks/Pulumi.<name>.yaml exists only while the test runs.

The admin-key check uses GET /api/check_admin_key, the endpoint the self-hosted
dashboard calls to validate a key (upstream: crates/local_backend/src/dashboard.rs,
`check_admin_key`, mounted under /api by crates/local_backend/src/router.rs). A valid
key answers 200 with {"success": true, "isReadOnly": ...}; a key that does not decrypt
falls through to the access-token check, which refuses it with 401 "BadAdminKey"
(crates/authentication/src/application_auth.rs, access_token_auth.rs).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = "convex-selfhost"
ENABLE_VAR = "CONVEX_SELFHOST_INTEGRATION"
HTTP_TIMEOUT_SECONDS = 10
READY_TIMEOUT_SECONDS = 60
DOCKER_TIMEOUT_SECONDS = 60


def integration_skip_reason() -> Optional[str]:
    """Why the integration test cannot run here, naming every missing piece; None if it can."""
    missing = []
    if os.environ.get(ENABLE_VAR) != "1":
        missing.append(f"opt-in: set {ENABLE_VAR}=1 to run it "
                       f"({ENABLE_VAR}=1 pytest -m integration)")
    if shutil.which("pulumi") is None:
        missing.append("the Pulumi CLI (`pulumi`) is not on PATH "
                       "(https://www.pulumi.com/docs/install/)")
    if shutil.which("docker") is None:
        missing.append("the Docker CLI (`docker`) is not on PATH, so no Docker engine "
                       "can be reached")
    else:
        problem = _docker_engine_problem()
        if problem:
            missing.append(f"no Docker engine answers `docker info`: {problem}")
    return "; ".join(missing) or None


def _docker_engine_problem() -> Optional[str]:
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                                capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if result.returncode != 0 or not result.stdout.strip():
        lines = (result.stderr or result.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit code {result.returncode}"
    return None


# --- always run: the skip logic itself ------------------------------------------


def test_skip_reason_names_every_missing_piece(monkeypatch):
    monkeypatch.delenv(ENABLE_VAR, raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    reason = integration_skip_reason()
    assert reason is not None
    assert "pulumi" in reason
    assert "docker" in reason.lower()
    assert f"{ENABLE_VAR}=1" in reason


def test_skip_reason_names_an_unreachable_docker_engine(monkeypatch):
    monkeypatch.setenv(ENABLE_VAR, "1")
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")

    def docker_info(*args, **kwargs):
        return subprocess.CompletedProcess(
            args[0], 1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock")

    monkeypatch.setattr(subprocess, "run", docker_info)
    reason = integration_skip_reason()
    assert reason is not None and "Docker engine" in reason and "Cannot connect" in reason
    assert "pulumi" not in reason and ENABLE_VAR not in reason


def test_no_skip_reason_when_everything_is_there(monkeypatch):
    monkeypatch.setenv(ENABLE_VAR, "1")
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a[0], 0, "28.5.1\n", ""))
    assert integration_skip_reason() is None


# --- opt-in: the real thing -----------------------------------------------------


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _get(url: str, headers: Optional[dict] = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def _wait_for_version(backend_url: str) -> tuple[int, str]:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        try:
            status, body = _get(f"{backend_url}/version")
            if status == 200 or time.monotonic() > deadline:
                return status, body
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
        time.sleep(2)


def _tampered(admin_key: str) -> str:
    # Flip the last hex digit: the AES-GCM-SIV tag no longer matches.
    last = admin_key[-1]
    return admin_key[:-1] + ("0" if last != "0" else "1")


def _check_admin_key(backend_url: str, admin_key: str) -> tuple[int, str]:
    return _get(f"{backend_url}/api/check_admin_key",
                {"Authorization": f"Convex {admin_key}"})


@pytest.mark.integration
def test_up_serves_accepts_admin_key_and_is_idempotent(tmp_path):
    reason = integration_skip_reason()
    if reason:
        pytest.skip(reason)
    from pulumi import automation as auto

    state = tmp_path / "state"
    state.mkdir()
    suffix = uuid.uuid4().hex[:8]
    stack_name = f"integration-{suffix}"
    instance = f"convex-it-{suffix}"
    backend_port, site_port, dashboard_port = _free_ports(3)
    env = {
        "PULUMI_BACKEND_URL": state.as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": f"convex-selfhost-integration-{suffix}",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    stack = auto.create_or_select_stack(
        stack_name, work_dir=str(REPO), opts=auto.LocalWorkspaceOptions(env_vars=env))
    destroyed = False
    try:
        stack.set_all_config({f"{PROJECT}:{key}": auto.ConfigValue(value) for key, value in {
            "instanceName": instance,
            "backendPort": str(backend_port),
            "sitePort": str(site_port),
            "dashboardPort": str(dashboard_port),
            "protectData": "false",
            "disableBeacon": "true",
        }.items()})
        if not (REPO / "venv").is_dir():
            stack.workspace.install()

        up = stack.up(on_output=print)
        backend_url = up.outputs["backendUrl"].value
        admin_key = up.outputs["adminKey"].value
        read_only_key = up.outputs["readOnlyAdminKey"].value
        assert up.outputs["adminKey"].secret
        assert backend_url == f"http://127.0.0.1:{backend_port}"

        status, body = _wait_for_version(backend_url)
        assert status == 200, f"{backend_url}/version answered {status}: {body[:300]}"

        status, body = _check_admin_key(backend_url, admin_key)
        assert status == 200, f"admin key refused ({status}): {body[:300]}"
        answer = json.loads(body)
        assert answer["success"] is True and answer["isReadOnly"] is False

        status, body = _check_admin_key(backend_url, read_only_key)
        assert status == 200, f"read-only admin key refused ({status}): {body[:300]}"
        assert json.loads(body)["isReadOnly"] is True

        status, body = _check_admin_key(backend_url, _tampered(admin_key))
        assert status in (401, 403), f"tampered key answered {status}: {body[:300]}"

        preview = stack.preview(on_output=print)
        # Keys are operation names ("same", "update", ...), possibly as OpType members.
        changes = {getattr(op, "value", op): count
                   for op, count in preview.change_summary.items() if count}
        assert set(changes) == {"same"}, f"a second preview plans changes: {changes}"

        stack.destroy(on_output=print)
        destroyed = True
    finally:
        _cleanup(stack, stack_name, instance, destroyed)


def _cleanup(stack, stack_name: str, instance: str, destroyed: bool) -> None:
    """Leave the host and the checkout as they were, whatever failed above."""
    problems = []
    if not destroyed:
        try:
            stack.destroy()
        except Exception as error:  # noqa: BLE001 - report, keep cleaning
            problems.append(f"destroy: {error}")
    # The data volume is retained on delete by design: remove it explicitly.
    volume = subprocess.run(["docker", "volume", "rm", f"{instance}-data"],
                            capture_output=True, text=True, timeout=DOCKER_TIMEOUT_SECONDS)
    if volume.returncode != 0 and "no such volume" not in volume.stderr.lower():
        problems.append(f"docker volume rm {instance}-data: {volume.stderr.strip()}")
    try:
        stack.workspace.remove_stack(stack_name, force=True)
    except Exception as error:  # noqa: BLE001
        problems.append(f"stack rm: {error}")
    (REPO / "stacks" / f"Pulumi.{stack_name}.yaml").unlink(missing_ok=True)
    if problems:
        print("integration cleanup problems:\n  " + "\n  ".join(problems))

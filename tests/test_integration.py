"""End to end on a real Pulumi engine and a real Docker engine (opt-in, minutes).

    CONVEX_SELFHOST_INTEGRATION=1 ./test.sh -m integration -s

Needs the Pulumi CLI (with the docker and random provider plugins the Python packages
ask for) and a Docker engine (`tests/standins/start-dockerd.sh` starts Debian's). Where no
registry can be reached, it builds stand-in images tagged with the real names first
(`tests/standins/build.sh`): a backend that serves /version and checks admin keys as
Convex does, a dashboard, and Postgres and Caddy from Debian's packages.

The project is copied into a temporary directory and run there with its own file state
backend and passphrase, on stacks and Docker objects named `it<random>-...` and free
ports, so nothing of a developer's own stacks, stack files or containers is touched. Each
step prints the summary lines of what Pulumi did.

What it proves, for a dev stack and a production-like one (provisioned Postgres, TLS proxy
on unprivileged ports, CPU and memory limits, protected data): `up` succeeds and the
backend accepts the generated admin keys; a following preview reports no changes; a
`version` change previews replacing only images and containers; a compose-labelled
volume is adopted; a backend that never gets healthy fails `up` twice in a row; `destroy`
leaves the retained volumes; a protected stack refuses `destroy`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Optional

import pytest

from components.releases import DEFAULT_VERSION, RELEASES

REPO = Path(__file__).resolve().parents[1]
ENABLE_VAR = "CONVEX_SELFHOST_INTEGRATION"
OLDER_VERSION = "4d3b0a5de955a258e70e3813bbff486051d88820"
COMMAND_TIMEOUT = 900
IMAGE_TYPE = "docker:index/remoteImage:RemoteImage"
CONTAINER_TYPE = "docker:index/container:Container"
GATE_TYPE = "pulumi:index:Stash"
PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "components", "ops", "stacks", "requirements.txt")


def integration_skip_reason() -> Optional[str]:
    """Why the integration test cannot run here, naming every missing piece; None if it can."""
    missing = []
    if os.environ.get(ENABLE_VAR) != "1":
        missing.append(f"opt-in: set {ENABLE_VAR}=1 to run it "
                       f"({ENABLE_VAR}=1 ./test.sh -m integration)")
    if shutil.which("pulumi") is None:
        missing.append("the Pulumi CLI (`pulumi`) is not on PATH "
                       "(https://www.pulumi.com/docs/install/)")
    if shutil.which("docker") is None:
        missing.append("the Docker CLI (`docker`) is not on PATH, so no Docker engine "
                       "can be reached")
    else:
        problem = _docker_engine_problem()
        if problem:
            missing.append(f"no Docker engine answers `docker info`: {problem} "
                           "(tests/standins/start-dockerd.sh starts one)")
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
    assert "pulumi" in reason and "docker" in reason.lower() and f"{ENABLE_VAR}=1" in reason


def test_skip_reason_names_an_unreachable_docker_engine(monkeypatch):
    monkeypatch.setenv(ENABLE_VAR, "1")
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a[0], 1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock"))
    reason = integration_skip_reason()
    assert reason is not None and "Docker engine" in reason and "Cannot connect" in reason
    assert "pulumi" not in reason and ENABLE_VAR not in reason


def test_no_skip_reason_when_everything_is_there(monkeypatch):
    monkeypatch.setenv(ENABLE_VAR, "1")
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a[0], 0, "20.10.24\n", ""))
    assert integration_skip_reason() is None


def test_older_version_is_a_known_release():
    assert OLDER_VERSION in {r.tag for r in RELEASES} and OLDER_VERSION != DEFAULT_VERSION


# --- the workspace: a copy of the project on a private state backend -------------


class Workspace:
    def __init__(self, root: Path):
        self.root = root
        self.project = root / "project"
        self.prefix = f"it{uuid.uuid4().hex[:6]}"
        self.env = dict(os.environ,
                        PULUMI_BACKEND_URL=(root / "state").as_uri(),
                        PULUMI_CONFIG_PASSPHRASE=f"integration-{self.prefix}",
                        PULUMI_SKIP_UPDATE_CHECK="true")
        self.env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        # The unit tests pretend to run against Engine 25+; here the real engine is asked.
        self.env.pop("CONVEX_SELFHOST_DOCKER_API_VERSION", None)
        self.stacks: list[str] = []
        self.volumes: set[str] = set()

    def pulumi(self, *args: str, stack: Optional[str] = None, check: bool = True,
               secret_input: Optional[str] = None) -> subprocess.CompletedProcess:
        command = ["pulumi", *args, "--non-interactive"]
        if stack:
            command += ["--stack", stack]
        done = subprocess.run(command, cwd=self.project, env=self.env, text=True,
                              capture_output=True, timeout=COMMAND_TIMEOUT, input=secret_input)
        shown = " ".join(a for a in args if not a.startswith("--secret-value"))
        summary = "\n    ".join(line for line in (done.stdout + done.stderr).splitlines()
                                if _SUMMARY.search(line))
        print(f"\n$ pulumi {shown} [{stack}] -> exit {done.returncode}\n    {summary}")
        if check and done.returncode != 0:
            raise AssertionError(f"pulumi {shown} failed:\n{done.stdout[-4000:]}\n"
                                 f"{done.stderr[-4000:]}")
        return done

    def new_stack(self, role: str, config: dict, secrets: Optional[dict] = None) -> str:
        stack = f"{self.prefix}-{role}"
        self.pulumi("stack", "init", stack)
        self.stacks.append(stack)
        for key, value in config.items():
            path = ["--path"] if isinstance(value, list) else []
            if isinstance(value, list):
                for index, item in enumerate(value):
                    self.pulumi("config", "set", *path, f"convex-selfhost:{key}[{index}]",
                                str(item), stack=stack)
            else:
                self.pulumi("config", "set", f"convex-selfhost:{key}", str(value), stack=stack)
        for key, value in (secrets or {}).items():
            # The value goes in on standard input, never on a command line.
            self.pulumi("config", "set", "--secret", f"convex-selfhost:{key}", stack=stack,
                        secret_input=value)
        return stack

    def outputs(self, stack: str) -> dict:
        done = self.pulumi("stack", "output", "--json", "--show-secrets", stack=stack)
        return json.loads(done.stdout)

    def preview_steps(self, stack: str) -> list[dict]:
        done = self.pulumi("preview", "--json", stack=stack)
        return json.loads(done.stdout).get("steps", [])


_SUMMARY = re.compile(r"^\s*([+~-]|\+-|-\+)?\s*\d+ (created|updated|deleted|replaced|unchanged|"
                      r"to create|to update|to delete|to replace)|error:|did not become healthy|"
                      r"protected|Resources:|no changes", re.I)


def project_copy(root: Path, keep: tuple = ()) -> Workspace:
    """A Workspace on a copy of the project in ROOT, with its own state directory, the
    stack files whose names start with KEEP, and the test's own interpreter as its venv
    (it has everything the program imports)."""
    ws = Workspace(root)
    ws.project.mkdir()
    (ws.root / "state").mkdir()
    for name in PROJECT_FILES:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, ws.project / name)
    for stale in (ws.project / "stacks").glob("Pulumi.*.yaml"):
        if not stale.name.startswith(keep):
            stale.unlink()
    (ws.project / "venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return ws


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    reason = integration_skip_reason()
    if reason:
        pytest.skip(reason)
    _ensure_images()
    ws = project_copy(tmp_path_factory.mktemp("integration"),
                      keep=("Pulumi.dev.", "Pulumi.prod."))
    yield ws
    _cleanup(ws)


def _ensure_images() -> None:
    wanted = [f"ghcr.io/get-convex/convex-{c}:{v}" for c in ("backend", "dashboard")
              for v in (DEFAULT_VERSION, OLDER_VERSION)]
    missing = [i for i in wanted if subprocess.run(["docker", "image", "inspect", i],
                                                   capture_output=True).returncode]
    if missing or subprocess.run(["docker", "image", "inspect", "postgres:17.6-alpine",
                                  "caddy:2.10.2-alpine"], capture_output=True).returncode:
        subprocess.run(["bash", str(REPO / "tests" / "standins" / "build.sh"),
                        DEFAULT_VERSION, OLDER_VERSION], check=True, timeout=1800)


def _cleanup(ws: Workspace) -> None:
    for stack in ws.stacks:
        ws.pulumi("state", "unprotect", "--all", "--yes", stack=stack, check=False)
        ws.pulumi("destroy", "--yes", "--skip-preview", stack=stack, check=False)
        ws.pulumi("stack", "rm", "--yes", "--force", stack=stack, check=False)
    for volume in sorted(ws.volumes):
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)


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
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def _volume_exists(name: str) -> bool:
    return subprocess.run(["docker", "volume", "inspect", name],
                          capture_output=True).returncode == 0


def _docker_health(container: str, within: float) -> str:
    """Docker's own health status, once it is no longer 'starting' (or `within` s passed)."""
    deadline = time.monotonic() + within
    while True:
        status = subprocess.run(["docker", "inspect", "--format", "{{.State.Health.Status}}",
                                 container], capture_output=True, text=True).stdout.strip()
        if status != "starting" or time.monotonic() > deadline:
            return status
        time.sleep(1)


def _assert_no_changes(ws: Workspace, stack: str) -> None:
    done = ws.pulumi("preview", "--expect-no-changes", "--diff", stack=stack, check=False)
    assert done.returncode == 0, f"a second preview plans changes:\n{done.stdout[-6000:]}"


def _base_config(ws: Workspace, role: str, **extra) -> dict:
    backend, site, dashboard = _free_ports(3)
    return {"instanceName": f"{ws.prefix}-{role}", "backendPort": backend, "sitePort": site,
            "dashboardPort": dashboard, "backendStartTimeoutSeconds": 120, **extra}


# --- the real thing -----------------------------------------------------------------



@pytest.mark.integration
def test_dev_stack_up_admin_keys_no_changes_upgrade_preview_destroy(workspace):
    ws = workspace
    stack = ws.new_stack("dev", _base_config(ws, "dev", protectData="false",
                                             backupSchedule="0 3 * * *", backupKeep=3))
    instance = f"{ws.prefix}-dev"
    ws.volumes.update({f"{instance}-data", f"{instance}-backups"})
    ws.pulumi("up", "--yes", stack=stack)
    # The scheduled backup container runs the uploaded client and reports healthy. `up`
    # ended when the gate's own run of the healthcheck passed; Docker's status follows at
    # its next probe (one 60 s interval below API 1.44, 1 s start interval above).
    assert _docker_health(f"{instance}-backup", within=75) == "healthy"
    logs = subprocess.run(["docker", "logs", f"{instance}-backup"], capture_output=True,
                          text=True)
    assert 'convex-backup next run=' in logs.stdout + logs.stderr
    # A run now, as the schedule would: over the private network, with the secret key.
    run = subprocess.run(["docker", "exec", f"{instance}-backup", "python3",
                          "/app/convex_backup.py", "once", "--url", "http://backend:3210",
                          "--dest", "/backups", "--keep", "3"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("convex-backup ok file=snapshot-"), run
    listing = subprocess.run(["docker", "exec", f"{instance}-backup", "ls", "/backups"],
                             capture_output=True, text=True).stdout.split()
    # One snapshot, with its environment variables beside it.
    assert len([f for f in listing if f.startswith("snapshot-") and f.endswith(".zip")]) == 1
    assert len([f for f in listing if f.endswith(".env.json")]) == 1, listing
    out = ws.outputs(stack)
    status, body = _get(f"{out['backendUrl']}/version")
    assert (status, body.strip()) == (200, DEFAULT_VERSION)
    for key, read_only in ((out["adminKey"], False), (out["readOnlyAdminKey"], True)):
        status, body = _get(f"{out['backendUrl']}/api/check_admin_key",
                            {"Authorization": f"Convex {key}"})
        assert status == 200 and json.loads(body)["isReadOnly"] is read_only, body
    tampered = out["adminKey"][:-1] + ("0" if out["adminKey"][-1] != "0" else "1")
    status, _ = _get(f"{out['backendUrl']}/api/check_admin_key",
                     {"Authorization": f"Convex {tampered}"})
    assert status == 401
    _assert_no_changes(ws, stack)

    ws.pulumi("config", "set", "convex-selfhost:version", OLDER_VERSION, stack=stack)
    steps = ws.preview_steps(stack)
    replaced = {s["urn"].split("::")[2].split("$")[-1] for s in steps
                if s["op"] in ("replace", "create-replacement", "delete-replaced")}
    assert replaced == {IMAGE_TYPE, CONTAINER_TYPE}, steps
    others = {(s["op"], s["urn"].split("::")[2].split("$")[-1]) for s in steps
              if s["op"] not in ("same", "replace", "create-replacement", "delete-replaced")}
    # The health gates wait again for the new containers; nothing else changes.
    assert others <= {("update", GATE_TYPE)}, others
    ws.pulumi("config", "set", "convex-selfhost:version", DEFAULT_VERSION, stack=stack)

    ws.pulumi("destroy", "--yes", "--skip-preview", stack=stack)
    for volume in (f"{instance}-data", f"{instance}-backups"):
        assert _volume_exists(volume), f"destroy removed the retained volume {volume}"


@pytest.mark.integration
def test_backend_that_never_gets_healthy_fails_up_twice(workspace):
    ws = workspace
    stack = ws.new_stack("sick", _base_config(
        ws, "sick", protectData="false", dashboard="false", backendStartTimeoutSeconds=15,
        extraEnv=["STANDIN_NEVER_HEALTHY=1"]))
    ws.volumes.add(f"{ws.prefix}-sick-data")
    for attempt in (1, 2):
        done = ws.pulumi("up", "--yes", stack=stack, check=False)
        assert done.returncode != 0, f"attempt {attempt}: up accepted an unhealthy backend"
        # The first waits out the start period; later ones may find Docker already
        # calling it unhealthy and fail at once.
        assert re.search(rf"did not become healthy within 15s|{ws.prefix}-sick-backend is "
                         r"unhealthy", done.stdout + done.stderr), done.stdout + done.stderr
        # The gate's message alone, not a Python traceback.
        assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.integration
def test_production_like_stack(workspace):
    ws = workspace
    http_port, https_port = _free_ports(2)
    instance = f"{ws.prefix}-prod"
    stack = ws.new_stack("prod", _base_config(
        ws, "prod", provisionPostgres="true", tlsProxy="true", tlsBindAddress="127.0.0.1",
        httpPort=http_port, httpsPort=https_port, apiDomain="api.convex-it.example.com",
        siteDomain="site.convex-it.example.com",
        dashboardDomain="dashboard.convex-it.example.com", cpus="1.5", memoryLimitMb=1024,
        protectData="true", disableBeacon="true"))
    ws.volumes.update({f"{instance}-data", f"{instance}-pgdata", f"{instance}-caddy-data"})
    ws.pulumi("up", "--yes", stack=stack)
    env = subprocess.run(["docker", "exec", f"{instance}-backend", "printenv", "POSTGRES_URL"],
                         capture_output=True, text=True).stdout
    assert env.startswith("postgresql://convex:") and env.strip().endswith(
        f"@{instance}-postgres:5432")
    inspect = json.loads(subprocess.run(["docker", "inspect", f"{instance}-backend"],
                                        capture_output=True, text=True).stdout)[0]
    assert inspect["HostConfig"]["NanoCpus"] == 1_500_000_000
    assert inspect["HostConfig"]["Memory"] == 1024 * 1024 * 1024
    _assert_no_changes(ws, stack)

    # Destroy stops at the protected resources (the engine removes the unprotected ones it
    # can first): the data volumes, the instance secret and the Postgres password stay.
    done = ws.pulumi("destroy", "--yes", "--skip-preview", stack=stack, check=False)
    assert done.returncode != 0 and "protected" in (done.stdout + done.stderr).lower()
    assert _volume_exists(f"{instance}-data") and _volume_exists(f"{instance}-pgdata")
    state = json.loads(ws.pulumi("stack", "export", stack=stack).stdout)
    kept = {r["urn"].rsplit("::", 1)[1] for r in state["deployment"]["resources"]
            if r.get("protect")}
    assert {f"{instance}-backend-data", f"{instance}-postgres-data", f"{instance}-instance-secret",
            f"{instance}-postgres-password"} <= kept, kept


@pytest.mark.integration
def test_compose_volume_is_adopted(workspace):
    ws = workspace
    instance = f"{ws.prefix}-adopt"
    volume = f"{ws.prefix}-compose_data"
    ws.volumes.add(volume)
    subprocess.run(["docker", "volume", "create", "--label",
                    f"com.docker.compose.project={ws.prefix}-compose", "--label",
                    "com.docker.compose.version=2.29.7", "--label",
                    "com.docker.compose.volume=data", volume], check=True, capture_output=True)
    secret = uuid.uuid4().hex + uuid.uuid4().hex
    stack = ws.new_stack("adopt", _base_config(ws, "adopt", dataVolumeName=volume,
                                               protectData="false"),
                         secrets={"instanceSecret": secret})
    adopt = {"resources": [
        {"type": "convex:selfhost:Deployment", "name": instance, "component": True},
        {"type": "convex:selfhost:Backend", "name": f"{instance}-backend", "component": True,
         "parent": instance},
        {"type": "docker:index/volume:Volume", "name": f"{instance}-backend-data",
         "id": volume, "parent": f"{instance}-backend"}]}
    (ws.project / "adopt.json").write_text(json.dumps(adopt))
    ws.pulumi("import", "--file", "adopt.json", "--protect", "--generate-code=false", "--yes",
              stack=stack)
    steps = ws.preview_steps(stack)
    volume_ops = {s["op"] for s in steps if s["urn"].endswith(f"::{instance}-backend-data")}
    assert volume_ops == {"same"}, steps
    ws.pulumi("up", "--yes", stack=stack)
    labels = json.loads(subprocess.run(["docker", "volume", "inspect", volume],
                                       capture_output=True, text=True).stdout)[0]["Labels"]
    assert labels["com.docker.compose.volume"] == "data"
    _assert_no_changes(ws, stack)
    out = ws.outputs(stack)
    status, body = _get(f"{out['backendUrl']}/api/check_admin_key",
                        {"Authorization": f"Convex {out['adminKey']}"})
    assert status == 200, body

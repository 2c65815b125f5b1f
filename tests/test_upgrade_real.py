"""`python -m ops.upgrade run` on a real Pulumi engine and a real Docker engine
(opt-in, minutes), both modes, from the older stand-in release to the newer one:

    CONVEX_SELFHOST_INTEGRATION=1 ./test.sh -m integration tests/test_upgrade_real.py -s

It uses the workspace of tests/test_integration.py (a copy of the project with its own
state backend, stacks and Docker objects named `it<random>-...`, free ports) and runs the
command as the README's Upgrades section does, in the copy, with the backup outside it.

The stand-in backend (tests/standins/) does not emulate everything an upgrade touches, so
the run puts a loopback shim in front of it for what it lacks, and says so:
  * the environment-variable query and update (`_system/cli/queryEnvironmentVariables`,
    `/api/update_environment_variables`), when the stand-in answers neither;
  * the migration log: the stand-in never logs `db metadata version up to date at N`, so an
    in-place run ends in the migration watch's timeout (checked, with its rollback followed
    for real) unless the shim adds that one line (the successful run, marked synthetic);
  * `npx convex import` (no Node app, no import API): a stand-in `npx` that records its call.
Everything else is real: the backup through the export API, `pulumi config`, the preview
and its safety check, `pulumi up`, `pulumi state unprotect`, the new data volume, the admin
key check, and each printed rollback, run as printed (with `--yes`: there is no terminal).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from test_integration import (  # noqa: F401 - workspace is a fixture
    OLDER_VERSION,
    _assert_no_changes,
    _base_config,
    _get,
    _volume_exists,
    workspace,
)

from components.releases import DEFAULT_VERSION

REPO = Path(__file__).resolve().parents[1]

RUN_TIMEOUT = 900

DRIVER = r'''
"""python -m ops.upgrade, with the shim the test's docstring describes."""
import http.client
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.getcwd())
from ops import upgrade  # noqa: E402

SHIM = json.loads(os.environ["UPGRADE_SHIM"])


class Shim(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if SHIM["env"] and self.path == "/api/query" and \
                b"_system/cli/queryEnvironmentVariables" in body:
            answer = {"status": "success", "value": SHIM["variables"]}
            return self._send(200, json.dumps(answer).encode())
        if SHIM["env"] and self.path == "/api/update_environment_variables":
            with open(SHIM["record"], "a") as record:
                record.write(json.dumps(json.loads(body)) + "\n")
            return self._send(200, b"{}")
        upstream = http.client.HTTPConnection(SHIM.get("backend_host", "127.0.0.1"),
                                              SHIM["backend_port"], timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        upstream.request(self.command, self.path, body or None, headers)
        answer = upstream.getresponse()
        self._send(answer.status, answer.read())

    def _send(self, status, data):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _handle


server = ThreadingHTTPServer(("127.0.0.1", 0), Shim)
threading.Thread(target=server.serve_forever, daemon=True).start()
real_upgrader = upgrade._upgrader


def shimmed(*args, **kwargs):
    up = real_upgrader(*args, **kwargs)
    up.url = f"http://127.0.0.1:{server.server_address[1]}"
    if SHIM["synthetic_migration"]:
        lines = up.log_lines

        def with_migrated(container):
            for line in lines(container):
                if line and SHIM.get("seen"):  # the real log lines it read
                    with open(SHIM["seen"], "a") as seen:
                        seen.write(line + "\n")
                yield line
                if line == "":  # after the first poll
                    yield ("(synthetic: the stand-in logs no migrations) db metadata version "
                           f"up to date at {up.plan.target_database_version}")
        up.log_lines = with_migrated
    return up


upgrade._upgrader = shimmed
sys.exit(upgrade.main(sys.argv[1:]))
'''

NPX = r"""#!/usr/bin/env bash
# Stand-in npx (the stand-in backend has no import API): records the call, never the key.
printf '%s|cwd=%s|url=%s|key=%s\n' "$*" "$PWD" "${CONVEX_SELF_HOSTED_URL:-}" \
  "$([ -n "${CONVEX_SELF_HOSTED_ADMIN_KEY:-}" ] && echo set)" >> "$NPX_CALLS"
[ -z "${NPX_FAIL:-}" ] || { echo "stand-in npx: failing as asked" >&2; exit 1; }
"""

VARIABLES = [{"name": "FEATURE_FLAG", "value": "on"},
             {"name": "SECRET_TOKEN", "value": "s3 cr3t\nsecond line"}]


def _standin_answers_env_query(url: str, key: str) -> bool:
    body = json.dumps({"path": "_system/cli/queryEnvironmentVariables", "args": {},
                       "format": "json"}).encode()
    request = urllib.request.Request(f"{url}/api/query", body, {
        "Authorization": f"Convex {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read()).get("status") == "success"
    except OSError:
        return False


class Runner:
    """Runs the upgrade command in the workspace's project copy, as the README does."""

    def __init__(self, ws, tmp: Path, stack: str, backend_port: int, shim_env: bool):
        self.ws, self.tmp, self.stack = ws, tmp, stack
        self.backend_port, self.shim_env = backend_port, shim_env
        self.driver = tmp / "driver.py"
        self.driver.write_text(DRIVER)
        self.bin = tmp / "bin"
        self.bin.mkdir()
        (self.bin / "npx").write_text(NPX)
        (self.bin / "npx").chmod(0o755)
        self.app = tmp / "my app"
        self.app.mkdir()
        (self.app / "package.json").write_text('{"dependencies": {"convex": "1.29.0"}}\n')
        self.npx_calls, self.env_sets = tmp / "npx-calls", tmp / "env-sets"
        self.seen = tmp / "log-lines-seen"  # what the migration watch read
        self.backend_host = "127.0.0.1"
        self.to = DEFAULT_VERSION
        self.runs = 0

    def run(self, *args: str, synthetic_migration: bool = False, timeout: int = 60,
            **env: str) -> tuple[subprocess.CompletedProcess, Path]:
        self.runs += 1
        backup = self.tmp / f"backups $(touch pwned) {self.runs}"
        shim = {"env": self.shim_env, "variables": VARIABLES, "backend_port": self.backend_port,
                "backend_host": self.backend_host, "seen": str(self.seen),
                "synthetic_migration": synthetic_migration, "record": str(self.env_sets)}
        environment = dict(self.ws.env, UPGRADE_SHIM=json.dumps(shim),
                           NPX_CALLS=str(self.npx_calls),
                           PATH=f"{self.bin}{os.pathsep}{self.ws.env['PATH']}", **env)
        command = [sys.executable, str(self.driver), "run", "--stack", self.stack, "--to",
                   self.to, "--app-dir", str(self.app), "--backup-dir", str(backup),
                   "--timeout", str(timeout), *args]
        done = subprocess.run(command, cwd=self.ws.project, env=environment, text=True,
                              capture_output=True, timeout=RUN_TIMEOUT)
        print(f"\n$ python -m ops.upgrade run {' '.join(args)} -> exit "
              f"{done.returncode}\n" + "\n".join(
                  f"    {line}" for line in (done.stdout + done.stderr).splitlines()
                  if not line.startswith("  ") and "known release" not in line))
        return done, backup

    def follow_rollback(self, stderr: str) -> None:
        """Run the printed rollback chain as printed (plus --yes for `pulumi up`)."""
        (line,) = [line for line in stderr.splitlines() if "To roll back: " in line]
        chain = line.split("To roll back: ", 1)[1].split("; if the data is damaged", 1)[0]
        up = shlex.join(["pulumi", "up", "--stack", self.stack])
        assert chain.endswith(f" && {up}"), chain
        chain = chain[:-len(up)] + shlex.join(["pulumi", "up", "--yes", "--stack", self.stack])
        # The workspace's copy has no env.sh; the real one keeps the state backend and
        # passphrase the workspace's environment sets.
        shutil.copy2(REPO / "env.sh", self.ws.project / "env.sh")
        done = subprocess.run(["bash", "-c", chain], env=self.ws.env, text=True,
                              capture_output=True, timeout=RUN_TIMEOUT)
        print(f"\n$ <the printed rollback> -> exit {done.returncode}")
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def _version_running(url: str) -> str:
    return _get(f"{url}/version")[1].strip()


def _data_marker(container: str) -> str:
    logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
    lines = [line for line in (logs.stdout + logs.stderr).splitlines()
             if "data directory /convex/data is" in line]
    return lines[-1] if lines else ""


def _private(backup: Path, *names: str) -> None:
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    for name in names:
        assert stat.S_IMODE((backup / name).stat().st_mode) == 0o600, name


@pytest.mark.integration
def test_upgrade_in_place_and_by_export_import_on_a_real_engine(workspace, tmp_path):  # noqa: F811
    ws = workspace
    role = "upg"
    instance = f"{ws.prefix}-{role}"
    config = _base_config(ws, role, version=OLDER_VERSION)  # data protected, as by default
    stack = ws.new_stack(role, config)
    new_volume = f"{instance}-data-{DEFAULT_VERSION[:7]}"
    ws.volumes.update({f"{instance}-data", new_volume})
    ws.pulumi("up", "--yes", stack=stack)
    out = ws.outputs(stack)
    url, backend = out["backendUrl"], f"{instance}-backend"
    assert _version_running(url) == OLDER_VERSION
    shim_env = not _standin_answers_env_query(url, out["adminKey"])
    runner = Runner(ws, tmp_path, stack, config["backendPort"], shim_env)

    # 1. In place, as on the stand-in: everything applies, then the migration watch waits
    #    for a line the stand-in never logs. The printed rollback brings the old one back.
    done, backup = runner.run(timeout=20)
    assert done.returncode == 1, done.stderr
    # The health gates are Stash records: no provider process, so nothing but images,
    # containers and gates changes.
    assert "pulumi-python" not in done.stdout
    assert "error: migrations did not complete: no 'db metadata version up to date' line " \
           "within 20s." in done.stderr
    assert _version_running(url) == DEFAULT_VERSION
    _private(backup, "snapshot.zip", "snapshot.env.json", "upgrade.log")
    assert "migrations did not complete" in (backup / "upgrade.log").read_text()
    assert out["adminKey"] not in (backup / "upgrade.log").read_text()
    runner.follow_rollback(done.stderr)
    assert _version_running(url) == OLDER_VERSION
    assert "is EXISTING" in _data_marker(backend)
    _assert_no_changes(ws, stack)

    # 2. In place, with the line a migrated backend logs: done, key accepted, no changes.
    done, backup = runner.run(synthetic_migration=True)
    assert done.returncode == 0, done.stderr
    assert f"upgraded {stack} to {DEFAULT_VERSION[:12]}" in done.stdout
    assert "the backend accepts the admin key" in done.stdout
    assert _version_running(url) == DEFAULT_VERSION and "is EXISTING" in _data_marker(backend)
    _assert_no_changes(ws, stack)
    ws.pulumi("config", "set", "convex-selfhost:version", OLDER_VERSION, stack=stack)
    ws.pulumi("up", "--yes", stack=stack)

    # 3. Export-import that fails after its `up` (the import): the printed rollback puts
    #    the old release back on the old volume (version, dataVolumeName, protection).
    done, backup = runner.run("--mode", "export-import", NPX_FAIL="1")
    assert done.returncode == 1, done.stderr
    assert "`npx convex import` failed (exit 1)." in done.stderr
    assert _volume_exists(new_volume) and "is FRESH" in _data_marker(backend)
    assert "dataVolumeName" in done.stderr and "pulumi state unprotect" in done.stderr
    runner.follow_rollback(done.stderr)
    assert _version_running(url) == OLDER_VERSION
    assert "is EXISTING" in _data_marker(backend)  # the old data, not the new volume
    _assert_no_changes(ws, stack)
    # Nothing uses the new volume any more (docker refuses to remove a volume in use).
    subprocess.run(["docker", "volume", "rm", new_volume], check=True, capture_output=True)

    # 4. Export-import: the new release on a new volume, the backup imported, the
    #    variables set again in one request, the old volume kept.
    runner.npx_calls.unlink(missing_ok=True)
    runner.env_sets.unlink(missing_ok=True)
    done, backup = runner.run("--mode", "export-import")
    assert done.returncode == 0, done.stderr
    assert _version_running(url) == DEFAULT_VERSION and "is FRESH" in _data_marker(backend)
    assert _volume_exists(f"{instance}-data") and _volume_exists(new_volume)
    (call,) = runner.npx_calls.read_text().splitlines()
    assert call.startswith(f"--yes convex import --replace-all --yes {backup}/snapshot.zip|"
                           f"cwd={runner.app}|")
    assert call.endswith("|key=set")
    if shim_env:
        (sent,) = runner.env_sets.read_text().splitlines()
        assert json.loads(sent) == {"changes": VARIABLES}
    _private(backup, "snapshot.zip", "snapshot.env.json", "upgrade.log")
    _assert_no_changes(ws, stack)
    assert not list(tmp_path.glob("pwned*")) and not list(ws.project.glob("pwned*"))

"""Backup -> restore -> backup through ops/backup.py, run as a script, against two
in-process backend stand-ins (tests/standins/backend/server.py) on loopback."""

import importlib.util
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import urllib.request
import zipfile
from pathlib import Path

import pytest

from components.admin_key import issue_admin_key
from ops import backup

try:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

    AESGCMSIV(bytes(16))
except Exception:  # noqa: BLE001 - any failure means "cannot run these tests"
    pytestmark = pytest.mark.skip(reason="cryptography with AES-GCM-SIV (>= 42) is not available")

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "ops" / "backup.py"
SERVER = REPO / "tests" / "standins" / "backend" / "server.py"


def load_server():
    spec = importlib.util.spec_from_file_location("convex_standin_backend_for_restore", SERVER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


server = load_server()


class Deployment:
    """A stand-in backend with its own instance name, secret and data directory."""

    def __init__(self, name: str, data_dir: Path):
        secret = secrets.token_hex(32)
        self.config = server.config_from_env({
            "INSTANCE_NAME": name, "INSTANCE_SECRET": secret, "STANDIN_DATA_DIR": str(data_dir),
            "STANDIN_IMPORT_DELAY": "0.02"})
        server.prepare_data_dir(self.config)
        self.key = issue_admin_key(name, secret)
        self.httpd = server.make_server(self.config, "api", 0, host="127.0.0.1")
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def set_env(self, changes):
        request = urllib.request.Request(
            self.url + "/api/update_environment_variables",
            json.dumps({"changes": changes}).encode(),
            {"Authorization": f"Convex {self.key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def tables(self) -> dict[str, list[dict]]:
        return {table: [json.loads(line) for line in lines]
                for table, lines in server.stored_tables(self.config).items()}

    def run(self, *args, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
        """backup.py as a user runs it: a script, the key only in the environment, no Node."""
        env = {"PATH": "/usr/bin:/bin", backup.KEY_ENV: self.key}
        return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, cwd=cwd,
                              input=stdin, capture_output=True, text=True, timeout=120)


@pytest.fixture
def deployments(tmp_path):
    started = []

    def start(name: str) -> Deployment:
        started.append(Deployment(name, tmp_path / name))
        return started[-1]

    yield start
    for each in started:
        each.close()


MESSAGES = [{"_id": f"m{i}", "body": f"message {i}", "tags": ["a", "b"]} for i in range(30)]
USERS = [{"_id": "u1", "name": "Ada"}, {"_id": "u2", "name": "Grace"}]
VARIABLES = [{"name": "GREETING", "value": "hello\nworld"}, {"name": "OPENAI_API_KEY",
                                                             "value": "sk-test"}]


def seed_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for table, docs in (("messages", MESSAGES), ("users", USERS)):
            archive.writestr(f"{table}/documents.jsonl",
                             "".join(json.dumps(doc) + "\n" for doc in docs))
    return path


def one_backup(deployment: Deployment, dest: Path, cwd: Path) -> Path:
    done = deployment.run("once", "--url", deployment.url, "--dest", str(dest), "--keep", "2",
                          "--poll-interval", "0.05", cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    (snapshot,) = sorted(dest.glob("snapshot-*.zip"))[-1:]
    return snapshot


def exported_tables(snapshot: Path) -> dict[str, list[dict]]:
    with zipfile.ZipFile(snapshot) as archive:
        names = [json.loads(line)["name"] for line in
                 archive.read("_tables/documents.jsonl").decode().splitlines()]
        return {name: [json.loads(line) for line in
                       archive.read(f"{name}/documents.jsonl").decode().splitlines()]
                for name in names}


def test_backup_restore_backup_round_trip(deployments, tmp_path):
    prod, scratch = deployments("convex-prod"), deployments("convex-dev-restore")
    seeded = prod.run("restore", "--url", prod.url, "--file", str(seed_zip(tmp_path / "s.zip")),
                      "--yes", "--poll-interval", "0.05", cwd=tmp_path)
    assert seeded.returncode == 0, seeded.stdout
    prod.set_env(VARIABLES)
    first = one_backup(prod, tmp_path / "backups", tmp_path)
    assert exported_tables(first) == {"messages": MESSAGES, "users": USERS}

    # The scratch deployment holds other data and a variable of its own.
    scratch.set_env([{"name": "ONLY_HERE", "value": "kept"}])
    stale = scratch.run("restore", "--url", scratch.url, "--file", str(seed_zip(
        tmp_path / "stale.zip")), "--yes", "--no-env", "--poll-interval", "0.05", cwd=tmp_path)
    assert stale.returncode == 0
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("stale/documents.jsonl", '{"_id": "x"}\n')
    assert scratch.run("restore", "--url", scratch.url, "--file", str(tmp_path / "other.zip"),
                       "--yes", "--poll-interval", "0.05", cwd=tmp_path).returncode == 0
    assert set(scratch.tables()) == {"stale"}

    elsewhere = tmp_path / "not-an-app"  # no package.json, no node_modules, no npx
    elsewhere.mkdir()
    restored = scratch.run("restore", "--url", scratch.url, "--file", str(first), "--yes",
                           "--poll-interval", "0.05", cwd=elsewhere)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    lines = restored.stdout.splitlines()
    assert lines[-2:] == [
        f"convex-backup restore ok file={first} documents={len(MESSAGES) + len(USERS)}",
        f"convex-backup restore env ok file={backup.env_name(str(first))} variables=2"]
    assert any(re.fullmatch(r"stale +\| 0 +\| 1 of 1 +\|", line) for line in lines)  # goes
    assert scratch.key not in restored.stdout + restored.stderr and "sk-test" not in \
        restored.stdout
    assert scratch.tables() == {"messages": MESSAGES, "users": USERS}

    second = one_backup(scratch, tmp_path / "scratch-backups", tmp_path)
    assert exported_tables(second) == exported_tables(first)
    saved = json.loads(Path(backup.env_name(str(second))).read_text())
    assert saved == sorted(VARIABLES + [{"name": "ONLY_HERE", "value": "kept"}],
                           key=lambda v: v["name"])


def test_a_restore_answered_no_on_a_terminal_changes_nothing(deployments, tmp_path):
    target = deployments("convex-dev-restore")
    snapshot = seed_zip(tmp_path / "snapshot-20261126T030000Z.zip")
    code = f"""
import sys
sys.stdin.isatty = lambda: True
sys.argv = ["convex_backup.py", "restore", "--url", {target.url!r}, "--file", {str(snapshot)!r},
            "--poll-interval", "0.05"]
sys.path.insert(0, {str(SCRIPT.parent)!r})
import backup
sys.exit(backup.main(sys.argv[1:]))
"""
    done = subprocess.run([sys.executable, "-c", code], input="no\n", capture_output=True,
                          text=True, timeout=120, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", backup.KEY_ENV: target.key})
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"Replace ALL data in {target.url} (every table and file) with {snapshot}? " \
        in done.stdout
    assert done.stderr == "convex-backup restore aborted: nothing was changed\n"
    assert target.tables() == {}


def test_a_wrong_key_is_refused_before_any_upload(deployments, tmp_path):
    prod, scratch = deployments("convex-prod"), deployments("convex-dev-restore")
    snapshot = seed_zip(tmp_path / "s.zip")
    done = prod.run("restore", "--url", scratch.url, "--file", str(snapshot), "--yes",
                    cwd=tmp_path)  # prod's key against the scratch deployment
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == (
        f"convex-backup restore failed file={snapshot} reason=\"list imports: HTTP 401 "
        "BadAdminKey The provided admin key was invalid for this instance\"")
    assert prod.key not in done.stdout and not os.path.exists(
        Path(scratch.config.data_dir, server.UPLOADS_DIR))

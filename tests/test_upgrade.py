"""components/upgrade*.py: planning, log following, and the orchestration with stand-ins."""

import contextlib
import datetime as dt
import http.server
import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from harness import assert_matches_golden
from test_backup_client import Flushes

from components import releases
from ops import backup, upgrade, upgrade_import, upgrade_local, upgrade_plan
from ops.upgrade import REPO, Log, UpgradeError, Upgrader, check_backup_dir
from ops.upgrade_plan import PlanError, follow_migrations, judge_preview, plan

OLD = "4d3b0a5de955a258e70e3813bbff486051d88820"
NEW = "652b828b5129e6cdbcaa3c20efa8d116d09ff3bf"
KEY = "convex-dev|01" + "ab" * 40

# Recorded from the upstream format strings (crates/migrations_model/src/lib.rs,
# crates/model/src/migrations.rs) for an upgrade from database 122 to 128.
UPGRADE_LOG = """\
2026-11-26T10:00:00.000Z INFO common::runtime: Starting
2026-11-26T10:00:01.000Z INFO model::migrations: Attempting migration
""" + "".join(f"""\
2026-11-26T10:00:0{n - 121}.000Z INFO model::migrations: Migrating to {n}
2026-11-26T10:00:0{n - 121}.100Z WARN migrations_model: Executing Migration {n}/128. \
Wait for log line 'Migrated {n}'
2026-11-26T10:00:0{n - 121}.200Z INFO model::migrations: Migrated {n}
""" for n in range(123, 129)) + """\
2026-11-26T10:00:09.000Z INFO model::migrations: db metadata version up to date at 128
2026-11-26T10:00:09.100Z INFO model::migrations: Migration complete
"""


def test_plan_lists_the_releases_crossed_and_the_database_versions():
    upgrade = plan(OLD, NEW)
    assert upgrade.target_database_version == 128
    assert upgrade.crossed[0].date > "2025-09-12" and upgrade.crossed[-1].tag == NEW
    text = upgrade.describe()
    assert text.splitlines()[0] == ("Upgrade 4d3b0a5 (2025-09-12, database 122) -> "
                                    "652b828 (2026-08-21, database 128)")
    assert "from version 122 to 128" in text and "1. back up" in text
    assert "follow the backend log until 'db metadata version up to date at 128'" in text


def test_downgrade_is_refused_unless_allowed():
    with pytest.raises(PlanError) as refused:
        plan(NEW, OLD)
    assert "Migrations only go forward" in str(refused.value)
    assert "--allow-downgrade" in str(refused.value)
    assert "DOWNGRADE" in plan(NEW, OLD, allow_downgrade=True).describe()


def test_unknown_and_same_versions():
    unknown = plan(OLD, "f" * 40)
    assert unknown.target_database_version is None
    assert "not in the release table" in unknown.describe()
    with pytest.raises(PlanError, match="nothing to upgrade"):
        plan(NEW, NEW)
    with pytest.raises(PlanError) as same:
        plan(NEW[:7], NEW)
    assert str(same.value) == "the stack already runs 652b828b5129; nothing to upgrade."
    with pytest.raises(PlanError, match="withdrawn"):
        plan(OLD, "c4ae6015a5387a92710953206f4726f2a2d60de3")


def test_export_import_plan_keeps_the_old_volume():
    text = plan(OLD, NEW).describe("export-import")
    assert "new data volume; the old one is kept" in text
    assert "--replace-all" in text and "/api/update_environment_variables" in text


def test_following_migrations_to_the_target():
    progress = []
    result = follow_migrations(UPGRADE_LOG.splitlines(), 128, 60, progress=progress.append)
    assert result.done and result.version == 128
    assert sum("Executing Migration" in line for line in progress) == 6


@pytest.mark.parametrize("line,reason", [
    ("ERROR model::migrations: Migration worker failed, sleeping 60s", "Migration worker failed"),
    ("WARN persisted db metadata version is ahead at 129, this binary is at 128", "ahead at 129"),
    ("INFO db metadata version up to date at 127", "expected 128"),
])
def test_following_migrations_reports_failures(line, reason):
    result = follow_migrations(["INFO Starting", line], 128, 60)
    assert not result.done and reason in result.reason


def test_following_migrations_times_out():
    ticks = iter(range(1000))
    result = follow_migrations(iter(lambda: "", None), 128, 5, clock=lambda: next(ticks))
    assert not result.done and "within 5s" in result.reason


def test_backups_never_go_into_the_repository(tmp_path):
    with pytest.raises(UpgradeError, match="inside the infrastructure repository"):
        check_backup_dir(REPO / "backups")
    assert check_backup_dir(tmp_path / "b") == (tmp_path / "b").resolve()


# --- orchestration with a stand-in stack and a stand-in backend ------------------------


class FakeStack:
    def __init__(self, changes=()):
        self.name = "dev"
        self.config = {"convex-selfhost:version": OLD}
        self.calls = []
        self.changes = list(changes)

    def get_config(self, key):
        return SimpleNamespace(value=self.config[key])

    def get_all_config(self):
        return {k: SimpleNamespace(value=v) for k, v in self.config.items()}

    def set_config(self, key, value):
        self.calls.append(("set_config", key, value.value))
        self.config[key] = value.value

    def remove_config(self, key):
        self.calls.append(("remove_config", key))
        self.config.pop(key, None)

    def outputs(self):
        return {"backendUrl": SimpleNamespace(value="http://127.0.0.1:1"),
                "adminKey": SimpleNamespace(value=KEY),
                "instanceName": SimpleNamespace(value="convex-dev")}

    def preview(self, on_event):
        self.calls.append(("preview",))
        for op, kind, name in [("replace", "docker:index/container:Container", "c"),
                               ("update", "pulumi:index:Stash", "g"),
                               ("same", "docker:index/volume:Volume", "v"), *self.changes]:
            meta = SimpleNamespace(op=SimpleNamespace(value=op), type=kind, diffs=None,
                                   urn=f"urn:pulumi:dev::p::{kind}::{name}")
            on_event(SimpleNamespace(resource_pre_event=SimpleNamespace(metadata=meta)))

    def up(self):
        self.calls.append(("up",))


class RecordingLog(Log):
    def __init__(self, path):
        super().__init__(path, out=open("/dev/null", "w"))
        self.messages = []

    def __call__(self, message):
        self.messages.append(message)
        super().__call__(message)


def snapshot_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("_tables/documents.jsonl", "")
    return buffer.getvalue()


class FakeConvex:
    """A loopback backend that answers what an upgrade asks (the export API, the
    environment-variable query and update, the admin-key check) and records each request
    as (method, path, Authorization, JSON body or None). `fail` maps a path to a status."""

    def __init__(self, variables=(("FEATURE_FLAG", "on"),), fail=None):
        self.variables, self.fail = list(variables), dict(fail or {})
        self.requests, self.exports = [], []
        convex = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                convex.requests.append((self.command, self.path,
                                        self.headers.get("Authorization"), body))
                status, payload = convex.answer(self.command, self.path, body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def answer(self, method, path, body):
        route = path.split("?")[0]
        if route in self.fail:
            return self.fail[route], b'{"code": "Boom", "message": "stand-in failure"}'
        if route == "/api/export/request/zip":
            self.exports.append({"_id": f"export{len(self.exports) + 1}", "state": "completed"})
            return 200, b""
        if route.startswith("/api/export/zip/"):
            return 200, snapshot_zip()
        if route == "/api/query" and body["path"] == "_system/cli/exports:getLatest":
            value = self.exports[-1] if self.exports else None
            return 200, json.dumps({"status": "success", "value": value}).encode()
        if route == "/api/query" and body["path"] == backup.ENV_QUERY:
            value = [{"_id": f"id{i}", "_creationTime": 1.0, "name": name, "value": value}
                     for i, (name, value) in enumerate(self.variables)]
            return 200, json.dumps({"status": "success", "value": value}).encode()
        if route in ("/api/check_admin_key", "/api/update_environment_variables"):
            return 200, b"{}"
        return 404, b'{"code": "NotFound"}'

    def close(self):
        self.server.shutdown()
        self.server.server_close()


_SERVERS = []


@pytest.fixture(autouse=True)
def _close_servers():
    yield
    while _SERVERS:
        _SERVERS.pop().close()


def fake_convex(**kwargs) -> FakeConvex:
    _SERVERS.append(FakeConvex(**kwargs))
    return _SERVERS[-1]


def upgrader(tmp_path, stack, fail=None, log_text=UPGRADE_LOG, backup_dir=None, convex=None):
    """An Upgrader on a stand-in stack and backend (`up.convex`); every command it runs is
    recorded in `up.calls` as (command, timeout, cwd, the variables it sets for npx)."""
    commands, calls, followed = [], [], []

    def run(command, timeout, cwd=None, env=None, stdout=None, stderr=None):
        commands.append(command)
        assert KEY not in " ".join(command)  # the key only travels in the environment
        if command[0] == "npx":
            assert env["CONVEX_SELF_HOSTED_ADMIN_KEY"] == KEY
            assert env["PATH"] == os.environ["PATH"]  # the caller's environment, plus two
            assert set(env) - set(os.environ) <= {"CONVEX_SELF_HOSTED_URL",
                                                   "CONVEX_SELF_HOSTED_ADMIN_KEY"}
        convex_env = env and {k: v for k, v in env.items() if k.startswith("CONVEX_SELF_HOSTED")}
        calls.append((command, timeout, cwd, convex_env))
        return subprocess.CompletedProcess(command, 1 if fail and fail in command else 0)

    def log_lines(container):
        followed.append(container)
        return log_text.splitlines()

    convex = convex or fake_convex()
    up = Upgrader(stack, NEW, tmp_path / "app", backup_dir or tmp_path / "backup",
                  RecordingLog(tmp_path / "backup" / "upgrade.log"),
                  run=run, log_lines=log_lines, timeout=60,
                  client=backup.Client(convex.url, KEY), poll=0.01)
    up.check_admin_key = lambda: up.log("the backend accepts the admin key")
    requests = []  # admin API calls: (path, body)
    up.admin_api = lambda path, body=None: requests.append((path, body)) or 200
    up.calls, up.followed, up.requests, up.convex = calls, followed, requests, convex
    return up, commands


def backup_messages(up):
    size = len(snapshot_zip())
    return [f"backup to {up.backup_dir}",
            "requesting a snapshot export (with file storage) from the backend",
            f"saved snapshot.zip ({size} bytes, export export1)",
            "saved 1 environment variable(s) to snapshot.env.json: FEATURE_FLAG"]


def backup_requests():
    """What the backup asks the backend, in order (no npx, no Node)."""
    latest = {"path": "_system/cli/exports:getLatest", "args": {}, "format": "json"}
    return [("POST", "/api/query", f"Convex {KEY}", latest),
            ("POST", "/api/export/request/zip?includeStorage=true", f"Convex {KEY}", None),
            ("POST", "/api/query", f"Convex {KEY}", latest),
            ("GET", "/api/export/zip/export1", f"Convex {KEY}", None),
            ("POST", "/api/query", f"Convex {KEY}",
             {"path": "_system/cli/queryEnvironmentVariables", "args": {}, "format": "json"})]


def test_in_place_upgrade_backs_up_first_then_applies_and_follows(tmp_path):
    stack = FakeStack()
    up, commands = upgrader(tmp_path, stack)
    up.execute("in-place")
    assert up.calls == [] and up.convex.requests == backup_requests()
    assert up.followed == ["convex-dev-backend"]
    progress = [line for line in UPGRADE_LOG.splitlines()
                if "Executing Migration" in line or "Migrated " in line]
    assert up.log.messages == [
        plan(OLD, NEW).describe("in-place"), *backup_messages(up),
        f"$ pulumi config set convex-selfhost:version {NEW}",
        "preview: only images and containers change; applying",
        "$ pulumi up --stack dev", "pulumi up done",
        "waiting for migrations (target database version 128)", *progress,
        "migrations done: database at version 128", "the backend accepts the admin key",
        f"upgraded dev to {NEW[:12]}; backup kept in {up.backup_dir}"]
    assert stack.calls == [("set_config", "convex-selfhost:version", NEW), ("preview",), ("up",)]
    env_file = tmp_path / "backup" / "snapshot.env.json"
    assert json.loads(env_file.read_text()) == [{"name": "FEATURE_FLAG", "value": "on"}]
    snapshot = tmp_path / "backup" / "snapshot.zip"
    assert snapshot.read_bytes() == snapshot_zip()
    for private in (env_file, snapshot, tmp_path / "backup" / "upgrade.log"):
        assert private.stat().st_mode & 0o777 == 0o600, private
    log = (tmp_path / "backup" / "upgrade.log").read_text()
    assert "migrations done: database at version 128" in log and KEY not in log
    assert "FEATURE_FLAG" in log and "=on" not in log and '"on"' not in log


def test_a_failed_backup_changes_nothing(tmp_path):
    stack = FakeStack()
    convex = fake_convex(fail={"/api/export/request/zip": 500})
    up, _ = upgrader(tmp_path, stack, convex=convex)
    with pytest.raises(UpgradeError) as failed:
        up.execute("in-place")
    assert str(failed.value) == ("the backup failed: request export: HTTP 500 Boom stand-in "
                                 "failure. Nothing was changed.")
    assert stack.calls == []
    assert f"error: {failed.value}" in (tmp_path / "backup" / "upgrade.log").read_text()


def test_a_failed_environment_variable_backup_changes_nothing(tmp_path):
    stack = FakeStack()
    up, _ = upgrader(tmp_path, stack)
    up.convex.answer = lambda method, path, body, real=up.convex.answer: (
        (200, b'{"status": "error", "errorMessage": "no such function"}')
        if body and body["path"] == backup.ENV_QUERY else real(method, path, body))
    with pytest.raises(UpgradeError) as failed:
        up.execute("in-place")
    assert str(failed.value) == ("the backup failed: environment variables: query failed (no "
                                 "such function). Nothing was changed.")
    assert stack.calls == [] and not (tmp_path / "backup" / "snapshot.env.json").exists()


def test_a_preview_that_touches_data_is_refused_and_reset(tmp_path):
    stack = FakeStack(changes=[("replace", "docker:index/volume:Volume", "convex-dev-data")])
    up, _ = upgrader(tmp_path, stack)
    with pytest.raises(UpgradeError) as refused:
        up.execute("in-place")
    assert str(refused.value) == (
        "the preview would change more than images and containers: replace convex-dev-data "
        "(docker:index/volume:Volume). Nothing was applied; settings reset.\n" + up.rollback_text())
    assert up.rollback_text() == (
        f"To roll back: cd {REPO} && . ./env.sh && pulumi config set convex-selfhost:version "
        f"{OLD} --stack dev && pulumi up --stack dev; if the data is damaged, restore the "
        "backup (and its environment variables): CONVEX_SELF_HOSTED_ADMIN_KEY=\"$(pulumi stack "
        "output adminKey --show-secrets --stack dev)\" python3 "
        f"{REPO / 'ops' / 'backup.py'} restore --url http://127.0.0.1:1 --file "
        f"{tmp_path / 'backup' / 'snapshot.zip'} --app-dir {tmp_path / 'app'}")
    assert ("up",) not in stack.calls and stack.config["convex-selfhost:version"] == OLD
    log = (tmp_path / "backup" / "upgrade.log").read_text()
    assert "error: the preview would change more than images and containers: replace " \
           "convex-dev-data" in log and "settings reset: version" in log


def test_a_failed_migration_says_how_to_roll_back(tmp_path):
    stack = FakeStack()
    up, _ = upgrader(tmp_path, stack, log_text="ERROR Migration worker failed, sleeping 60s")
    with pytest.raises(UpgradeError) as failed:
        up.execute("in-place")
    assert "migrations did not complete" in str(failed.value)
    assert "ops/backup.py restore" in str(failed.value)


@pytest.mark.parametrize("key,value", [("convex-selfhost:provisionPostgres", "true"),
                                       ("convex-selfhost:databaseUrl", "postgres://db")])
def test_export_import_refuses_deployments_whose_data_is_in_a_database(tmp_path, key, value):
    stack = FakeStack()
    stack.config[key] = value
    up, _ = upgrader(tmp_path, stack)
    with pytest.raises(UpgradeError) as refused:
        up.execute("export-import")
    assert str(refused.value).split("\n")[0] == (
        "export-import moves data between data volumes; this deployment keeps it in "
        "Postgres/MySQL. Use --mode in-place.")
    assert stack.calls == []


DATA_URN = "urn:pulumi:dev::p::convex:selfhost:Backend$docker:index/volume:Volume::" \
           "convex-dev-backend-data"


def test_export_import_moves_sqlite_to_a_new_volume(tmp_path):
    stack = FakeStack()
    stack.config["convex-selfhost:dataVolumeName"] = "self-hosted_data"
    stack.export_stack = lambda: SimpleNamespace(deployment={"resources": [
        {"type": "docker:index/volume:Volume", "urn": DATA_URN},
        {"type": "docker:index/volume:Volume", "urn": "urn:x::convex-dev-pgdata"},
        {"type": "docker:index/container:Container", "urn": "urn:x::odd-backend-data"},
        {"type": "docker:index/volume:Volume"}]})
    up, _ = upgrader(tmp_path, stack)
    up.execute("export-import")
    convex = {"CONVEX_SELF_HOSTED_URL": "http://127.0.0.1:1", "CONVEX_SELF_HOSTED_ADMIN_KEY": KEY}
    snapshot = str(tmp_path / "backup" / "snapshot.zip")
    assert up.calls == [
        (["pulumi", "state", "unprotect", DATA_URN, "--yes", "--stack", "dev"], 300, str(REPO),
         None),
        (["npx", "--yes", "convex", "import", "--replace-all", "--yes", snapshot], 60,
         up.app_dir, convex),
    ]
    assert up.convex.requests == backup_requests()
    # the values travel in one request body: never on a command line or in the log
    assert up.requests == [("/api/update_environment_variables",
                            {"changes": [{"name": "FEATURE_FLAG", "value": "on"}]})]
    assert stack.calls == [("set_config", "convex-selfhost:version", NEW),
                           ("set_config", "convex-selfhost:dataVolumeName",
                            "convex-dev-data-652b828"), ("up",)]
    assert up.log.messages == [
        plan(OLD, NEW).describe("export-import"), *backup_messages(up),
        "unprotecting convex-dev-backend-data in state (the volume itself is retained)",
        f"$ pulumi state unprotect '{DATA_URN}' --yes --stack dev",
        f"$ pulumi config set convex-selfhost:version {NEW}",
        "$ pulumi config set convex-selfhost:dataVolumeName convex-dev-data-652b828",
        f"bringing {NEW[:12]} up on volume convex-dev-data-652b828; self-hosted_data is kept",
        "$ pulumi up --stack dev", "pulumi up done",
        f"$ npx convex import --replace-all --yes {snapshot}  (in {up.app_dir})",
        "setting 1 environment variable(s): FEATURE_FLAG",
        "restored the backup and 1 environment variable(s); the old volume self-hosted_data "
        "stays until you remove it (docker volume rm self-hosted_data)",
        "the backend accepts the admin key",
        f"upgraded dev to {NEW[:12]}; backup kept in {up.backup_dir}"]


@pytest.mark.parametrize("state", [{"resources": []}, SimpleNamespace(deployment=None),
                                   SimpleNamespace(deployment={})])
def test_export_import_with_nothing_to_unprotect(tmp_path, state):
    stack = FakeStack()
    stack.export_stack = lambda: state
    up, commands = upgrader(tmp_path, stack)
    up.execute("export-import")
    assert not [c for c in commands if c[0] == "pulumi"]
    assert "bringing 652b828b5129 up on volume convex-dev-data-652b828; convex-dev-data is " \
           "kept" in up.log.messages


def test_export_import_stops_when_the_volume_cannot_be_unprotected(tmp_path):
    stack = FakeStack()
    stack.export_stack = lambda: {"resources": [{"type": "docker:index/volume:Volume",
                                                 "urn": DATA_URN}]}
    up, _ = upgrader(tmp_path, stack, fail="unprotect")
    with pytest.raises(UpgradeError) as failed:
        up.execute("export-import")
    assert str(failed.value).split("\n")[0] == (
        f'could not unprotect the data volume: "{DATA_URN}"')
    assert stack.calls == []


def test_preview_safety_allows_images_containers_and_gate_updates_only(tmp_path):
    stack = FakeStack(changes=[
        ("read", "docker:index/network:Network", "n"),
        ("create", "pulumi:index:Stash", "new-gate"),
        ("delete", "pulumi-python:dynamic:Resource", "old-gate"),
        ("delete", "random:index/randomBytes:RandomBytes", "secret")])
    stack.preview = lambda on_event, original=stack.preview: (
        on_event(SimpleNamespace(diagnostic_event="x")), original(on_event))
    up, _ = upgrader(tmp_path, stack)
    assert up.preview_is_safe() == [
        "create new-gate (pulumi:index:Stash)",
        "delete old-gate (pulumi-python:dynamic:Resource)",
        "delete secret (random:index/randomBytes:RandomBytes)"]


def test_an_earlier_releases_gates_may_become_stash_gates_under_the_same_names():
    def step(op, kind, name):
        meta = SimpleNamespace(op=SimpleNamespace(value=op), type=kind, diffs=None,
                               urn=f"urn:pulumi:dev::p::{kind}::{name}")
        return SimpleNamespace(resource_pre_event=SimpleNamespace(metadata=meta))

    gate = "convex-dev-backend-healthy"
    events = [step("create", "pulumi:index:Stash", gate),
              step("delete", "pulumi-python:dynamic:Resource", gate),
              step("delete", "pulumi:providers:pulumi-python", "default"),
              step("replace", "docker:index/container:Container", "c")]
    refused, notes = judge_preview(events)
    assert refused == [] and len(notes) == 1 and gate in notes[0]
    # Without the matching create, the old gate's delete (and its provider's) is refused.
    refused, _ = judge_preview(events[1:])
    assert refused == [f"delete {gate} (pulumi-python:dynamic:Resource)",
                       "delete default (pulumi:providers:pulumi-python)"]


def test_an_earlier_releases_networks_may_become_command_networks_under_the_same_names():
    network = "convex-dev-network"
    events = [_step("create", "command:local:Command", network),
              _step("create", "pulumi:providers:command", "default_1_2_1"),
              _step("delete", "docker:index/network:Network", network),
              _step("replace", "docker:index/container:Container", "c")]
    refused, notes = judge_preview(events)
    assert refused == [] and len(notes) == 1 and network in notes[0]
    # Another command, or a network deleted with nothing made in its place, is refused.
    refused, _ = judge_preview([_step("create", "command:local:Command", "other"),
                                _step("create", "pulumi:providers:command", "default"),
                                _step("delete", "docker:index/network:Network", network)])
    assert refused == ["create other (command:local:Command)",
                       "create default (pulumi:providers:command)",
                       f"delete {network} (docker:index/network:Network)"]


def _step(op, kind, name):
    meta = SimpleNamespace(op=SimpleNamespace(value=op), type=kind, diffs=None,
                           urn=f"urn:pulumi:dev::p::{kind}::{name}")
    return SimpleNamespace(resource_pre_event=SimpleNamespace(metadata=meta))


def test_backup_makes_a_private_directory_wherever_the_log_is(tmp_path):
    up, _ = upgrader(tmp_path, FakeStack(), backup_dir=tmp_path / "deep" / "backup")
    up.backup()
    assert (tmp_path / "deep" / "backup").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "deep").stat().st_mode & 0o777 == 0o700  # made here: private too


@contextlib.contextmanager
def backend_answering(tmp_path, do_get, do_post=None):
    """An Upgrader whose backend URL is a loopback server handling GET with `do_get`
    (and POST with `do_post`)."""
    handler = type("Handler", (http.server.BaseHTTPRequestHandler,),
                   {"do_GET": do_get, "do_POST": do_post or do_get,
                    "log_message": lambda self, *args: None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        up, _ = upgrader(tmp_path, FakeStack())
        del up.check_admin_key, up.admin_api
        up.url = f"http://127.0.0.1:{server.server_address[1]}"
        yield up
    finally:
        server.shutdown()


def test_admin_key_check_against_a_backend(tmp_path):
    def do_get(handler):
        ok = handler.headers.get("Authorization") == f"Convex {KEY}"
        handler.send_response(200 if ok else 401)
        handler.end_headers()

    def do_post(handler):  # the backend's route is GET only
        handler.send_response(405)
        handler.end_headers()

    with backend_answering(tmp_path, do_get, do_post) as up:
        up.check_admin_key()
        up.key = "convex-dev|00"
        with pytest.raises(UpgradeError) as refused:
            up.check_admin_key()
    assert str(refused.value) == "the backend refused the admin key (HTTP 401)."


def test_cli_plan_and_refusals():
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "ops.upgrade", *args],
                              capture_output=True, text=True, cwd=Path(REPO))

    done = cli("plan", "--from", OLD, "--to", NEW)
    assert done.returncode == 0 and "database 128" in done.stdout
    done = cli("plan", "--from", NEW, "--to", OLD)
    assert done.returncode == 1 and done.stderr.startswith("error: ") and "Traceback" not in \
        done.stderr
    assert upgrade_plan.MODES == ("in-place", "export-import")


def test_a_failed_pulumi_command_becomes_a_clean_error_with_rollback(tmp_path):
    from pulumi import automation as auto
    from pulumi.automation import errors

    stack = FakeStack()

    def fail():
        raise errors.CommandError(auto.CommandResult(stdout="Updating (dev)",
                                                     stderr="  error: update failed\n", code=255))

    stack.up = fail
    up, _ = upgrader(tmp_path, stack)
    with pytest.raises(UpgradeError) as failed:
        up.execute("in-place")
    assert "pulumi failed: error: update failed" in str(failed.value)
    assert "To roll back" in str(failed.value)


# --- the command line, in this process -----------------------------------------------


def cli_main(capsys, *args):
    code = upgrade.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_plan_prints_the_plan_for_the_mode(capsys):
    assert cli_main(capsys, "plan", "--from", OLD, "--to", NEW) == (
        0, plan(OLD, NEW).describe("in-place") + "\n", "")
    code, out, _ = cli_main(capsys, "plan", "--from", OLD, "--to", NEW, "--mode",
                            "export-import")
    assert (code, out) == (0, plan(OLD, NEW).describe("export-import") + "\n")
    assert cli_main(capsys, "plan", "--from", NEW, "--to", OLD, "--allow-downgrade")[0] == 0
    code, out, err = cli_main(capsys, "plan", "--from", NEW, "--to", OLD)
    assert (code, out) == (1, "") and err.startswith("error: ") and err.count("\n") == 1


@pytest.fixture
def run_env(tmp_path, monkeypatch):
    """`run` with every tool present, an app directory, and a recorded Upgrader."""
    from pulumi import automation as auto

    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text("{}")
    monkeypatch.setattr(upgrade.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(upgrade, "bounded_pulumi_command", lambda commands, timeout: None)
    selected, executed = [], []
    monkeypatch.setattr(auto, "select_stack", lambda name, work_dir, opts: selected.append(
        (name, work_dir)) or FakeStack())
    monkeypatch.setattr(Upgrader, "execute", lambda self, mode: executed.append((self, mode)))
    return SimpleNamespace(app=app, selected=selected, executed=executed)


def test_cli_run_selects_the_stack_and_upgrades_with_the_given_options(run_env, capsys,
                                                                       tmp_path):
    code, _, err = cli_main(capsys, "run", "--stack", "dev", "--to", NEW, "--app-dir",
                            str(run_env.app), "--backup-dir", str(tmp_path / "b"))
    assert (code, err) == (0, "")
    assert run_env.selected == [("dev", str(REPO))]
    ((up, mode),) = run_env.executed
    assert mode == "in-place" and up.new == NEW and up.timeout == 1800
    assert up.app_dir == run_env.app and up.backup_dir == (tmp_path / "b").resolve()
    assert up.log.path == (tmp_path / "b" / "upgrade.log").resolve()
    assert up.plan == plan(OLD, NEW)
    cli_main(capsys, "run", "--stack", "prod", "--to", NEW, "--app-dir", str(run_env.app),
             "--backup-dir", str(tmp_path / "c"), "--mode", "export-import", "--timeout", "90")
    assert run_env.executed[1][1] == "export-import" and run_env.executed[1][0].timeout == 90


def test_cli_run_backs_up_under_the_home_directory_by_default(run_env, capsys, tmp_path,
                                                             monkeypatch):
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")
    assert cli_main(capsys, "run", "--stack", "dev", "--to", NEW, "--app-dir",
                    str(run_env.app))[0] == 0
    backup_dir = run_env.executed[0][0].backup_dir
    assert backup_dir.parent == tmp_path / "home" / "convex-backups" / "dev"
    stamp = dt.datetime.strptime(backup_dir.name, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    assert abs(dt.datetime.now(dt.timezone.utc) - stamp) < dt.timedelta(minutes=2)


def test_default_backup_directory_is_stamped_in_utc(monkeypatch):
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    try:
        path = upgrade.default_backup_dir("prod")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert path.parent == Path.home() / "convex-backups" / "prod"
    stamp = dt.datetime.strptime(path.name, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    assert abs(dt.datetime.now(dt.timezone.utc) - stamp) < dt.timedelta(minutes=2)


def test_cli_run_refusals_are_one_line_errors(run_env, capsys, tmp_path, monkeypatch):
    from pulumi import automation as auto
    from pulumi.automation import errors

    def refused(*args):
        code, out, err = cli_main(capsys, "run", "--stack", "dev", "--to", NEW, *args)
        assert (code, out) == (1, "") and err.startswith("error: ") and err.count("\n") == 1
        return err

    app = ("--app-dir", str(run_env.app))
    assert "inside the infrastructure repository" in refused(*app, "--backup-dir",
                                                             str(REPO / "backups"))
    assert f"{tmp_path} has no package.json" in refused("--app-dir", str(tmp_path),
                                                        "--mode", "export-import")

    def no_stack(name, work_dir, opts):
        raise errors.CommandError(auto.CommandResult(
            stdout="", stderr="error: no stack named 'dev' found\n", code=255))

    monkeypatch.setattr(auto, "select_stack", no_stack)
    assert refused(*app, "--backup-dir", str(tmp_path / "b")) == (
        "error: cannot select stack 'dev': error: no stack named 'dev' found (run `. ./env.sh` "
        "first so the state backend is the stack's).\n")
    monkeypatch.setattr(upgrade.shutil, "which",
                        lambda tool: None if tool in ("npx", "docker") else "/usr/bin/x")
    assert "missing tools: docker (install them first)." in refused(*app)
    assert "missing tools: docker, npx (install them first)." in refused(
        *app, "--mode", "export-import")
    assert run_env.executed == []


def test_docker_log_lines_polls_the_stacks_engine_and_yields_only_new_lines():
    outputs = iter(["a\nb\n", "a\nb\nc\nd\n"])
    ran, slept = [], []

    def run(command, timeout, **kwargs):
        ran.append((command, timeout, kwargs))
        return subprocess.CompletedProcess(command, 0, next(outputs), None)

    lines = upgrade.docker_log_lines("convex-prod-backend", "ssh://deploy@h", poll=0.5,
                                     sleep=slept.append, run=run)
    assert [next(lines) for _ in range(6)] == ["a", "b", "", "c", "d", ""]
    assert ran == [(["docker", "--host", "ssh://deploy@h", "logs", "convex-prod-backend"], 30.0,
                    {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT,
                     "name": "docker logs"})] * 2
    assert slept == [0.5]
    ran.clear()
    outputs = iter(["x\n"])
    assert next(upgrade.docker_log_lines("c", run=run)) == "x"
    assert ran[0][0] == ["docker", "logs", "c"]


@pytest.mark.parametrize("host", ["", "ssh://deploy@convex.example.com"])
def test_cli_run_follows_the_log_on_the_stacks_engine(run_env, capsys, tmp_path, monkeypatch,
                                                      host):
    from pulumi import automation as auto

    stack = FakeStack()
    if host:
        stack.config["docker:host"] = host
    monkeypatch.setattr(auto, "select_stack", lambda name, work_dir, opts: stack)
    followed = []
    monkeypatch.setattr(upgrade, "docker_log_lines", lambda container, docker_host, progress:
                        followed.append((container, docker_host)))
    cli_main(capsys, "run", "--stack", "dev", "--to", NEW, "--app-dir", str(run_env.app),
             "--backup-dir", str(tmp_path / "b"))
    ((up, _),) = run_env.executed
    up.log_lines("convex-dev-backend")
    assert followed == [("convex-dev-backend", host)]


@pytest.mark.parametrize("text,line", [
    ("Updating (dev)\n  error: update failed: boom\nmore", "error: update failed: boom"),
    ("x error: a error: b\n", "error: a error: b"),
    ("\n  first line  \nsecond\n", "first line"),
    ("", "CommandError"),
    ("e" * 400, "e" * 300),
])
def test_first_line_of_a_pulumi_error(text, line):
    class CommandError(Exception):
        pass

    assert upgrade_local.first_error_line(CommandError(text)) == line


def test_admin_key_check_never_follows_a_redirect(tmp_path):
    seen = []

    def do_get(handler):
        seen.append((handler.path, handler.headers.get("Authorization")))
        handler.send_response(302 if handler.path == "/api/check_admin_key" else 200)
        handler.send_header("Location", "/elsewhere")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    with backend_answering(tmp_path, do_get) as up:
        with pytest.raises(UpgradeError, match=r"refused the admin key \(HTTP 302\)"):
            up.check_admin_key()
    assert seen == [("/api/check_admin_key", f"Convex {KEY}")]


# --- plans, word for word (tests/golden/upgrade-plans/; UPDATE_GOLDEN=1 rewrites them) ---

PLAN_GOLDEN = REPO / "tests" / "golden" / "upgrade-plans"
UNKNOWN = "0123456789abcdef0123456789abcdef01234567"
PLANS = {
    "in-place": (OLD, NEW, False, "in-place"),
    "export-import": (OLD, NEW, False, "export-import"),
    "downgrade-allowed": (NEW, OLD, True, "in-place"),
    "same-database-version": (releases.find("84bd27d").tag, NEW, False, "in-place"),
    "unknown-target": (OLD, UNKNOWN, False, "in-place"),
    "unknown-source": (UNKNOWN, NEW, False, "export-import"),
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_plans_read_word_for_word(name):
    old, new, allow, mode = PLANS[name]
    assert_matches_golden(PLAN_GOLDEN / f"{name}.txt", plan(old, new, allow).describe(mode) + "\n")


@pytest.mark.parametrize("old, new, message", [
    (NEW, NEW, f"the stack already runs {NEW[:12]}; nothing to upgrade."),
    (OLD, "c4ae6015a5387a92710953206f4726f2a2d60de3",
     "c4ae6015a538 was withdrawn upstream (database version 129, reverted)."),
    (NEW, OLD, None),
])
def test_plan_refusals_word_for_word(old, new, message):
    with pytest.raises(PlanError) as refused:
        plan(old, new)
    if message:
        assert str(refused.value) == message
    else:
        assert str(refused.value).endswith(
            "backend cannot open a database a newer one migrated, and data written since may "
            "be lost. Restore the export taken before the upgrade instead, or pass "
            "--allow-downgrade if you know the database versions match.")


# --- found by mutation testing: exact results, messages and the command line ------------

SAME_DAY_OLDER, SAME_DAY_NEWER = ("d1ff6888b5df2ea6100c947b821a4e822e58e139",
                                  "0eb789ff5ef76101ac5478a003aba9a8a959ce04")


def test_releases_of_one_day_and_database_version_are_still_ordered():
    older, newer = releases.find(SAME_DAY_OLDER), releases.find(SAME_DAY_NEWER)
    assert (older.date, older.database_version) == (newer.date, newer.database_version)
    assert plan(SAME_DAY_OLDER, SAME_DAY_NEWER).crossed == (newer,)
    with pytest.raises(PlanError, match="is older than the running 0eb789f"):
        plan(SAME_DAY_NEWER, SAME_DAY_OLDER)


def test_plans_carry_both_versions_and_cross_nothing_when_unknown_or_downgrading():
    unknown = plan(OLD, "f" * 40)
    assert (unknown.old, unknown.new, unknown.old_release, unknown.new_release,
            unknown.crossed) == (OLD, "f" * 40, releases.find(OLD), None, ())
    down = plan(NEW, OLD, allow_downgrade=True)
    assert (down.old, down.new, down.crossed) == (NEW, OLD, ())
    up = plan(OLD, NEW)
    assert (up.old, up.new, up.crossed) == (OLD, NEW, tuple(releases.between(OLD, NEW)))


def test_following_migrations_word_for_word():
    assert follow_migrations(UPGRADE_LOG.splitlines(), 128, 60) == upgrade_plan.MigrationResult(
        True, 128, "database at version 128", len(UPGRADE_LOG.splitlines()) - 1)
    assert follow_migrations(["x", "db metadata version up to date at 7"], None, 60) == \
        upgrade_plan.MigrationResult(True, 7, "database at version 7", 2)
    assert follow_migrations(["x", "INFO db metadata version up to date at 127"], 128, 60) == \
        upgrade_plan.MigrationResult(False, 127, "database at version 127, expected 128", 2)
    ahead = ("WARN persisted db metadata version is ahead at 129, this binary is at 128 "
             + "x" * 300)
    assert follow_migrations(["x", ahead], 128, 60) == upgrade_plan.MigrationResult(
        False, 129, ahead.strip()[:200], 2)
    failed = "ERROR model::migrations: Migration worker failed, sleeping 60s " + "y" * 300
    assert follow_migrations([failed], 128, 60) == upgrade_plan.MigrationResult(
        False, None, failed[:200], 1)


def test_following_migrations_stops_only_after_the_deadline_has_passed():
    ticks = iter(range(1000))
    result = follow_migrations(iter(lambda: "", None), 128, 5, clock=lambda: next(ticks))
    # the deadline is tick 5; the line read at tick 5 is still within it
    assert result == upgrade_plan.MigrationResult(
        False, None, "no 'db metadata version up to date' line within 5s", 6)


def test_the_log_prints_elapsed_seconds_and_appends_utc_lines(tmp_path, monkeypatch):
    ticks = iter([100.0, 112.34, 200.0])
    monkeypatch.setattr(upgrade_local.time, "monotonic", lambda: next(ticks))
    out = Flushes()
    log = Log(tmp_path / "new" / "upgrade.log", out=out)
    log("first")
    log("second")
    assert out.getvalue() == "[  12.3s] first\n[ 100.0s] second\n"
    # shown at once, line by line
    assert out.flushed_at == [len("[  12.3s] first\n"), len(out.getvalue())]
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    lines = (tmp_path / "new" / "upgrade.log").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["[  12.3s] first", "[ 100.0s] second"]
    for line in lines:
        stamp = dt.datetime.fromisoformat(line.split(" ", 1)[0])
        assert stamp.utcoffset() == dt.timedelta(0)


class StackWithOutputs(FakeStack):
    def __init__(self, **outputs):
        super().__init__()
        self._outputs = {k: SimpleNamespace(value=v) for k, v in outputs.items()}

    def outputs(self):
        return self._outputs


@pytest.mark.parametrize("outputs", [
    {"adminKey": KEY, "instanceName": "convex-dev"},
    {"backendUrl": "http://b:3210", "instanceName": "convex-dev"},
    {"backendUrl": {"pr-1": "http://b:3210"}, "adminKey": KEY, "instanceName": "convex-dev"},
])
def test_an_upgrade_needs_one_backend_url_and_admin_key(tmp_path, outputs):
    with pytest.raises(UpgradeError) as refused:
        Upgrader(StackWithOutputs(**outputs), NEW, tmp_path, tmp_path, Log(tmp_path / "l"),
                 run=None, log_lines=None)
    assert str(refused.value) == ("the stack has no single backendUrl/adminKey output: deploy "
                                  "it first (stacks with `deployments` are upgraded by hand).")


def test_upgrader_defaults_and_an_allowed_downgrade(tmp_path):
    stack = FakeStack()
    up = Upgrader(stack, NEW, tmp_path, tmp_path, Log(tmp_path / "l"), run=None, log_lines=None)
    assert up.timeout == 1800 and up.plan == plan(OLD, NEW)
    stack.config["convex-selfhost:version"] = NEW
    with pytest.raises(PlanError):
        Upgrader(stack, OLD, tmp_path, tmp_path, Log(tmp_path / "l"), run=None, log_lines=None)
    down = Upgrader(stack, OLD, tmp_path, tmp_path, Log(tmp_path / "l"), run=None,
                    log_lines=None, allow_downgrade=True)
    assert down.plan == plan(NEW, OLD, allow_downgrade=True)


def test_the_admin_key_check_waits_30_seconds_and_names_what_failed(tmp_path, monkeypatch):
    up, _ = upgrader(tmp_path, FakeStack())
    del up.check_admin_key, up.admin_api
    opened = []

    class Opener:
        def open(self, request, timeout):
            opened.append((request.full_url, request.get_header("Authorization"), timeout))
            raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr("urllib.request.build_opener", lambda *handlers: Opener())
    with pytest.raises(UpgradeError) as failed:
        up.check_admin_key()
    assert str(failed.value) == "the backend does not answer: [Errno 111] Connection refused"
    assert opened == [("http://127.0.0.1:1/api/check_admin_key", f"Convex {KEY}", 30)]


def test_an_accepted_key_is_logged(tmp_path):
    def do_get(handler):
        handler.send_response(200)
        handler.end_headers()

    with backend_answering(tmp_path, do_get) as up:
        up.check_admin_key()
    assert up.log.messages[-1] == "the backend accepts the admin key"


def test_unsafe_changes_are_all_named_and_the_target_version_is_followed(tmp_path,
                                                                         monkeypatch):
    stack = FakeStack(changes=[("replace", "docker:index/volume:Volume", "a"),
                               ("delete", "docker:index/network:Network", "b")])
    up, _ = upgrader(tmp_path, stack)
    with pytest.raises(UpgradeError) as refused:
        up.in_place()
    assert str(refused.value) == (
        "the preview would change more than images and containers: replace a "
        "(docker:index/volume:Volume); delete b (docker:index/network:Network). Nothing was "
        "applied; settings reset.")
    targets = []
    monkey = upgrader(tmp_path, FakeStack())[0]
    monkey.log_lines = lambda container: ["db metadata version up to date at 9"]
    real = upgrade.follow_migrations
    monkeypatch.setattr(upgrade, "follow_migrations", lambda lines, target, *a, **k: (
        targets.append(target), real(lines, target, *a, **k))[1])
    with pytest.raises(UpgradeError, match="database at version 9, expected 128"):
        monkey.in_place()
    assert targets == [128]


def test_an_unknown_target_is_waited_for_as_unknown(tmp_path):
    stack = FakeStack()
    up = Upgrader(stack, "f" * 40, tmp_path, tmp_path, RecordingLog(tmp_path / "l"),
                  run=None, log_lines=lambda c: ["db metadata version up to date at 9"])
    up.in_place()
    assert "waiting for migrations (target database version unknown)" in up.log.messages
    assert up.log.messages[-1] == "migrations done: database at version 9"


def test_backups_inside_the_repository_are_refused_word_for_word():
    with pytest.raises(UpgradeError) as refused:
        check_backup_dir(REPO / "backups")
    assert str(refused.value) == (f"{REPO / 'backups'} is inside the infrastructure repository, "
                                  "where a backup could be committed; choose a directory "
                                  "outside it.")


UPGRADE_HELP = {
    "plan": "usage: python -m ops.upgrade plan [-h] --from OLD --to NEW [--mode "
            "{in-place,export-import}] [--allow-downgrade] options: -h, --help show this help "
            "message and exit --from OLD --to NEW --mode {in-place,export-import} "
            "--allow-downgrade",
}


def test_the_command_line_help_and_required_options(capsys):
    for command, text in UPGRADE_HELP.items():
        with pytest.raises(SystemExit):
            upgrade.main([command, "--help"])
        assert " ".join(capsys.readouterr().out.split()) == text
    with pytest.raises(SystemExit):
        upgrade.main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m ops.upgrade [-h] {plan,run} ...\n")
    assert upgrade.__doc__.strip().splitlines()[2] in out.splitlines()  # kept as written
    assert "plan print what an upgrade crosses" in " ".join(out.split())
    assert "run back up, then upgrade a stack" in " ".join(out.split())
    for argv, missing in ((["plan", "--to", NEW], "--from"), (["plan", "--from", OLD], "--to"),
                          (["run", "--to", NEW], "--stack"), (["run", "--stack", "dev"], "--to"),
                          ([], "command")):
        with pytest.raises(SystemExit) as stopped:
            upgrade.main(argv)
        assert stopped.value.code == 2
        assert f"the following arguments are required: {missing}" in capsys.readouterr().err
    for argv in (["plan", "--from", OLD, "--to", NEW, "--mode", "x"],
                 ["run", "--stack", "dev", "--to", NEW, "--mode", "x"]):
        with pytest.raises(SystemExit):
            upgrade.main(argv)
        assert "invalid choice: 'x'" in capsys.readouterr().err


def test_cli_run_defaults_to_the_current_directory_and_passes_allow_downgrade(
        run_env, capsys, tmp_path, monkeypatch):
    from pulumi import automation as auto

    monkeypatch.chdir(run_env.app)
    stack = FakeStack()
    stack.config["convex-selfhost:version"] = NEW
    monkeypatch.setattr(auto, "select_stack", lambda name, work_dir, opts: stack)
    code, _, err = cli_main(capsys, "run", "--stack", "dev", "--to", OLD, "--allow-downgrade",
                            "--backup-dir", str(tmp_path / "b"))
    assert (code, err) == (0, "")
    ((up, _),) = run_env.executed
    assert up.app_dir == run_env.app and up.plan == plan(NEW, OLD, allow_downgrade=True)
    done = up.run([sys.executable, "-c", "print('ran')"], 30, stdout=subprocess.PIPE)
    assert done.stdout == "ran\n"


def test_cli_run_refusals_word_for_word(run_env, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(upgrade.shutil, "which", lambda tool: None)
    code, _, err = cli_main(capsys, "run", "--stack", "dev", "--to", NEW)
    assert (code, err) == (1, "error: missing tools: pulumi, docker (install them first).\n")
    code, _, err = cli_main(capsys, "run", "--stack", "dev", "--to", NEW, "--mode",
                            "export-import")
    assert (code, err) == (1, "error: missing tools: pulumi, docker, node, npx (install them "
                              "first).\n")
    monkeypatch.setattr(upgrade.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    code, _, err = cli_main(capsys, "run", "--stack", "dev", "--to", NEW, "--app-dir",
                            str(tmp_path), "--mode", "export-import")
    assert err == (f"error: {tmp_path} has no package.json; pass --app-dir with your Convex app "
                   "(where `npx convex deploy` runs).\n")


def test_environment_variables_are_set_in_one_request_with_the_key(tmp_path):
    received = []

    def do_post(handler):
        body = handler.rfile.read(int(handler.headers["Content-Length"]))
        received.append((handler.path, handler.headers["Authorization"],
                         handler.headers["Content-Type"], json.loads(body)))
        handler.send_response(200 if len(received) == 1 else 400)
        handler.end_headers()

    with backend_answering(tmp_path, do_post) as up:
        upgrade_import.set_env(up, [("A", "1"), ("SECRET_TOKEN", "s3cr3t value=x")])
        upgrade_import.set_env(up, [])  # nothing to set: no request
        with pytest.raises(UpgradeError) as refused:
            upgrade_import.set_env(up, [("B", "2")])
    assert received[0] == ("/api/update_environment_variables", f"Convex {KEY}",
                           "application/json", {"changes": [
                               {"name": "A", "value": "1"},
                               {"name": "SECRET_TOKEN", "value": "s3cr3t value=x"}]})
    assert len(received) == 2
    assert str(refused.value) == "the backend refused the environment variables (HTTP 400)."
    assert up.log.messages == ["setting 2 environment variable(s): A, SECRET_TOKEN",
                               "setting 1 environment variable(s): B"]
    assert "s3cr3t" not in (tmp_path / "backup" / "upgrade.log").read_text()


def test_a_host_target_stack_without_a_new_binary_is_refused_before_anything_runs(tmp_path):
    stack = FakeStack()
    stack.config["convex-selfhost:target"] = "host"
    up, commands = upgrader(tmp_path, stack)
    with pytest.raises(UpgradeError, match="pass the new release's binary") as refused:
        up.execute("in-place")
    assert "Nothing was changed." in str(refused.value)
    assert commands == [] and stack.calls == [] and up.convex.requests == []

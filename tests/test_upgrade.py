"""components/upgrade*.py: planning, log following, and the orchestration with stand-ins."""

import http.server
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from components import upgrade, upgrade_plan
from components.upgrade import REPO, Log, UpgradeError, Upgrader, check_backup_dir
from components.upgrade_import import parse_env_list
from components.upgrade_plan import PlanError, follow_migrations, plan

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
    with pytest.raises(PlanError, match="withdrawn"):
        plan(OLD, "c4ae6015a5387a92710953206f4726f2a2d60de3")


def test_export_import_plan_keeps_the_old_volume():
    text = plan(OLD, NEW).describe("export-import")
    assert "new data volume; the old one is kept" in text
    assert "--replace-all" in text and "npx convex env set" in text


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


def test_env_list_parsing():
    assert parse_env_list("A=1\nB=x=y\n\nnot a pair\n") == [("A", "1"), ("B", "x=y")]


# --- orchestration with a stand-in stack ---------------------------------------------


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

    def outputs(self):
        return {"backendUrl": SimpleNamespace(value="http://127.0.0.1:1"),
                "adminKey": SimpleNamespace(value=KEY),
                "instanceName": SimpleNamespace(value="convex-dev")}

    def preview(self, on_event):
        self.calls.append(("preview",))
        for op, kind, name in [("replace", "docker:index/container:Container", "c"),
                               ("update", "pulumi-python:dynamic:Resource", "g"),
                               ("same", "docker:index/volume:Volume", "v"), *self.changes]:
            meta = SimpleNamespace(op=SimpleNamespace(value=op), type=kind,
                                   urn=f"urn:pulumi:dev::p::{kind}::{name}")
            on_event(SimpleNamespace(resource_pre_event=SimpleNamespace(metadata=meta)))

    def up(self, on_output):
        self.calls.append(("up",))


def upgrader(tmp_path, stack, fail=None, log_text=UPGRADE_LOG):
    commands = []

    def run(command, cwd=None, env=None, stdout=None):
        commands.append(command)
        assert KEY not in " ".join(command)  # the key only travels in the environment
        if command[0] == "npx":
            assert env["CONVEX_SELF_HOSTED_ADMIN_KEY"] == KEY
        if stdout is not None:
            stdout.write("FEATURE_FLAG=on\n")
        return subprocess.CompletedProcess(command, 1 if fail and fail in command else 0)

    up = Upgrader(stack, NEW, tmp_path / "app", tmp_path / "backup",
                  Log(tmp_path / "backup" / "upgrade.log", out=open("/dev/null", "w")),
                  run=run, log_lines=lambda container: log_text.splitlines(), timeout=60)
    up.check_admin_key = lambda: up.log("the backend accepts the admin key")
    return up, commands


def test_in_place_upgrade_backs_up_first_then_applies_and_follows(tmp_path):
    stack = FakeStack()
    up, commands = upgrader(tmp_path, stack)
    up.execute("in-place")
    assert commands[0][:4] == ["npx", "--yes", "convex", "export"]
    assert commands[1] == ["npx", "--yes", "convex", "env", "list"]
    assert stack.calls == [("set_config", "convex-selfhost:version", NEW), ("preview",), ("up",)]
    env_file = tmp_path / "backup" / "env.txt"
    assert env_file.read_text() == "FEATURE_FLAG=on\n" and env_file.stat().st_mode & 0o777 == 0o600
    log = (tmp_path / "backup" / "upgrade.log").read_text()
    assert "migrations done: database at version 128" in log and KEY not in log


def test_a_failed_backup_changes_nothing(tmp_path):
    stack = FakeStack()
    up, _ = upgrader(tmp_path, stack, fail="export")
    with pytest.raises(UpgradeError, match="export"):
        up.execute("in-place")
    assert stack.calls == []


def test_a_preview_that_touches_data_is_refused_and_reset(tmp_path):
    stack = FakeStack(changes=[("replace", "docker:index/volume:Volume", "convex-dev-data")])
    up, _ = upgrader(tmp_path, stack)
    with pytest.raises(UpgradeError) as refused:
        up.execute("in-place")
    assert "replace convex-dev-data" in str(refused.value)
    assert "To roll back: pulumi config set convex-selfhost:version " + OLD in str(refused.value)
    assert ("up",) not in stack.calls and stack.config["convex-selfhost:version"] == OLD


def test_a_failed_migration_says_how_to_roll_back(tmp_path):
    stack = FakeStack()
    up, _ = upgrader(tmp_path, stack, log_text="ERROR Migration worker failed, sleeping 60s")
    with pytest.raises(UpgradeError) as failed:
        up.execute("in-place")
    assert "migrations did not complete" in str(failed.value)
    assert "python -m components.backup restore" in str(failed.value)


def test_export_import_refuses_postgres_and_moves_sqlite_to_a_new_volume(tmp_path):
    stack = FakeStack()
    stack.config["convex-selfhost:provisionPostgres"] = "true"
    up, _ = upgrader(tmp_path, stack)
    with pytest.raises(UpgradeError, match="Use --mode in-place"):
        up.execute("export-import")
    stack = FakeStack()
    stack.export_stack = lambda: SimpleNamespace(deployment={"resources": [
        {"type": "docker:index/volume:Volume", "urn": "urn:x::convex-dev-backend-data"}]})
    up, commands = upgrader(tmp_path, stack)
    up.execute("export-import")
    assert ["pulumi", "state", "unprotect", "urn:x::convex-dev-backend-data", "--yes",
            "--stack", "dev"] in commands
    assert stack.config["convex-selfhost:dataVolumeName"] == "convex-dev-data-652b828"
    assert ["npx", "--yes", "convex", "import", "--replace-all", "--yes",
            str(tmp_path / "backup" / "snapshot.zip")] in commands
    assert ["npx", "--yes", "convex", "env", "set", "FEATURE_FLAG", "on"] in commands


def test_admin_key_check_against_a_backend(tmp_path):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.headers.get("Authorization") == f"Convex {KEY}"
            self.send_response(200 if ok else 401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        up, _ = upgrader(tmp_path, FakeStack())
        del up.check_admin_key
        up.url = f"http://127.0.0.1:{server.server_address[1]}"
        up.check_admin_key()
        up.key = "convex-dev|00"
        with pytest.raises(UpgradeError, match="HTTP 401"):
            up.check_admin_key()
    finally:
        server.shutdown()


def test_cli_plan_and_refusals():
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "components.upgrade", *args],
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

    def fail(on_output):
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
    selected, executed = [], []
    monkeypatch.setattr(auto, "select_stack",
                        lambda name, work_dir: selected.append((name, work_dir)) or FakeStack())
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
    assert len(backup_dir.name) == len("20261129T020000Z") and backup_dir.name.endswith("Z")


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
    assert f"{tmp_path} has no package.json" in refused("--app-dir", str(tmp_path))

    def no_stack(name, work_dir):
        raise errors.CommandError(auto.CommandResult(
            stdout="", stderr="error: no stack named 'dev' found\n", code=255))

    monkeypatch.setattr(auto, "select_stack", no_stack)
    assert "cannot select stack 'dev': error: no stack named 'dev' found" in refused(
        *app, "--backup-dir", str(tmp_path / "b"))
    monkeypatch.setattr(upgrade.shutil, "which",
                        lambda tool: None if tool in ("npx", "docker") else "/usr/bin/x")
    assert "missing tools: npx, docker (install them first)." in refused(*app)
    assert run_env.executed == []

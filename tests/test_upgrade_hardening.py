"""components/upgrade*.py under hostile conditions (audit "Hardening II") and on what a real
engine previews (issue "Day 2 works on a real engine"): a proxy in the environment, a
redirecting backend, a stalled `docker logs`, Ctrl-C and SIGTERM, paths that need shell
quoting, a loose umask and backup directories, a git checkout, and a provider update."""

import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_backup_client import Recorder
from test_upgrade import (
    DATA_URN,
    KEY,
    NEW,
    OLD,
    UPGRADE_LOG,
    FakeStack,
    RecordingLog,
    cli_main,
    fake_convex,
    upgrader,
)

from components import releases
from ops import backup, upgrade, upgrade_import, upgrade_local
from ops.upgrade import REPO, Log, UpgradeError, Upgrader, check_backup_dir
from ops.upgrade_plan import follow_migrations

PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                   "ALL_PROXY")


@pytest.fixture
def hostile_proxy(monkeypatch):
    """A 'proxy' named by every proxy variable, recording what reaches it."""
    proxy = Recorder()
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, proxy.url)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    yield proxy
    proxy.close()


def real_admin_api(up, convex):
    """The upgrader's own admin-API calls, against `convex`."""
    del up.check_admin_key, up.admin_api
    up.url = convex.url.replace("127.0.0.1", "localhost")
    return up


# --- the admin API: no proxy, no redirect ---------------------------------------------

def test_the_admin_key_and_environment_values_never_go_to_a_proxy(tmp_path, hostile_proxy):
    convex = fake_convex(variables=[("SECRET_TOKEN", "s3cr3t")])
    up, _ = upgrader(tmp_path, FakeStack(), convex=convex)
    real_admin_api(up, convex)
    up.backup()
    up.check_admin_key()
    upgrade_import.set_env(up, [("SECRET_TOKEN", "s3cr3t")])
    assert hostile_proxy.requests == []
    assert [(method, path) for method, path, _, _ in convex.requests[-2:]] == [
        ("GET", "/api/check_admin_key"), ("POST", "/api/update_environment_variables")]
    assert convex.requests[-1][3] == {"changes": [{"name": "SECRET_TOKEN", "value": "s3cr3t"}]}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_no_admin_request_follows_a_redirect(tmp_path, status):
    elsewhere = Recorder()
    backend = Recorder(lambda handler: (status, {"Location": elsewhere.url + "/steal"}, b""))
    try:
        up, _ = upgrader(tmp_path, FakeStack())
        del up.check_admin_key, up.admin_api
        up.url = backend.url
        with pytest.raises(UpgradeError, match=rf"refused the admin key \(HTTP {status}\)"):
            up.check_admin_key()
        with pytest.raises(UpgradeError, match=rf"environment variables \(HTTP {status}\)"):
            upgrade_import.set_env(up, [("SECRET_TOKEN", "s3cr3t")])
        assert elsewhere.requests == []
    finally:
        elsewhere.close()
        backend.close()


# --- every child process is bounded, and stopped with its own children ----------------

HANGING = r"""#!/usr/bin/env bash
# Stands in for a command whose engine stalls: records its pid and a child's, then waits.
# The child gets a process group of its own (job control), as pulumi gives its plugins.
set -m
echo $$ >> "$PIDS"
sleep 300 &
echo $! >> "$PIDS"
wait
"""


def fake_bin(tmp_path: Path, **scripts: str) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    for name, text in scripts.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o755)
    return directory


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has stopped; only its parent has not looked


def wait_for_pids(path: Path, count: int, limit: float = 30) -> list[int]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        pids = [int(line) for line in path.read_text().split()] if path.exists() else []
        if len(pids) >= count:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"{path} did not list {count} pids within {limit}s")


def wait_until_gone(pids, limit: float = 15) -> list[int]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def test_a_stalled_docker_logs_cannot_hold_the_migration_watch_past_its_timeout(
        tmp_path, monkeypatch):
    bin_dir = fake_bin(tmp_path, docker=HANGING)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PIDS", str(tmp_path / "pids"))
    monkeypatch.setattr(upgrade_local, "DOCKER_LOGS_TIMEOUT", 1.0)
    notes = []
    started = time.monotonic()
    result = follow_migrations(
        upgrade.docker_log_lines("convex-dev-backend", poll=0, progress=notes.append), 128, 2)
    assert time.monotonic() - started < 15
    assert not result.done and result.reason == ("no 'db metadata version up to date' line "
                                                 "within 2s")
    assert notes[0] == "`docker logs convex-dev-backend` did not answer within 1s; retrying"
    pids = wait_for_pids(tmp_path / "pids", 2)
    assert wait_until_gone(pids) == []  # the CLI and its child were stopped together


def test_a_command_past_its_timeout_is_stopped_with_its_children(tmp_path, monkeypatch):
    monkeypatch.setenv("PIDS", str(tmp_path / "pids"))
    script = fake_bin(tmp_path, hang=HANGING) / "hang"
    commands = upgrade_local.Commands(grace=2)
    with pytest.raises(upgrade_local.CommandTimeout) as stopped:
        commands.run([str(script), "arg"], 1)
    assert str(stopped.value) == f"`{script} arg` did not finish within 1s; stopped it."
    with pytest.raises(upgrade_local.CommandTimeout, match="^`hang` did not finish"):
        commands.run([str(script)], 0.5, name="hang")
    assert wait_until_gone(wait_for_pids(tmp_path / "pids", 4)) == []
    assert commands.stop_all() == []  # nothing left running


NPX = r"""#!/usr/bin/env bash
prev=""
for arg in "$@"; do
  if [ "$prev" = --path ]; then printf 'PK' > "$arg"; fi
  prev="$arg"
done
"""

DRIVER = """
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path[:0] = [{repo!r}, {tests!r}]
from pulumi import automation as auto

import test_upgrade as t
from ops import upgrade

convex = t.FakeConvex()
stack = t.FakeStack()
stack.outputs = lambda: {{"backendUrl": SimpleNamespace(value=convex.url),
                          "adminKey": SimpleNamespace(value=t.KEY),
                          "instanceName": SimpleNamespace(value="convex-dev")}}
auto.select_stack = lambda name, work_dir, opts=None: stack
upgrade.bounded_pulumi_command = lambda commands, timeout: None
sys.exit(upgrade.main(["run", "--stack", "dev", "--to", t.NEW, "--app-dir", {app!r},
                       "--backup-dir", {backup!r}]))
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_stops_the_children_and_prints_one_line(tmp_path, sig):
    """Ctrl-C (SIGINT) or SIGTERM while the migration watch runs `docker logs` on a stalled
    engine: exit 130, one line with the rollback, no traceback, no process left behind."""
    app, backup_dir = tmp_path / "app", tmp_path / "backups $(touch pwned)"
    app.mkdir()
    (app / "package.json").write_text("{}")
    # npx is only there so that an older, npx-based backup would get as far as the watch.
    bin_dir = fake_bin(tmp_path, docker=HANGING, pulumi="#!/bin/sh\nexit 0\n", node=NPX, npx=NPX)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(repo=str(REPO), tests=str(REPO / "tests"), app=str(app),
                                    backup=str(backup_dir)))
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               PIDS=str(tmp_path / "pids"))
    process = subprocess.Popen([sys.executable, str(driver)], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids = wait_for_pids(tmp_path / "pids", 2)
        process.send_signal(sig)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.count("\n") == 1
    assert err.startswith("error: interrupted (stopped `docker logs`); the stack may be "
                          f"half-upgraded. To roll back: cd {shlex.quote(str(REPO))} && "
                          f". ./env.sh && pulumi config set convex-selfhost:version {OLD} "
                          "--stack dev && pulumi up --stack dev;")
    assert wait_until_gone(pids) == []
    assert not (tmp_path / "pwned").exists()
    log = (backup_dir / "upgrade.log").read_text()
    assert err[len("error: "):].strip() in log


def test_an_interrupt_during_the_backup_changes_nothing(tmp_path):
    stack = FakeStack()
    up, _ = upgrader(tmp_path, stack)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    up.client.open = interrupt
    with pytest.raises(upgrade.Interrupted) as stopped:
        up.execute("in-place")
    assert str(stopped.value) == "interrupted (no command was running); nothing was changed."
    assert stack.calls == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    assert str(stopped.value) in (tmp_path / "backup" / "upgrade.log").read_text()


# --- rollback: every setting the upgrade changed, shell-quoted --------------------------

def rollback_commands(text: str) -> tuple[list[list[str]], list[str]]:
    """The rollback chain (`a && b && ...`) and the restore command, as a shell parses them."""
    chain, restore = text.removeprefix("To roll back: ").split(
        "; if the data is damaged, restore the backup (and its environment variables): ")
    lexer = shlex.shlex(chain, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token == "&&":
            commands.append(current)
            current = []
        else:
            current.append(token)
    return commands + [current], shlex.split(restore)


@pytest.mark.parametrize("volume_before", [None, "self-hosted_data"])
def test_a_failed_export_import_rolls_back_version_and_data_volume(tmp_path, volume_before):
    stack = FakeStack()
    if volume_before:
        stack.config["convex-selfhost:dataVolumeName"] = volume_before
    stack.export_stack = lambda: {"resources": [{"type": "docker:index/volume:Volume",
                                                 "urn": DATA_URN}]}
    backup_dir = tmp_path / "it's $(touch pwned) `id` here"
    up, _ = upgrader(tmp_path, stack, fail="import", backup_dir=backup_dir)
    up.app_dir = tmp_path / "my app; rm -rf ~"
    with pytest.raises(UpgradeError) as failed:
        up.execute("export-import")
    first, rollback = str(failed.value).split("\n")
    assert first == "`npx convex import` failed (exit 1)."
    chain, restore = rollback_commands(rollback)
    volume = (["pulumi", "config", "set", "convex-selfhost:dataVolumeName", volume_before,
               "--stack", "dev"] if volume_before else
              ["pulumi", "config", "rm", "convex-selfhost:dataVolumeName", "--stack", "dev"])
    assert chain == [["cd", str(REPO)], [".", "./env.sh"],
                     ["pulumi", "state", "unprotect", DATA_URN, "--yes", "--stack", "dev"],
                     ["pulumi", "config", "set", "convex-selfhost:version", OLD, "--stack", "dev"],
                     volume, ["pulumi", "up", "--stack", "dev"]]
    key = "CONVEX_SELF_HOSTED_ADMIN_KEY=$(pulumi stack output adminKey --show-secrets --stack dev)"
    assert restore == [key, "python3", str(REPO / "ops" / "backup.py"), "restore",
                       "--url", "http://127.0.0.1:1", "--file", str(backup_dir / "snapshot.zip"),
                       "--app-dir", str(tmp_path / "my app; rm -rf ~")]
    # Following it in a shell runs exactly those commands and nothing else.
    recorded = tmp_path / "recorded"
    record = ('#!/bin/sh\nprintf "%s|" "${0##*/}" "$@" >> "$REC"\n'
              'printf "key=%s|" "$CONVEX_SELF_HOSTED_ADMIN_KEY" >> "$REC"\necho >> "$REC"\n'
              'echo the-key\n')
    bin_dir = fake_bin(tmp_path, pulumi=record, python3=record)
    shell_text = rollback.removeprefix("To roll back: ").replace(
        "; if the data is damaged, restore the backup (and its environment variables): ",
        " && ").replace(f"cd {shlex.quote(str(REPO))} && . ./env.sh && ", "")
    subprocess.run(["bash", "-c", shell_text], check=True, timeout=30, cwd=tmp_path,
                   env={"PATH": f"{bin_dir}:/usr/bin:/bin", "REC": str(recorded)})
    ran = [line.rstrip("|").split("|") for line in recorded.read_text().splitlines()]
    output_key = ["pulumi", "stack", "output", "adminKey", "--show-secrets", "--stack", "dev"]
    assert ran == [[*command, "key="] for command in chain[2:]] + [
        [*output_key, "key="], [*restore[1:], "key=the-key"]]
    assert not (tmp_path / "pwned").exists()


def test_a_version_that_was_unset_is_rolled_back_by_removing_it(tmp_path):
    stack = FakeStack()
    del stack.config["convex-selfhost:version"]  # the Pulumi.yaml default runs
    stack.changes = [("replace", "docker:index/volume:Volume", "convex-dev-data")]
    convex = fake_convex()
    up = Upgrader(stack, OLD, tmp_path / "app", tmp_path / "backup",
                  RecordingLog(tmp_path / "backup" / "upgrade.log"), run=None, log_lines=None,
                  client=backup.Client(convex.url, KEY), poll=0.01, allow_downgrade=True)
    assert up.old == releases.DEFAULT_VERSION
    with pytest.raises(UpgradeError) as refused:
        up.execute("in-place")
    chain, _ = rollback_commands(str(refused.value).split("\n")[1])
    assert chain[2] == ["pulumi", "config", "rm", "convex-selfhost:version", "--stack", "dev"]
    assert stack.calls[-1] == ("remove_config", "convex-selfhost:version")
    assert "convex-selfhost:version" not in stack.config


# --- private backups ------------------------------------------------------------------

@pytest.fixture
def loose_umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_backups_are_private_even_with_a_loose_umask_and_an_existing_directory(
        tmp_path, loose_umask):
    backup_dir = tmp_path / "existing"
    backup_dir.mkdir(mode=0o755)
    (backup_dir / "upgrade.log").write_text("an earlier run\n")
    (backup_dir / "upgrade.log").chmod(0o644)
    assert mode(backup_dir) == 0o755
    up, _ = upgrader(tmp_path, FakeStack(), backup_dir=backup_dir)
    with open(os.devnull, "w") as quiet:
        up.log = Log(backup_dir / "upgrade.log", out=quiet)
        up.execute("in-place")
    assert mode(backup_dir) == 0o700
    for name in ("upgrade.log", "snapshot.zip", "snapshot.env.json"):
        assert mode(backup_dir / name) == 0o600, name
    assert (backup_dir / "upgrade.log").read_text().startswith("an earlier run\n")


def test_a_new_backup_directory_and_its_new_parents_are_private(tmp_path, loose_umask):
    Log(tmp_path / "home" / "convex-backups" / "dev" / "stamp" / "upgrade.log")
    for path in ("home", "home/convex-backups", "home/convex-backups/dev",
                 "home/convex-backups/dev/stamp"):
        assert mode(tmp_path / path) == 0o700, path
    assert mode(tmp_path / "home" / "convex-backups" / "dev" / "stamp" / "upgrade.log") == 0o600


def test_a_loose_directory_of_another_user_is_refused(tmp_path, monkeypatch):
    backup_dir = tmp_path / "shared"
    backup_dir.mkdir()
    backup_dir.chmod(0o755)
    monkeypatch.setattr(os, "geteuid", lambda: backup_dir.stat().st_uid + 1)
    with pytest.raises(UpgradeError) as refused:
        Log(backup_dir / "upgrade.log")
    assert str(refused.value) == (f"{backup_dir} is readable by other users and belongs to "
                                  "another user; choose a backup directory of your own.")


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@needs_git
def test_a_backup_directory_in_a_git_checkout_is_refused_unless_ignored(tmp_path):
    checkout = tmp_path / "my-app"
    subprocess.run(["git", "init", "-q", str(checkout)], check=True, timeout=30)
    with pytest.raises(UpgradeError) as refused:
        check_backup_dir(checkout / "dumps" / "dev")
    assert str(refused.value) == (
        f"the backup directory {checkout / 'dumps' / 'dev'} is inside the git checkout "
        f"{checkout} and not git-ignored there; backups hold all your data and must never be "
        "committed. Pass --backup-dir outside it (default: ~/convex-backups) or add it to "
        f"{checkout}/.gitignore.")
    assert not (checkout / "dumps").exists()
    (checkout / ".gitignore").write_text("dumps/\n")
    assert check_backup_dir(checkout / "dumps" / "dev") == checkout / "dumps" / "dev"


@needs_git
def test_the_command_line_refuses_a_backup_directory_in_a_git_checkout(tmp_path, capsys,
                                                                       monkeypatch):
    checkout = tmp_path / "my-app"
    subprocess.run(["git", "init", "-q", str(checkout)], check=True, timeout=30)
    (checkout / "package.json").write_text("{}")
    monkeypatch.setattr(upgrade.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    code, out, err = cli_main(capsys, "run", "--stack", "dev", "--to", NEW, "--app-dir",
                              str(checkout), "--backup-dir", str(checkout / "backup"))
    assert (code, out) == (1, "")
    assert err.startswith(f"error: the backup directory {checkout / 'backup'} is inside the "
                          f"git checkout {checkout} and not git-ignored there")


# --- what a real engine previews for a version change ---------------------------------

def inputs(old: dict, new: dict) -> tuple:
    return SimpleNamespace(inputs=old), SimpleNamespace(inputs=new)


PROJECT_CONFIG = {"convex-selfhost:backendPort": "3210",
                  "convex-selfhost:instanceSecret": "[secret]"}


class PreviewStack(FakeStack):
    """A preview as the real engine (3.274, pulumi-docker 5.2.0) reports a `version` change:
    the images and containers are replaced and the gates updated. It also has the step
    an earlier release's preview had: the dynamic provider of its gates updated because
    its inputs are the project's configuration (the engine reports no diffs for it, only
    its old and new inputs), which a provider of a user's own may still show."""

    def __init__(self, extra=()):
        super().__init__()
        provider = inputs({**PROJECT_CONFIG, "convex-selfhost:version": OLD},
                          {**PROJECT_CONFIG, "convex-selfhost:version": NEW})
        self.steps = [
            ("create-replacement", "docker:index/remoteImage:RemoteImage", "images-backend",
             ["name"], None),
            ("replace", "docker:index/remoteImage:RemoteImage", "images-backend", ["name"], None),
            ("replace", "docker:index/container:Container", "convex-dev-backend-container",
             ["envs", "image"], None),
            ("update", "pulumi:providers:pulumi-python", "default", None, provider),
            ("update", "pulumi:index:Stash", "convex-dev-backend-healthy", None, None),
            ("delete-replaced", "docker:index/container:Container",
             "convex-dev-backend-container", None, None),
            ("same", "docker:index/volume:Volume", "convex-dev-backend-data", None, None),
            ("same", "pulumi:providers:docker", "default_5_2_0", None, None), *extra]

    def preview(self, on_event):
        self.calls.append(("preview",))
        for op, kind, name, diffs, (old, new) in (
                (*step[:4], step[4] or (None, None)) for step in self.steps):
            meta = SimpleNamespace(op=SimpleNamespace(value=op), type=kind, diffs=diffs,
                                   old=old, new=new,
                                   urn=f"urn:pulumi:dev::convex-selfhost::{kind}::{name}")
            on_event(SimpleNamespace(resource_pre_event=SimpleNamespace(metadata=meta)))


def test_a_provider_that_only_receives_configuration_does_not_stop_an_upgrade(tmp_path):
    stack = PreviewStack()
    up, _ = upgrader(tmp_path, stack)
    up.execute("in-place")
    assert stack.calls == [("set_config", "convex-selfhost:version", NEW), ("preview",), ("up",)]
    explained = ("preview: update default (pulumi:providers:pulumi-python) only passes the "
                 "project's configuration to the provider (convex-selfhost:version); nothing it "
                 "manages changes by it")
    assert explained in up.log.messages
    assert explained in (tmp_path / "backup" / "upgrade.log").read_text()


@pytest.mark.parametrize("step,refused", [
    (("replace", "pulumi:providers:docker", "default_5_2_0", ["host"], None),
     "replace default_5_2_0 (pulumi:providers:docker)"),
    (("update", "pulumi:providers:docker", "default_5_2_0", None,
      inputs({"version": "5.2.0"}, {"version": "5.2.0", "host": "ssh://elsewhere"})),
     "update default_5_2_0 (pulumi:providers:docker: host)"),
    (("update", "pulumi:providers:pulumi-python", "default", None, inputs(
        {**PROJECT_CONFIG, "version": "1"}, {**PROJECT_CONFIG, "version": "2"})),
     "update default (pulumi:providers:pulumi-python: version)"),
    (("update", "pulumi:providers:pulumi-python", "other", None, None),
     "update other (pulumi:providers:pulumi-python: changes unknown)"),
    (("delete", "pulumi:providers:random", "default", None, None),
     "delete default (pulumi:providers:random)"),
    (("replace", "docker:index/volume:Volume", "convex-dev-backend-data", ["name"], None),
     "replace convex-dev-backend-data (docker:index/volume:Volume)"),
    (("update", "docker:index/network:Network", "convex-dev-network", ["labels"], None),
     "update convex-dev-network (docker:index/network:Network)"),
    (("replace", "random:index/randomBytes:RandomBytes", "convex-dev-secret", None, None),
     "replace convex-dev-secret (random:index/randomBytes:RandomBytes)"),
])
def test_data_networks_secrets_and_provider_replacements_are_still_refused(tmp_path, step,
                                                                          refused):
    stack = PreviewStack(extra=[step])
    up, _ = upgrader(tmp_path, stack)
    with pytest.raises(UpgradeError) as stopped:
        up.execute("in-place")
    assert str(stopped.value).split("\n")[0] == (
        f"the preview would change more than images and containers: {refused}. Nothing was "
        "applied; settings reset.")
    assert ("up",) not in stack.calls and stack.config["convex-selfhost:version"] == OLD
    assert f"error: the preview would change more than images and containers: {refused}" in \
        (tmp_path / "backup" / "upgrade.log").read_text()


def test_every_step_of_a_run_is_in_the_log_file(tmp_path):
    up, _ = upgrader(tmp_path, FakeStack())
    up.execute("in-place")
    lines = (tmp_path / "backup" / "upgrade.log").read_text()
    for message in up.log.messages:
        for line in message.splitlines():
            assert line in lines
    assert "$ pulumi config set convex-selfhost:version" in lines and "pulumi up done" in lines
    assert "db metadata version up to date at 128" in UPGRADE_LOG and KEY not in lines
    assert json.loads((tmp_path / "backup" / "snapshot.env.json").read_text())


def test_export_import_stops_on_an_unusable_environment_file(tmp_path, monkeypatch):
    stack = FakeStack()
    stack.export_stack = lambda: {"resources": []}
    up, _ = upgrader(tmp_path, stack)
    npx = upgrade_import.npx

    def spoil_then_import(upgrader, *args):
        (up.backup_dir / "snapshot.env.json").write_text("not JSON")
        npx(upgrader, *args)

    monkeypatch.setattr(upgrade_import, "npx", spoil_then_import)
    with pytest.raises(UpgradeError) as failed:
        up.execute("export-import")
    assert str(failed.value).split("\n")[0] == (
        "the saved environment variables are unusable: "
        f"{up.backup_dir / 'snapshot.env.json'} is not readable JSON (JSONDecodeError).")
    assert up.requests == []  # nothing half-set

"""Upgrade a stack's Convex version without losing data: `python -m components.upgrade`.

    python -m components.upgrade plan --from OLD --to NEW [--allow-downgrade]
    python -m components.upgrade run --stack STACK --to NEW [--mode in-place|export-import]
        [--app-dir DIR] [--backup-dir DIR] [--allow-downgrade] [--timeout SECONDS]

`run` follows upstream's self-hosting upgrade guide (self-hosted/advanced/upgrading.md):
back up first (a snapshot export with file storage, through the backend's export API with
the project's backup client, and the environment variables, read through the admin API;
saved in a private directory no git checkout picks up), then either upgrade in place (set
`version`, preview and refuse anything but image and container changes, apply, follow the
backend's log until the migrations are done, check the admin key) or export/import (the
new version on a new data volume, the old one kept, `npx convex import --replace-all`,
environment variables restored). Every failure prints how to roll back. Everything it
runs is logged to `upgrade.log` beside the backup; the admin key never is. Ctrl-C stops
it and what it runs, and says where it stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional, Sequence

from components import backup
from components.upgrade_plan import MODES, PlanError, follow_migrations, plan

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "convex-selfhost"
CHANGEABLE_TYPES = {"docker:index/remoteImage:RemoteImage", "docker:index/container:Container"}
GATE_TYPE = "pulumi-python:dynamic:Resource"
PROVIDER_TYPE_PREFIX = "pulumi:providers:"
SNAPSHOT_FILE = "snapshot.zip"
# Beside the snapshot, named and written as the backup client does, so that its `restore`
# sets the variables again after the import.
ENV_FILE = backup.env_name(SNAPSHOT_FILE)
# Every child process is bounded: a stalled engine or CLI fails the step instead of
# hanging the upgrade.
PULUMI_TIMEOUT = 3600.0
GIT_TIMEOUT = 30.0
DOCKER_LOGS_TIMEOUT = 30.0
ADMIN_API_TIMEOUT = 30.0
STOP_GRACE = 10.0  # seconds between SIGINT and SIGKILL for a stopped command


class UpgradeError(Exception):
    """A step failed; the message says what and how to roll back."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: the running commands were stopped; str() is the line to print."""


class CommandTimeout(UpgradeError):
    pass


def shell_line(*argv) -> str:
    """A command line to copy into a shell: each argument quoted as needed."""
    return " ".join(shlex.quote(str(arg)) for arg in argv)


class Commands:
    """Runs the upgrade's child processes, each with a timeout and in a session of its own,
    so a timeout or an interrupt stops it together with everything it started (npx's node,
    pulumi's plugins, which pulumi puts in process groups of their own, an SSH connection
    of docker)."""

    def __init__(self, grace: float = STOP_GRACE):
        self.grace = grace
        self._running: dict[int, tuple[subprocess.Popen, str]] = {}
        self._cut_short: list[str] = []  # stopped by an exception (Ctrl-C) while they ran
        self._lock = threading.Lock()

    def run(self, command: Sequence[str], timeout: float, *, cwd=None, env=None, stdout=None,
            stderr=None, name: str = "") -> subprocess.CompletedProcess:
        process = subprocess.Popen(list(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                   stdout=stdout, stderr=stderr, text=True, encoding="utf-8",
                                   errors="replace", start_new_session=True)
        name = name or " ".join(str(part) for part in command[:2])
        with self._lock:
            self._running[process.pid] = (process, name)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._stop(process)
            message = f"`{name}` did not finish within {timeout:g}s; stopped it."
            raise CommandTimeout(message) from None
        except BaseException:
            self._stop(process)
            with self._lock:
                self._cut_short.append(name)
            raise
        finally:
            with self._lock:
                self._running.pop(process.pid, None)
        return subprocess.CompletedProcess(list(command), process.returncode, out, err)

    def stop_all(self) -> list[str]:
        """Stop every running command (and its session); the names of all stopped since
        the last call."""
        with self._lock:
            running = list(self._running.values())
            stopped, self._cut_short = self._cut_short, []
        for process, _ in running:
            self._stop(process)
        return stopped + [name for _, name in running]

    def _stop(self, process: subprocess.Popen) -> None:
        # SIGINT first, as Ctrl-C would (pulumi cancels, saves its state and stops its
        # plugins), then SIGKILL for whatever is left of the session.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(self.grace)
        for pid in _session_members(process.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        process.wait()


def _session_members(session: int) -> list[int]:
    """The processes of a session (Linux: /proc); elsewhere its leader's process group."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(session, 0)
            return [-session]  # os.kill(-pgid) signals the group
        return []
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[3]) == session:  # state, ppid, pgrp, session
            members.append(int(entry.name))
    return members


COMMANDS = Commands()


def _pulumi_command(commands: Commands, timeout: float):
    """A pulumi CLI runner for the Automation API whose commands are bounded and stoppable
    (the SDK's own waits for ever and leaves the CLI running on an interrupt)."""
    from pulumi.automation import CommandResult, PulumiCommand
    from pulumi.automation.errors import create_command_error
    from semver import VersionInfo

    class BoundedPulumiCommand(PulumiCommand):
        def __init__(self):
            # Not the parent's: it asks `pulumi version` without a timeout.
            self.command = "pulumi"
            done = commands.run(["pulumi", "version"], 60,
                                env=dict(os.environ, PULUMI_SKIP_UPDATE_CHECK="true"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                self.version = VersionInfo.parse(done.stdout.strip().lstrip("v"))
            except ValueError:
                self.version = None

        def run(self, args, cwd, additional_env, on_output=None, on_error=None):
            if "--non-interactive" not in args:
                args = ["--non-interactive", *args]
            env = {**os.environ, **additional_env, "PULUMI_AUTOMATION_API": "true"}
            verb = next((arg for arg in args if not arg.startswith("-")), "")
            done = commands.run(["pulumi", *args], timeout, cwd=cwd, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                name=f"pulumi {verb}".strip())
            for text, callback in ((done.stdout, on_output), (done.stderr, on_error)):
                for line in text.splitlines() if callback else ():
                    callback(line.rstrip())
            result = CommandResult(stdout=done.stdout.rstrip("\n"),
                                   stderr=done.stderr.rstrip("\n"), code=done.returncode)
            if done.returncode != 0:
                raise create_command_error(result)
            return result

    return BoundedPulumiCommand()


class Log:
    """Progress to the terminal (with elapsed time) and to upgrade.log beside the backup
    (mode 600, in a private directory)."""

    def __init__(self, path: Path, out=sys.stdout):
        self.path, self.out, self.start = path, out, time.monotonic()
        make_private_dir(path.parent)
        os.close(self._open())
        _tighten(path, 0o600)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def __call__(self, message: str) -> None:
        line = f"[{time.monotonic() - self.start:6.1f}s] {message}"
        print(line, file=self.out, flush=True)
        with open(self._open(), "a") as log:
            log.write(f"{datetime.datetime.now(datetime.timezone.utc).isoformat()} {line}\n")


def _tighten(path: Path, mode: int) -> None:
    """Make PATH private (MODE) if this user owns it; refuse one that others can read and
    this user cannot tighten."""
    info = path.stat()
    if stat.S_IMODE(info.st_mode) & 0o077 == 0:
        return
    if info.st_uid != os.geteuid():
        raise UpgradeError(f"{path} is readable by other users and belongs to another user; "
                           "choose a backup directory of your own.")
    os.chmod(path, mode)


def make_private_dir(path: Path) -> None:
    """Create PATH (and missing parents) with mode 700; tighten it if it exists."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            pass
        os.chmod(directory, 0o700)  # mkdir's mode is cut by the umask
    if not path.is_dir():
        raise UpgradeError(f"{path} is not a directory.")
    _tighten(path, 0o700)


def default_backup_dir(stack: str) -> Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path.home() / "convex-backups" / stack / stamp


def check_backup_dir(path: Path, run=None) -> Path:
    """Refuse a backup directory git could pick up: inside this repository, or inside any
    git checkout where it is not ignored (the rule scripts/upgrade.sh applies)."""
    path = path.expanduser().resolve()
    if path == REPO or REPO in path.parents:
        raise UpgradeError(f"{path} is inside the infrastructure repository, where a backup "
                           "could be committed; choose a directory outside it.")
    if shutil.which("git") is None:
        return path
    run = run or COMMANDS.run
    probe = path
    while not probe.is_dir():
        probe = probe.parent
    top = run(["git", "-C", str(probe), "rev-parse", "--show-toplevel"], GIT_TIMEOUT,
              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    checkout = top.stdout.strip() if top.returncode == 0 else ""
    if checkout:
        ignored = run(["git", "-C", checkout, "check-ignore", "-q", "--",
                       str(path / SNAPSHOT_FILE)], GIT_TIMEOUT,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if ignored.returncode != 0:
            raise UpgradeError(
                f"the backup directory {path} is inside the git checkout {checkout} and not "
                "git-ignored there; backups hold all your data and must never be committed. "
                f"Pass --backup-dir outside it (default: ~/convex-backups) or add it to "
                f"{checkout}/.gitignore.")
    return path


def _admin_opener() -> urllib.request.OpenerDirector:
    # Never through a proxy (the key and every environment value would travel to it), and
    # no redirect followed (urllib would send the Authorization header along).
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), backup.NoRedirect())


class Upgrader:
    """One upgrade run. `stack` is a Pulumi Automation API stack (or a stand-in with
    get_all_config/set_config/remove_config/preview/up/outputs); `run(command, timeout,
    **kwargs)` executes a command and returns its CompletedProcess; `log_lines` yields the
    backend's log lines; `client` talks to the backend's export API (components/backup.py)."""

    def __init__(self, stack, new: str, app_dir: Path, backup_dir: Path, log: Log,
                 run: Optional[Callable[..., subprocess.CompletedProcess]] = None,
                 log_lines: Optional[Callable[[str], Sequence[str]]] = None,
                 timeout: float = 1800, allow_downgrade: bool = False, client=None,
                 poll: float = 2.0):
        self.stack, self.new, self.app_dir, self.backup_dir = stack, new, app_dir, backup_dir
        self.log, self.log_lines, self.timeout, self.poll = log, log_lines, timeout, poll
        self.run = run or COMMANDS.run
        self.before: dict[str, Optional[str]] = {}  # settings changed: their earlier values
        self.unprotected: list[str] = []  # URNs this run unprotected in the state
        self.applying = False  # a pulumi up has started
        self.old = self.config("version") or _default_version()
        self.plan = plan(self.old, new, allow_downgrade)
        outputs = stack.outputs()
        url, key = outputs.get("backendUrl"), outputs.get("adminKey")
        if url is None or key is None or isinstance(url.value, dict):
            raise UpgradeError("the stack has no single backendUrl/adminKey output: deploy it "
                               "first (stacks with `deployments` are upgraded by hand).")
        self.url, self.key = url.value, key.value
        self.instance = outputs["instanceName"].value
        self.client = client

    # --- configuration, with what it was before for the rollback ----------------------

    def config(self, key: str) -> Optional[str]:
        item = self.stack.get_all_config().get(f"{NAMESPACE}:{key}")
        return None if item is None else item.value

    def set_config(self, key: str, value: str) -> None:
        if key not in self.before:
            self.before[key] = self.config(key)
        self.log(f"$ {shell_line('pulumi', 'config', 'set', f'{NAMESPACE}:{key}', value)}")
        self.stack.set_config(f"{NAMESPACE}:{key}", _config_value(value))

    def reset_config(self) -> None:
        for key, value in self.before.items():
            if value is None:
                self.stack.remove_config(f"{NAMESPACE}:{key}")
            else:
                self.stack.set_config(f"{NAMESPACE}:{key}", _config_value(value))
        self.log("settings reset: " + ", ".join(self.before))

    def rollback_text(self) -> str:
        stack = self.stack.name
        steps = [shell_line("cd", REPO), ". ./env.sh"]
        # The program protects the data volume again on `up`; going back to the earlier
        # volume replaces that resource, which protection would refuse.
        steps += [shell_line("pulumi", "state", "unprotect", urn, "--yes", "--stack", stack)
                  for urn in self.unprotected]
        for key in self.before or {"version": self.old}:
            value = self.before.get(key, self.old)
            if value is None:
                steps.append(shell_line("pulumi", "config", "rm", f"{NAMESPACE}:{key}",
                                        "--stack", stack))
            else:
                steps.append(shell_line("pulumi", "config", "set", f"{NAMESPACE}:{key}", value,
                                        "--stack", stack))
        steps.append(shell_line("pulumi", "up", "--stack", stack))
        # The key comes from the stack's output at that moment, never from this text.
        key = ('CONVEX_SELF_HOSTED_ADMIN_KEY="$(' + shell_line(
            "pulumi", "stack", "output", "adminKey", "--show-secrets", "--stack", stack) + ')"')
        restore = shell_line("python3", REPO / "components" / "backup.py", "restore", "--url",
                             self.url, "--file", self.backup_dir / SNAPSHOT_FILE, "--app-dir",
                             self.app_dir)
        return (f"To roll back: {' && '.join(steps)}; if the data is damaged, restore the "
                f"backup (and its environment variables): {key} {restore}")

    # --- steps ------------------------------------------------------------------------

    def convex_env(self) -> dict:
        env = dict(os.environ, CONVEX_SELF_HOSTED_URL=self.url,
                   CONVEX_SELF_HOSTED_ADMIN_KEY=self.key)
        env.pop("CONVEX_DEPLOYMENT", None)  # the CLI refuses a cloud and a self-hosted target
        return env

    def npx(self, *args: str) -> None:
        self.log(f"$ {shell_line('npx', 'convex', *args)}  (in {self.app_dir})")
        done = self.run(["npx", "--yes", "convex", *args], self.timeout, cwd=self.app_dir,
                        env=self.convex_env())
        if done.returncode != 0:
            raise UpgradeError(f"`npx convex {args[0]}` failed (exit {done.returncode}).")

    def backup(self) -> Path:
        """A snapshot export with file storage (the backup client's code, as scheduled
        backups) and the environment variables (admin API), into a private directory."""
        self.log(f"backup to {self.backup_dir}")
        make_private_dir(self.backup_dir)
        snapshot = self.backup_dir / SNAPSHOT_FILE
        client = self.client or backup.Client(self.url, self.key, run_timeout=self.timeout)
        try:
            self.log("requesting a snapshot export (with file storage) from the backend")
            export = backup.wait_for_export(client, self.timeout, self.poll)
            size = backup.download(client, export["_id"], str(self.backup_dir), SNAPSHOT_FILE)
            self.log(f"saved {snapshot.name} ({size} bytes, export {export['_id']})")
            variables = client.environment_variables()  # what `npx convex env list` reads
        except backup.BackupError as error:
            reason = backup.redact(str(error), self.key)
            raise UpgradeError(f"the backup failed: {reason}. Nothing was changed.") from None
        finally:
            client.close()
        backup.write_private(self.backup_dir / ENV_FILE, json.dumps(variables, indent=2) + "\n",
                             backup.PARTIAL + ENV_FILE)
        self.log(f"saved {len(variables)} environment variable(s) to {ENV_FILE}"
                 + (": " + ", ".join(v["name"] for v in variables) if variables else ""))
        return snapshot

    def preview_is_safe(self) -> list[str]:
        """Resources the preview would change beyond images, containers, health gates and
        provider configuration."""
        events = []
        self.stack.preview(on_event=events.append)
        unsafe = []
        for event in events:
            pre = getattr(event, "resource_pre_event", None)
            if pre is None or pre.metadata.op.value in ("same", "read"):
                continue
            kind, op = pre.metadata.type, pre.metadata.op.value
            name = pre.metadata.urn.rsplit("::", 1)[-1]
            if kind in CHANGEABLE_TYPES or (kind == GATE_TYPE and op == "update"):
                continue
            changed = _changed_inputs(pre.metadata)
            if kind.startswith(PROVIDER_TYPE_PREFIX) and op == "update" and changed and all(
                    key.startswith(f"{NAMESPACE}:") for key in changed):
                # The dynamic provider of the health gates receives the project's
                # configuration as its inputs, so a new `version` updates it. That changes
                # no resource by itself: whatever it would change on one is that resource's
                # own step, judged here too.
                self.log(f"preview: update {name} ({kind}) only passes the project's "
                         f"configuration to the provider ({', '.join(changed)}); nothing it "
                         "manages changes by it")
                continue
            if kind.startswith(PROVIDER_TYPE_PREFIX) and op == "update":
                unsafe.append(f"{op} {name} ({kind}: "
                              f"{', '.join(changed) if changed else 'changes unknown'})")
                continue
            unsafe.append(f"{op} {name} ({kind})")
        return unsafe

    def in_place(self) -> None:
        self.set_config("version", self.new)
        unsafe = self.preview_is_safe()
        if unsafe:
            self.reset_config()
            raise UpgradeError("the preview would change more than images and containers: "
                               + "; ".join(unsafe) + ". Nothing was applied; version reset.")
        self.log("preview: only images and containers change; applying")
        self.up()
        self.log(f"waiting for migrations (target database version "
                 f"{self.plan.target_database_version or 'unknown'})")
        result = follow_migrations(self.log_lines(f"{self.instance}-backend"),
                                   self.plan.target_database_version, self.timeout,
                                   progress=self.log)
        if not result.done:
            raise UpgradeError(f"migrations did not complete: {result.reason}.")
        self.log(f"migrations done: {result.reason}")

    def up(self) -> None:
        self.log(f"$ pulumi up --stack {shell_line(self.stack.name)}")
        self.applying = True
        self.stack.up()  # its output is not shown: the log lines follow
        self.log("pulumi up done")

    def admin_api(self, path: str, body: Optional[dict] = None) -> int:
        """The HTTP status of an admin-key request to the backend: a POST of `body` as
        JSON, or a GET. Direct (no proxy); a redirect is refused, not followed."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data, headers={
            "Authorization": f"Convex {self.key}", "Content-Type": "application/json"})
        try:
            with _admin_opener().open(request, timeout=ADMIN_API_TIMEOUT) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError as error:
            raise UpgradeError(f"the backend does not answer: {error}") from None

    def check_admin_key(self) -> None:
        status = self.admin_api("/api/check_admin_key")
        if status != 200:
            raise UpgradeError(f"the backend refused the admin key (HTTP {status}).")
        self.log("the backend accepts the admin key")

    def set_env(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Set environment variables in one request, as `npx convex env set` does, but with
        the values in the request body only: never on a command line or in the log."""
        if not pairs:
            return
        self.log(f"setting {len(pairs)} environment variable(s): "
                 + ", ".join(name for name, _ in pairs))
        status = self.admin_api("/api/update_environment_variables", {
            "changes": [{"name": name, "value": value} for name, value in pairs]})
        if status != 200:
            raise UpgradeError(f"the backend refused the environment variables (HTTP {status}).")

    def execute(self, mode: str) -> None:
        try:
            self.log(self.plan.describe(mode))
            snapshot = self.backup()
        except UpgradeError as error:
            self.log(f"error: {error}")
            raise
        except KeyboardInterrupt:
            raise self.interrupted() from None
        try:
            if mode == "in-place":
                self.in_place()
            else:
                from components.upgrade_import import export_import

                export_import(self, snapshot)
            self.check_admin_key()
        except UpgradeError as error:
            message = f"{error}\n{self.rollback_text()}"
            self.log(f"error: {message}")
            raise UpgradeError(message) from None
        except _pulumi_errors() as error:
            message = f"pulumi failed: {_first_line(error)}\n{self.rollback_text()}"
            self.log(f"error: {message}")
            raise UpgradeError(message) from None
        except KeyboardInterrupt:
            raise self.interrupted() from None
        self.log(f"upgraded {self.stack.name} to {self.new[:12]}; backup kept in "
                 f"{self.backup_dir}")

    def interrupted(self) -> Interrupted:
        """Stop the running commands; the one line that says where the upgrade stopped."""
        what = stop_commands()
        if not self.before:
            message = f"interrupted ({what}); nothing was changed."
        else:
            state = ("the stack may be half-upgraded" if self.applying
                     else "nothing was applied")
            message = f"interrupted ({what}); {state}. {self.rollback_text()}"
        self.log(message)
        return Interrupted(message)


@contextlib.contextmanager
def _interrupts_ignored():
    """A second Ctrl-C while the children are being stopped must not cut that short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_commands() -> str:
    """Stop every running command (after an interrupt); says which."""
    with _interrupts_ignored():
        stopped = COMMANDS.stop_all()
    return ("stopped " + ", ".join(f"`{name}`" for name in stopped)) if stopped else \
        "no command was running"


def _changed_inputs(metadata) -> list[str]:
    """The names (never the values) of the inputs a step changes, as the engine reports
    them: its old and new inputs, else its list of diffs."""
    olds = getattr(getattr(metadata, "old", None), "inputs", None)
    news = getattr(getattr(metadata, "new", None), "inputs", None)
    if isinstance(olds, dict) and isinstance(news, dict):
        return sorted(key for key in olds.keys() | news.keys() if olds.get(key) != news.get(key))
    return sorted(getattr(metadata, "diffs", None) or [])


def _default_version() -> str:
    from components.releases import DEFAULT_VERSION

    return DEFAULT_VERSION


def _pulumi_errors() -> tuple:
    from pulumi.automation import errors

    return (errors.CommandError,)


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    found = next((line[line.index("error:"):] for line in lines if "error:" in line), None)
    return (found or (lines[0] if lines else type(error).__name__))[:300]


def _config_value(value: str):
    from pulumi import automation as auto

    return auto.ConfigValue(value)


def docker_log_lines(container: str, docker_host: str = "", poll: float = 2.0,
                     sleep=time.sleep, run=None, call_timeout: Optional[float] = None,
                     progress: Callable[[str], None] = lambda _line: None) -> Sequence[str]:
    """New lines of `docker logs CONTAINER` on the stack's engine, polled; yields "" between
    polls. A `docker logs` that does not answer within `call_timeout` is stopped and
    retried, so the caller's own deadline still counts."""
    run = run or COMMANDS.run
    call_timeout = DOCKER_LOGS_TIMEOUT if call_timeout is None else call_timeout
    host = ["--host", docker_host] if docker_host else []
    seen = 0
    while True:
        # One pipe for both streams: the CLI writes them in the container's order, so the
        # lines only grow at the end between polls (stdout + stderr would not).
        try:
            done = run(["docker", *host, "logs", container], call_timeout,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, name="docker logs")
        except CommandTimeout:
            progress(f"`docker logs {container}` did not answer within {call_timeout:g}s; "
                     "retrying")
        else:
            lines = done.stdout.splitlines()
            yield from lines[seen:]
            seen = len(lines)
        yield ""
        sleep(poll)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m components.upgrade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("plan", help="print what an upgrade crosses")
    p.add_argument("--from", dest="old", required=True)
    p.add_argument("--to", dest="new", required=True)
    p.add_argument("--mode", choices=MODES, default="in-place")
    p.add_argument("--allow-downgrade", action="store_true")
    r = commands.add_parser("run", help="back up, then upgrade a stack")
    r.add_argument("--stack", required=True)
    r.add_argument("--to", dest="new", required=True)
    r.add_argument("--mode", choices=MODES, default="in-place")
    r.add_argument("--app-dir", default=".")
    r.add_argument("--backup-dir")
    r.add_argument("--timeout", type=float, default=1800)
    r.add_argument("--allow-downgrade", action="store_true")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stops as Ctrl-C does
    try:
        if args.command == "plan":
            print(plan(args.old, args.new, args.allow_downgrade).describe(args.mode))
            return 0
        return _run(args, list(argv) if argv is not None else sys.argv[1:])
    except (PlanError, UpgradeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Interrupted as stopped:
        print(f"error: {stopped}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"error: interrupted ({stop_commands()}); nothing was changed.", file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(args, argv: Sequence[str]) -> int:
    tools = ("pulumi", "docker") + (("node", "npx") if args.mode == "export-import" else ())
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        raise UpgradeError("missing tools: " + ", ".join(missing) + " (install them first).")
    app_dir = Path(args.app_dir).resolve()
    if not (app_dir / "package.json").is_file():
        raise UpgradeError(f"{app_dir} has no package.json; pass --app-dir with your Convex "
                           "app (where `npx convex deploy` runs).")
    backup_dir = check_backup_dir(Path(args.backup_dir) if args.backup_dir
                                  else default_backup_dir(args.stack))
    log = Log(backup_dir / "upgrade.log")
    log(f"$ {shell_line('python', '-m', 'components.upgrade', *argv)}")
    try:
        upgrader = _upgrader(args, app_dir, backup_dir, log)
    except (PlanError, UpgradeError) as error:
        log(f"error: {error}")
        raise
    except KeyboardInterrupt:
        message = f"interrupted ({stop_commands()}); nothing was changed."
        log(message)
        raise Interrupted(message) from None
    upgrader.execute(args.mode)
    return 0


def _upgrader(args, app_dir: Path, backup_dir: Path, log: Log) -> Upgrader:
    from pulumi import automation as auto

    try:
        stack = auto.select_stack(args.stack, work_dir=str(REPO), opts=auto.LocalWorkspaceOptions(
            pulumi_command=_pulumi_command(COMMANDS, PULUMI_TIMEOUT)))
    except _pulumi_errors() as error:
        raise UpgradeError(f"cannot select stack {args.stack!r}: {_first_line(error)} (run "
                           "`. ./env.sh` first so the state backend is the stack's).") from None
    # The backend runs on the stack's engine (docker:host), which may be a remote one.
    config = stack.get_all_config()
    docker_host = config["docker:host"].value if "docker:host" in config else ""
    return Upgrader(stack, args.new, app_dir, backup_dir, log, run=COMMANDS.run,
                    log_lines=lambda container: docker_log_lines(container, docker_host,
                                                                 progress=log),
                    timeout=args.timeout, allow_downgrade=args.allow_downgrade)


if __name__ == "__main__":
    sys.exit(main())

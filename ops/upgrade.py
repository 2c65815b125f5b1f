"""Upgrade a stack's Convex version without losing data: `python -m ops.upgrade`.

    python -m ops.upgrade plan --from OLD --to NEW [--allow-downgrade]
    python -m ops.upgrade run --stack STACK --to NEW [--mode in-place|export-import]
        [--app-dir DIR] [--backup-dir DIR] [--allow-downgrade] [--timeout SECONDS]
        [--binary-url URL | --binary FILE] [--binary-sha256 SHA256]   (target: host)

`run` follows upstream's self-hosting upgrade guide (self-hosted/advanced/upgrading.md):
back up first (a snapshot export with file storage and the environment variables, through
the backend's APIs, into a private directory no git checkout picks up), then upgrade in
place (set `version`, preview and refuse all but image and container changes, apply,
follow the backend's log until the migrations are done, check the admin key) or by
export/import (ops/upgrade_import.py). On the host target (ops/upgrade_host.py) only in
place, with the new binary, following the unit's journal over SSH. Every failure prints
how to roll back. All it runs is logged to `upgrade.log` beside the backup (never the
admin key). Ctrl-C stops it and what it runs, and says where it stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional, Sequence

from components.host.unit import unit_name_for
from ops import backup
from ops.upgrade_host import CHANGEABLE_TYPES as HOST_TYPES
from ops.upgrade_host import NewBinary, check_target, host_journal, new_binary
from ops.upgrade_local import (
    COMMANDS,
    REPO,
    SNAPSHOT_FILE,
    Interrupted,
    Log,
    UpgradeError,
    bounded_pulumi_command,
    check_backup_dir,
    config_value,
    default_backup_dir,
    docker_log_lines,
    first_error_line,
    make_private_dir,
    pulumi_errors,
    shell_line,
    stop_commands,
)
from ops.upgrade_plan import (
    MODES,
    NAMESPACE,
    PlanError,
    follow_migrations,
    judge_preview,
    plan,
)

# Beside the snapshot, named and written as the backup client does, so that its `restore`
# sets the variables again after the import.
ENV_FILE = backup.env_name(SNAPSHOT_FILE)
PULUMI_TIMEOUT = 3600.0  # one pulumi command; `up` waits for the health gates within it
ADMIN_API_TIMEOUT = 30.0


def _admin_opener() -> urllib.request.OpenerDirector:
    # Never through a proxy (the key and every environment value would travel to it), and
    # no redirect followed (urllib would send the Authorization header along).
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), backup.NoRedirect())


class Upgrader:
    """One upgrade run. `stack` is a Pulumi Automation API stack (or a stand-in with
    get_all_config/set_config/remove_config/preview/up/outputs); `run(command, timeout,
    **kwargs)` executes a command and returns its CompletedProcess; `log_lines` yields the
    backend's log lines; `client` talks to the backend's export API (ops/backup.py)."""

    def __init__(self, stack, new: str, app_dir: Path, backup_dir: Path, log: Log,
                 run: Optional[Callable[..., subprocess.CompletedProcess]] = None,
                 log_lines: Optional[Callable[[str], Sequence[str]]] = None,
                 timeout: float = 1800, allow_downgrade: bool = False, client=None,
                 poll: float = 2.0, binary: Optional[NewBinary] = None):
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
        self.binary, self.host = binary, self.config("target") == "host"  # host: new binary
        # What log_lines follows: the backend's container, or on a host its unit.
        self.log_source = unit_name_for(self.instance) if self.host else f"{self.instance}-backend"

    # --- configuration, with what it was before for the rollback ----------------------

    def config(self, key: str) -> Optional[str]:
        item = self.stack.get_all_config().get(f"{NAMESPACE}:{key}")
        return None if item is None else item.value

    def set_config(self, key: str, value: Optional[str]) -> None:
        """Set a setting (None: remove it), remembering its earlier value."""
        if key not in self.before:
            self.before[key] = self.config(key)
        if value is None:
            if self.before[key] is not None:
                self.log(f"$ {shell_line('pulumi', 'config', 'rm', f'{NAMESPACE}:{key}')}")
                self.stack.remove_config(f"{NAMESPACE}:{key}")
            return
        self.log(f"$ {shell_line('pulumi', 'config', 'set', f'{NAMESPACE}:{key}', value)}")
        self.stack.set_config(f"{NAMESPACE}:{key}", config_value(value))

    def reset_config(self) -> None:
        for key, value in self.before.items():
            if value is None:
                self.stack.remove_config(f"{NAMESPACE}:{key}")
            else:
                self.stack.set_config(f"{NAMESPACE}:{key}", config_value(value))
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
        restore = shell_line("python3", REPO / "ops" / "backup.py", "restore", "--url",
                             self.url, "--file", self.backup_dir / SNAPSHOT_FILE, "--app-dir",
                             self.app_dir)
        return (f"To roll back: {' && '.join(steps)}; if the data is damaged, restore the "
                f"backup (and its environment variables): {key} {restore}")

    # --- steps ------------------------------------------------------------------------

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
        provider configuration (components/upgrade_plan.judge_preview)."""
        events = []
        self.stack.preview(on_event=events.append)
        refused, notes = (judge_preview(events, HOST_TYPES, refuse_deletes=True) if self.host
                          else judge_preview(events))
        for note in notes:
            self.log(f"preview: {note}")
        return refused

    def in_place(self) -> None:
        self.set_config("version", self.new)
        for key, value in self.binary.config() if self.binary else ():
            self.set_config(key, value)
        what = "the binary's stage, install and health steps" if self.host else \
            "images and containers"
        unsafe = self.preview_is_safe()
        if unsafe:
            self.reset_config()
            raise UpgradeError(f"the preview would change more than {what}: "
                               + "; ".join(unsafe) + ". Nothing was applied; settings reset.")
        self.log(f"preview: only {what} change; applying")
        self.up()
        self.log(f"waiting for migrations (target database version "
                 f"{self.plan.target_database_version or 'unknown'})")
        result = follow_migrations(self.log_lines(self.log_source),
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

    def execute(self, mode: str) -> None:
        check_target(self.host, self.binary, mode)
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
                from ops.upgrade_import import export_import

                export_import(self, snapshot)
            self.check_admin_key()
        except UpgradeError as error:
            message = f"{error}\n{self.rollback_text()}"
            self.log(f"error: {message}")
            raise UpgradeError(message) from None
        except pulumi_errors() as error:
            message = f"pulumi failed: {first_error_line(error)}\n{self.rollback_text()}"
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


def _default_version() -> str:
    from components.releases import DEFAULT_VERSION

    return DEFAULT_VERSION


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops.upgrade", description=__doc__,
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
    r.add_argument("--binary-url", help="target host: the new release's binary (zip) URL")
    r.add_argument("--binary", help="target host: the new release's binary, a local file")
    r.add_argument("--binary-sha256", help="target host: the binary's SHA-256")
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
    binary = new_binary(args.binary_url, args.binary, args.binary_sha256)
    tools = ("pulumi", "ssh" if binary else "docker") + (
        ("node", "npx") if args.mode == "export-import" else ())
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        raise UpgradeError("missing tools: " + ", ".join(missing) + " (install them first).")
    app_dir = Path(args.app_dir).resolve()
    # Only export-import runs npx in the app; in place needs no app directory.
    if args.mode == "export-import" and not (app_dir / "package.json").is_file():
        raise UpgradeError(f"{app_dir} has no package.json; pass --app-dir with your Convex "
                           "app (where `npx convex deploy` runs).")
    backup_dir = check_backup_dir(Path(args.backup_dir) if args.backup_dir
                                  else default_backup_dir(args.stack))
    log = Log(backup_dir / "upgrade.log")
    log(f"$ {shell_line('python', '-m', 'ops.upgrade', *argv)}")
    with contextlib.ExitStack() as resources:
        try:
            upgrader = _upgrader(args, app_dir, backup_dir, log, binary, resources)
        except (PlanError, UpgradeError) as error:
            log(f"error: {error}")
            raise
        except KeyboardInterrupt:
            message = f"interrupted ({stop_commands()}); nothing was changed."
            log(message)
            raise Interrupted(message) from None
        upgrader.execute(args.mode)
    return 0


def _upgrader(args, app_dir: Path, backup_dir: Path, log: Log,
              binary: Optional[NewBinary] = None,
              resources: Optional[contextlib.ExitStack] = None) -> Upgrader:
    from pulumi import automation as auto

    try:
        stack = auto.select_stack(args.stack, work_dir=str(REPO), opts=auto.LocalWorkspaceOptions(
            pulumi_command=bounded_pulumi_command(COMMANDS, PULUMI_TIMEOUT)))
    except pulumi_errors() as error:
        raise UpgradeError(f"cannot select stack {args.stack!r}: {first_error_line(error)} (run "
                           "`. ./env.sh` first so the state backend is the stack's).") from None
    config = stack.get_all_config()
    if config.get(f"{NAMESPACE}:target") is not None and \
            config[f"{NAMESPACE}:target"].value == "host":
        follow = host_journal(args.stack, config, resources or contextlib.ExitStack(), log)
        return Upgrader(stack, args.new, app_dir, backup_dir, log, run=COMMANDS.run,
                        log_lines=follow, timeout=args.timeout,
                        allow_downgrade=args.allow_downgrade, binary=binary)
    # The backend runs on the stack's engine (docker:host), which may be a remote one.
    docker_host = config["docker:host"].value if "docker:host" in config else ""
    return Upgrader(stack, args.new, app_dir, backup_dir, log, run=COMMANDS.run,
                    log_lines=lambda container: docker_log_lines(container, docker_host,
                                                                 progress=log),
                    timeout=args.timeout, allow_downgrade=args.allow_downgrade, binary=binary)


if __name__ == "__main__":
    sys.exit(main())

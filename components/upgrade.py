"""Upgrade a stack's Convex version without losing data: `python -m components.upgrade`.

    python -m components.upgrade plan --from OLD --to NEW [--allow-downgrade]
    python -m components.upgrade run --stack STACK --to NEW [--mode in-place|export-import]
        [--app-dir DIR] [--backup-dir DIR] [--allow-downgrade] [--timeout SECONDS]

`run` follows upstream's self-hosting upgrade guide (self-hosted/advanced/upgrading.md):
back up first (`npx convex export --include-file-storage` and `npx convex env list`, in
the app directory, saved outside this repository), then either upgrade in place (set
`version`, preview and refuse anything but image and container changes, apply, follow the
backend's log until the migrations are done, check the admin key) or export/import (the
new version on a new data volume, the old one kept, `npx convex import --replace-all`,
environment variables restored). Every failure prints how to roll back. Everything it
runs is logged to `upgrade.log` beside the backup; the admin key never is.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from components.upgrade_plan import MODES, PlanError, follow_migrations, plan

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "convex-selfhost"
CHANGEABLE_TYPES = {"docker:index/remoteImage:RemoteImage", "docker:index/container:Container"}
GATE_TYPE = "pulumi-python:dynamic:Resource"


class UpgradeError(Exception):
    """A step failed; the message says what and how to roll back."""


class Log:
    """Progress to the terminal (with elapsed time) and to upgrade.log beside the backup."""

    def __init__(self, path: Path, out=sys.stdout):
        self.path, self.out, self.start = path, out, time.monotonic()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    def __call__(self, message: str) -> None:
        line = f"[{time.monotonic() - self.start:6.1f}s] {message}"
        print(line, file=self.out, flush=True)
        with self.path.open("a") as log:
            log.write(f"{datetime.datetime.now(datetime.timezone.utc).isoformat()} {line}\n")


def default_backup_dir(stack: str) -> Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path.home() / "convex-backups" / stack / stamp


def check_backup_dir(path: Path) -> Path:
    path = path.expanduser().resolve()
    if path == REPO or REPO in path.parents:
        raise UpgradeError(f"{path} is inside the infrastructure repository, where a backup "
                           "could be committed; choose a directory outside it.")
    return path


class Upgrader:
    """One upgrade run. `stack` is a Pulumi Automation API stack (or a stand-in with
    get_config/set_config/preview/up/outputs); `run` executes a command and returns its
    CompletedProcess; `log_lines` yields the backend's log lines."""

    def __init__(self, stack, new: str, app_dir: Path, backup_dir: Path, log: Log,
                 run: Callable[..., subprocess.CompletedProcess],
                 log_lines: Callable[[str], Sequence[str]], timeout: float = 1800,
                 allow_downgrade: bool = False):
        self.stack, self.new, self.app_dir, self.backup_dir = stack, new, app_dir, backup_dir
        self.log, self.run, self.log_lines, self.timeout = log, run, log_lines, timeout
        self.old = stack.get_config(f"{NAMESPACE}:version").value
        self.plan = plan(self.old, new, allow_downgrade)
        outputs = stack.outputs()
        url, key = outputs.get("backendUrl"), outputs.get("adminKey")
        if url is None or key is None or isinstance(url.value, dict):
            raise UpgradeError("the stack has no single backendUrl/adminKey output: deploy it "
                               "first (stacks with `deployments` are upgraded by hand).")
        self.url, self.key = url.value, key.value
        self.instance = outputs["instanceName"].value

    def convex_env(self) -> dict:
        return dict(os.environ, CONVEX_SELF_HOSTED_URL=self.url,
                    CONVEX_SELF_HOSTED_ADMIN_KEY=self.key)

    def npx(self, *args: str, stdout=None) -> None:
        self.log(f"$ npx convex {' '.join(args)}  (in {self.app_dir})")
        done = self.run(["npx", "--yes", "convex", *args], cwd=self.app_dir,
                        env=self.convex_env(), stdout=stdout)
        if done.returncode != 0:
            raise UpgradeError(f"`npx convex {args[0]}` failed (exit {done.returncode}).")

    def backup(self) -> Path:
        self.log(f"backup to {self.backup_dir}")
        self.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        snapshot = self.backup_dir / "snapshot.zip"
        self.npx("export", "--path", str(snapshot), "--include-file-storage")
        env_file = self.backup_dir / "env.txt"
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            self.npx("env", "list", stdout=handle)
        return snapshot

    def rollback_text(self) -> str:
        return (f"To roll back: pulumi config set {NAMESPACE}:version {self.old} --stack "
                f"{self.stack.name} && pulumi up --stack {self.stack.name}; if the data is "
                f"damaged, restore the backup: python -m components.backup restore --url "
                f"{self.url} --file {self.backup_dir / 'snapshot.zip'} --app-dir {self.app_dir}")

    def preview_is_safe(self) -> list[str]:
        """Resources the preview would change beyond images, containers and health gates."""
        events = []
        self.stack.preview(on_event=events.append)
        unsafe = []
        for event in events:
            pre = getattr(event, "resource_pre_event", None)
            if pre is None or pre.metadata.op.value in ("same", "read"):
                continue
            kind, op = pre.metadata.type, pre.metadata.op.value
            if kind in CHANGEABLE_TYPES or (kind == GATE_TYPE and op == "update"):
                continue
            unsafe.append(f"{op} {pre.metadata.urn.rsplit('::', 1)[-1]} ({kind})")
        return unsafe

    def in_place(self) -> None:
        self.stack.set_config(f"{NAMESPACE}:version", _config_value(self.new))
        unsafe = self.preview_is_safe()
        if unsafe:
            self.stack.set_config(f"{NAMESPACE}:version", _config_value(self.old))
            raise UpgradeError("the preview would change more than images and containers: "
                               + "; ".join(unsafe) + ". Nothing was applied; version reset.")
        self.log("preview: only images and containers change; applying")
        self.stack.up()  # its output is not shown: the log lines follow
        self.log(f"waiting for migrations (target database version "
                 f"{self.plan.target_database_version or 'unknown'})")
        result = follow_migrations(self.log_lines(f"{self.instance}-backend"),
                                   self.plan.target_database_version, self.timeout,
                                   progress=self.log)
        if not result.done:
            raise UpgradeError(f"migrations did not complete: {result.reason}.")
        self.log(f"migrations done: {result.reason}")

    def admin_api(self, path: str, body: Optional[dict] = None) -> int:
        """The HTTP status of an admin-key request to the backend: a POST of `body` as
        JSON, or a GET. A redirect is refused, not followed: it would carry the key away."""
        import urllib.error
        import urllib.request

        from components.backup import NoRedirect

        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data, headers={
            "Authorization": f"Convex {self.key}", "Content-Type": "application/json"})
        try:
            with urllib.request.build_opener(NoRedirect()).open(request, timeout=30) as response:
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
        self.log(self.plan.describe(mode))
        snapshot = self.backup()
        try:
            if mode == "in-place":
                self.in_place()
            else:
                from components.upgrade_import import export_import

                export_import(self, snapshot)
            self.check_admin_key()
        except UpgradeError as error:
            raise UpgradeError(f"{error}\n{self.rollback_text()}") from None
        except _pulumi_errors() as error:
            raise UpgradeError(f"pulumi failed: {_first_line(error)}\n"
                               f"{self.rollback_text()}") from None
        self.log(f"upgraded {self.stack.name} to {self.new[:12]}; backup kept in "
                 f"{self.backup_dir}")


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
                     sleep=time.sleep) -> Sequence[str]:
    """New lines of `docker logs CONTAINER` on the stack's engine, polled; yields "" between
    polls."""
    host = ["--host", docker_host] if docker_host else []
    seen = 0
    while True:
        # One pipe for both streams: the CLI writes them in the container's order, so the
        # lines only grow at the end between polls (stdout + stderr would not).
        done = subprocess.run(["docker", *host, "logs", container], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
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
    try:
        if args.command == "plan":
            print(plan(args.old, args.new, args.allow_downgrade).describe(args.mode))
            return 0
        return _run(args)
    except (PlanError, UpgradeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run(args) -> int:
    missing = [tool for tool in ("pulumi", "node", "npx", "docker") if not shutil.which(tool)]
    if missing:
        raise UpgradeError("missing tools: " + ", ".join(missing) + " (install them first).")
    app_dir = Path(args.app_dir).resolve()
    if not (app_dir / "package.json").is_file():
        raise UpgradeError(f"{app_dir} has no package.json; pass --app-dir with your Convex "
                           "app (where `npx convex deploy` runs).")
    backup_dir = check_backup_dir(Path(args.backup_dir) if args.backup_dir
                                  else default_backup_dir(args.stack))
    from pulumi import automation as auto

    try:
        stack = auto.select_stack(args.stack, work_dir=str(REPO))
    except _pulumi_errors() as error:
        raise UpgradeError(f"cannot select stack {args.stack!r}: {_first_line(error)} (run "
                           "`. ./env.sh` first so the state backend is the stack's).") from None
    # The backend runs on the stack's engine (docker:host), which may be a remote one.
    config = stack.get_all_config()
    docker_host = config["docker:host"].value if "docker:host" in config else ""
    upgrader = Upgrader(stack, args.new, app_dir, backup_dir, Log(backup_dir / "upgrade.log"),
                        run=lambda cmd, **kw: subprocess.run(cmd, **kw),
                        log_lines=lambda container: docker_log_lines(container, docker_host),
                        timeout=args.timeout,
                        allow_downgrade=args.allow_downgrade)
    upgrader.execute(args.mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())

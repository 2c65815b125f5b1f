"""The upgrade's side on this machine: its child processes and its private backup files.

Every command an upgrade runs is bounded by a timeout and runs in a session of its own, so
a timeout, Ctrl-C or SIGTERM stops it with everything it started. The backup directory and
upgrade.log are private (700/600, whatever the umask) and never where git could commit
them. ops/upgrade.py orchestrates; nothing here knows about Convex.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT_FILE = "snapshot.zip"
GIT_TIMEOUT = 30.0
DOCKER_LOGS_TIMEOUT = 30.0
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


def bounded_pulumi_command(commands: Commands, timeout: float):
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


def pulumi_errors() -> tuple:
    from pulumi.automation import errors

    return (errors.CommandError,)


def first_error_line(error: Exception) -> str:
    """The line of a failed pulumi command that says what failed."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    found = next((line[line.index("error:"):] for line in lines if "error:" in line), None)
    return (found or (lines[0] if lines else type(error).__name__))[:300]


def config_value(value: str):
    from pulumi import automation as auto

    return auto.ConfigValue(value)


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


def docker_log_lines(container: str, docker_host: str = "", poll: float = 2.0,
                     sleep=time.sleep, run=None, call_timeout: Optional[float] = None,
                     progress: Callable[[str], None] = lambda _line: None) -> Sequence[str]:
    """New lines of `docker logs CONTAINER` on the stack's engine (polled_lines)."""
    host = ["--host", docker_host] if docker_host else []
    return polled_lines(["docker", *host, "logs", container], "docker logs",
                        f"`docker logs {container}`", poll, sleep, run, call_timeout, progress)


def polled_lines(argv: Sequence[str], name: str, shown: str, poll: float = 2.0,
                 sleep=time.sleep, run=None, call_timeout: Optional[float] = None,
                 progress: Callable[[str], None] = lambda _line: None) -> Sequence[str]:
    """New lines of a command that prints a whole log each time (`docker logs`, `journalctl`
    over SSH), polled; yields "" between polls. A call that does not answer within
    `call_timeout` is stopped and retried, so the caller's own deadline still counts."""
    run = run or COMMANDS.run
    call_timeout = DOCKER_LOGS_TIMEOUT if call_timeout is None else call_timeout
    seen = 0
    while True:
        # One pipe for both streams: the CLI writes them in the log's order, so the
        # lines only grow at the end between polls (stdout + stderr would not).
        try:
            done = run(list(argv), call_timeout, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, name=name)
        except CommandTimeout:
            progress(f"{shown} did not answer within {call_timeout:g}s; retrying")
        else:
            lines = done.stdout.splitlines()
            if done.returncode != 0:  # its output is an error message, not the log
                last = lines[-1].strip()[:200] if lines else "no output"
                progress(f"{shown} failed (exit {done.returncode}: {last}); retrying")
            else:
                yield from lines[seen:]
                seen = len(lines)
        yield ""
        sleep(poll)


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

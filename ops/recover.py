"""Recover a stack after an interrupted `pulumi up` (a killed process, a lost SSH session,
a reboot), before the next one: `./up.sh` runs this first.

An interrupted run leaves two things behind:
- a lock: with a file state backend, `pulumi up` refuses to start while the lock file of
  the dead process exists. A lock written on this machine by a process that no longer
  runs is cleared (`pulumi cancel`); a live or foreign one is left alone and named.
- pending creates: resources whose create was under way. Docker may have made the object
  (the next run then fails with "name ... is already in use" or "already exists") or not.
  Each Docker container, volume or network that exists under the recorded name is
  adopted into the state (then read back with a targeted refresh), never deleted and
  recreated: a volume may already hold data. The rest (the object was never made, or
  a resource that lives only in the state: random values, health gates, a network's
  command, whose create adopts a network that exists) is cleared, and the next `pulumi
  up` creates it.

    python -m ops.recover <stack>     exit 0: nothing to do or recovered; 1: not

Every command is bounded in time; nothing secret is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from ops.commands import Runner, last_line, run_command

PULUMI_TIMEOUT = 600
DOCKER_TIMEOUT = 30
PROJECT = "convex-selfhost"
DOCKER_KINDS = {"docker:index/container:Container": "container",
                "docker:index/volume:Volume": "volume",
                "docker:index/network:Network": "network"}



class RecoverError(Exception):
    """The stack cannot be recovered automatically; the message says what to do."""




# --- locks ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Lock:
    path: Path
    pid: int
    hostname: str


def lock_dir(backend_url: str, stack: str) -> Optional[Path]:
    """Where a file backend keeps the stack's locks (None for other backends)."""
    if not backend_url.startswith("file://"):
        return None
    root = urllib.parse.urlsplit(backend_url).path
    parts = stack.split("/")
    if len(parts) == 1:
        org, project, name = "organization", PROJECT, parts[0]
    elif len(parts) == 2:
        org, project, name = parts[0], PROJECT, parts[1]
    else:
        org, project, name = parts[-3:]
    return Path(root) / ".pulumi" / "locks" / org / project / name


def read_locks(directory: Optional[Path]) -> list[Lock]:
    if directory is None or not directory.is_dir():
        return []
    locks = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            locks.append(Lock(path, int(data.get("pid", 0)), str(data.get("hostname", ""))))
        except (OSError, ValueError, TypeError, AttributeError):
            locks.append(Lock(path, 0, ""))  # unreadable: never taken for stale
    return locks


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # unknown: assume it runs
    try:  # a killed process not yet reaped (a zombie) runs no more
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def stale(lock: Lock, hostname: str, alive: Callable[[int], bool] = process_alive) -> bool:
    return lock.pid > 0 and lock.hostname == hostname and not alive(lock.pid)


def clear_stale_locks(stack: str, backend_url: str, run: Runner, say,
                      hostname: Optional[str] = None,
                      alive: Callable[[int], bool] = process_alive) -> None:
    locks = read_locks(lock_dir(backend_url, stack))
    if not locks:
        return
    hostname = hostname or socket.gethostname()
    live = [lock for lock in locks if not stale(lock, hostname, alive)]
    if live:
        holders = ", ".join(f"pid {lock.pid} on {lock.hostname or 'an unknown host'}"
                            for lock in live)
        raise RecoverError(
            f"stack '{stack}' is locked by a `pulumi` run that may still be going ({holders}). "
            "Wait for it to finish; if it is gone for sure (another machine that crashed), "
            f"clear the lock with `pulumi cancel --yes --stack {stack}`.")
    done = run(["pulumi", "cancel", "--yes", "--stack", stack], PULUMI_TIMEOUT)
    if done.returncode != 0:
        raise RecoverError(f"could not clear the lock left by an interrupted run: "
                           f"{last_line(done.stderr)}")
    pids = ", ".join(str(lock.pid) for lock in locks)
    say(f"recover: cleared the lock left by an interrupted `pulumi` run (pid {pids}, no "
        "longer running)")


# --- pending creates ----------------------------------------------------------------

@dataclass(frozen=True)
class Pending:
    urn: str
    type: str
    name: str  # the Docker object's name, "" when not a Docker object


def pending_creates(state: dict) -> list[Pending]:
    deployment = state.get("deployment") if isinstance(state, dict) else None
    operations = (deployment or {}).get("pending_operations") or []
    found = []
    for operation in operations:
        if not isinstance(operation, dict) or operation.get("type") != "creating":
            continue
        resource = operation.get("resource") or {}
        inputs = resource.get("inputs") or {}
        name = inputs.get("name") if resource.get("type") in DOCKER_KINDS else ""
        found.append(Pending(str(resource.get("urn", "")), str(resource.get("type", "")),
                             name if isinstance(name, str) else ""))
    return found


def docker_id(pending: Pending, docker_host: str, run: Runner) -> Optional[str]:
    """The id of the Docker object the interrupted create made, or None."""
    kind = DOCKER_KINDS.get(pending.type)
    if not kind or not pending.name:
        return None
    host = ["--host", docker_host] if docker_host else []
    done = run(["docker", *host, "inspect", "--type", kind, "--format",
                "{{.Name}}" if kind == "volume" else "{{.Id}}", "--", pending.name],
               DOCKER_TIMEOUT)
    if done.returncode == 0 and done.stdout.strip():
        return done.stdout.strip()
    if "No such" in done.stderr or "no such" in done.stderr.lower():
        return None
    raise RecoverError(f"cannot ask Docker whether {kind} {pending.name} exists: "
                       f"{last_line(done.stderr)}")


def adopt(state: dict, found: dict[str, str]) -> tuple[dict, list[str]]:
    """STATE with every pending create whose object exists (FOUND: urn -> id) turned into
    a recorded resource, and the other pending creates dropped; and the dropped names.

    This is what `pulumi refresh --import-pending-creates URN ID` is meant to do; the CLI
    (3.274) drops such operations instead of recording them, so the state is edited as
    Pulumi's docs describe for pending operations: export, edit, import. Inputs keep their
    encrypted secrets; outputs start as the inputs and the refresh that follows reads the
    object back from Docker."""
    deployment = state["deployment"]
    kept, dropped = [], []
    for operation in deployment.get("pending_operations") or []:
        resource = operation.get("resource") or {}
        if operation.get("type") != "creating":
            kept.append(operation)
        elif resource.get("urn") in found:
            adopted = dict(resource)
            adopted["id"] = found[resource["urn"]]
            adopted["outputs"] = dict(resource.get("inputs") or {})
            deployment.setdefault("resources", []).append(adopted)
        else:
            dropped.append(str(resource.get("urn", "")).rpartition("::")[2])
    deployment["pending_operations"] = kept
    return state, dropped


def recover_pending(stack: str, run: Runner, say, workdir: Optional[Path] = None) -> None:
    done = run(["pulumi", "stack", "export", "--stack", stack], PULUMI_TIMEOUT)
    if done.returncode != 0:
        return  # a new stack, or unreadable: `pulumi up` says why
    try:
        state = json.loads(done.stdout)
        pending = pending_creates(state)
    except (ValueError, AttributeError):
        return
    if not pending:
        return
    config = run(["pulumi", "config", "get", "docker:host", "--stack", stack], PULUMI_TIMEOUT)
    docker_host = config.stdout.strip() if config.returncode == 0 else ""
    found = {}
    for item in pending:
        object_id = docker_id(item, docker_host, run)
        if object_id:
            found[item.urn] = object_id
    state, dropped = adopt(state, found)
    with tempfile.TemporaryDirectory(dir=workdir) as private:  # mode 700
        edited = Path(private) / "state.json"
        fd = os.open(edited, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(state, out)
        done = run(["pulumi", "stack", "import", "--stack", stack, "--file", str(edited)],
                   PULUMI_TIMEOUT)
    if done.returncode != 0:
        raise RecoverError(f"could not record what the interrupted run created: "
                           f"{last_line(done.stderr or done.stdout)}. Run `pulumi refresh "
                           f"--stack {stack}` and answer its questions about pending creates.")
    for item in pending:
        if item.urn in found:
            say(f"recover: {item.name} was created by the interrupted run; adopted it")
    if dropped:
        say(f"recover: {', '.join(dropped)} had not been created; the next `pulumi up` "
            "creates them")
    if found:
        targets = [arg for urn in found for arg in ("--target", urn)]
        done = run(["pulumi", "refresh", "--yes", "--skip-preview", "--stack", stack,
                    *targets], PULUMI_TIMEOUT)
        if done.returncode != 0:
            raise RecoverError(f"adopted the objects, but reading them back failed: "
                               f"{last_line(done.stderr or done.stdout)}")


def recover(stack: str, backend_url: str, run: Runner = run_command,
            say=lambda line: print(line, file=sys.stderr)) -> None:
    clear_stale_locks(stack, backend_url, run, say)
    recover_pending(stack, run, say)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.recover",
        description="Clear what an interrupted `pulumi up` left behind (stale lock, pending "
                    "creates), adopting Docker objects it made.")
    parser.add_argument("stack")
    args = parser.parse_args(argv)
    try:
        recover(args.stack, os.environ.get("PULUMI_BACKEND_URL", ""))
    except RecoverError as error:
        print(f"recover: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("recover: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

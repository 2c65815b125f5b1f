"""A restore drill that proves a snapshot: `python -m ops.drill --stack STACK [--file ZIP]`.

It starts a throwaway backend of the stack's release beside the real one (its own name, a
random instance secret, an admin key derived from it, no published port, no volume: its
data dies with it), imports the snapshot through the API `restore` uses, exports it again
and checks that the tables, documents and stored files match what the snapshot holds (and
its run record, when one lies beside it): the backup client's `drill` (backup_drill.py).
Nothing of the real deployment is touched; every wait is bounded; the throwaway backend is
removed at the end whatever happens. Per target:

* docker: on the stack's Docker engine (local or `docker:host`), a container of the stack's
  backend image and the client in a container sharing its network namespace (no
  capabilities), reading --file (a zip on this machine, streamed in) or else the newest
  snapshot of the deployment's backups volume, mounted read-only.
* host: over SSH with the stack's pinned host key, the installed binary in a temporary
  directory on loopback, and the client installed beside it; the snapshot is --file
  (sent over the same connection) or else the newest in the host's backup directory (or
  in the bucket, when the stack keeps no local copies).
* kubernetes: a Job made from the stack's suspended `<instance>-drill` CronJob: the backend
  as a sidecar and the client beside it, on the newest snapshot of the backups claim (or of
  the bucket); --file is refused (the snapshot is the cluster's own).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import secrets
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from components.admin_key import issue_admin_key
from ops import backup
from ops.backup_drill import DrillFailed, expected_counts, result_counts
from ops.commands import last_line, run_command
from ops.drill_host import drill_host, stream
from ops.drill_kubernetes import drill_kubernetes
from ops.stack_settings import StackSettingsError, stack_config, stack_settings

PULUMI_TIMEOUT = 120.0
DOCKER_TIMEOUT = 120.0
LABEL = "convex-selfhost.role=drill"
START_TIMEOUT = 300.0
IMPORT_TIMEOUT = 3600.0


DrillError = DrillFailed  # the drill failed; str() says where (never a key)


def pick_deployment(settings, key: Optional[str]):
    names = [d.key for d in settings.deployments]
    if key is None and len(names) == 1:
        return settings.deployments[0]
    for deployment in settings.deployments:
        if deployment.key == key:
            return deployment
    raise DrillError(f"pass --deployment with one of {', '.join(names)}" if key is None else
                     f"--deployment {key!r} is not in the stack (it has {', '.join(names)})")


def drill_docker(settings, deployment, snapshot: Optional[Path], run: Callable,
                 say: Callable, timeout: float) -> dict:
    """Both halves on the stack's engine (local or remote alike): the throwaway backend,
    and the client in a container sharing its network namespace, reading --file (copied
    in) or the newest snapshot of the deployment's backups volume (mounted read-only)."""
    from components.core.backups import client_files
    from components.settings import KEYS_BY_NAME

    if snapshot is not None:
        expected_counts(snapshot)  # a bad file starts nothing
    elif settings.backups is None or not settings.backups.local:
        raise DrillError("the stack keeps no local snapshots: pass --file (`python ops/backup.py "
                         "fetch` downloads the newest off-host copy)")
    docker = ["docker", *(["--host", settings.docker_host] if settings.docker_host else [])]
    name = f"convex-drill-{secrets.token_hex(4)}"
    instance_secret = secrets.token_hex(32)
    key = issue_admin_key(name, instance_secret)
    python = settings.backups.image if settings.backups else KEYS_BY_NAME["backupImage"].default
    source = (["--file", "/drill/" + snapshot.name] if snapshot is not None else
              ["--dest", "/backups"])
    say(f"drill: starting {settings.backend_image} as {name}, the client beside it")
    try:
        started = run([*docker, "run", "-d", "--name", name, "--label", LABEL,
                       "-e", f"INSTANCE_NAME={name}", "-e", "INSTANCE_SECRET",
                       "-e", "DISABLE_BEACON=true", settings.backend_image], DOCKER_TIMEOUT,
                      env={**os.environ, "INSTANCE_SECRET": instance_secret})
        if started.returncode != 0:
            raise DrillError(f"docker run failed: {last_line(started.stderr)}")
        volume = [] if snapshot is not None else [
            "-v", f"{deployment.instance_name}-backups:/backups:ro"]
        made = run([*docker, "create", "--name", f"{name}-client", "--label", LABEL,
                    # root without capabilities: it reads the volume's files as their
                    # owner (the backup container's root writes them 0600), nothing more
                    "--network", f"container:{name}", "--cap-drop", "ALL",
                    "--security-opt", "no-new-privileges", *volume,
                    "-e", backup.KEY_ENV, "-e", "PYTHONDONTWRITEBYTECODE=1", python,
                    "python3", "/app/convex_backup.py", "drill",
                    "--url", "http://127.0.0.1:3210", *source, "--wait", str(int(timeout)),
                    "--timeout", str(int(IMPORT_TIMEOUT))], DOCKER_TIMEOUT,
                   env={**os.environ, backup.KEY_ENV: key})
        if made.returncode != 0:
            raise DrillError(f"docker create failed: {last_line(made.stderr)}")
        copy_in(docker, f"{name}-client", client_files(), snapshot)
        status, output = stream([*docker, "start", "--attach", f"{name}-client"], b"", None,
                                timeout + 2 * IMPORT_TIMEOUT + 60, say,
                                hide=[key, instance_secret])
        return result_counts(status, output, "the drill on the Docker engine")
    finally:
        for each in (f"{name}-client", name):
            removed = run([*docker, "rm", "-f", "-v", each], DOCKER_TIMEOUT)
            say(f"drill: removed {each}" if removed.returncode == 0 else
                f"drill: could not remove {each}: {last_line(removed.stderr)}; remove it "
                "by hand")


def copy_in(docker: list, container: str, files: dict, snapshot: Optional[Path],
            timeout: float = DOCKER_TIMEOUT * 10) -> None:
    """The client's files into /app of the created CONTAINER, and --file (with the run
    record beside it, when that exists) into /drill: one tar streamed to `docker cp -`
    (nothing copied on this disk), every entry readable by any user."""
    members: list = [("app", None, None)]
    members += [(f"app/{file_name}", text.encode(), None) for file_name, text in files.items()]
    if snapshot is not None:
        members.append(("drill", None, None))
        record = snapshot.parent / backup.LAST_RUN
        for path in (snapshot, record):
            if path.is_file():
                members.append((f"drill/{path.name}", None, path))
    proc = subprocess.Popen([*docker, "cp", "-", f"{container}:/"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        with contextlib.suppress(BrokenPipeError), \
                tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
            for member, data, path in members:
                info = tarfile.TarInfo(member)
                info.mtime = int(time.time())
                if data is None and path is None:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                elif path is None:
                    info.size, info.mode = len(data), 0o644
                    tar.addfile(info, io.BytesIO(data))
                else:
                    info.size, info.mode = path.stat().st_size, 0o644
                    with path.open("rb") as source:
                        tar.addfile(info, source)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        error = proc.stderr.read().decode(errors="replace")
        status = proc.wait()
    finally:
        timer.cancel()
    if status != 0:
        raise DrillError(f"docker cp into {container} failed: {last_line(error)}")


def drill(stack: str, snapshot: Optional[Path], deployment_key: Optional[str] = None,
          run: Callable = run_command, say: Callable[[str], None] = print,
          timeout: float = START_TIMEOUT) -> dict:
    try:
        config = stack_config(stack, run)
        settings = stack_settings(stack, config)
    except StackSettingsError as error:
        raise DrillError(str(error)) from None
    deployment = pick_deployment(settings, deployment_key)
    if settings.target == "host":
        return drill_host(settings, deployment, snapshot, say, timeout)
    if settings.target == "kubernetes":
        if snapshot is not None:
            raise DrillError("on a cluster the drill imports the cluster's own newest "
                             "snapshot (the backups claim, or the bucket): drop --file")
        return drill_kubernetes(settings, deployment, config, run, say, timeout)
    return drill_docker(settings, deployment, snapshot, run, say, timeout)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.drill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", required=True, help="the stack whose release is drilled")
    parser.add_argument("--file", help="a snapshot zip on this machine (e.g. from fetch); "
                        "host stacks default to the host's newest")
    parser.add_argument("--deployment", help="which deployment of a multi-deployment stack")
    parser.add_argument("--timeout", type=float, default=START_TIMEOUT,
                        help="seconds for the drill backend to start")
    args = parser.parse_args(argv)
    snapshot = Path(args.file) if args.file else None
    if snapshot is not None and not snapshot.is_file():
        print(f"error: --file {args.file} is not a file", file=sys.stderr)
        return 2
    if not 0 < args.timeout < float("inf"):
        print("error: --timeout must be greater than 0", file=sys.stderr)
        return 2
    where = snapshot or f"stack {args.stack}"
    try:
        counts = drill(args.stack, snapshot, args.deployment, timeout=args.timeout)
    except DrillError as error:
        print(f"convex-backup drill failed file={where} reason={json.dumps(str(error))}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"convex-backup drill ok file={where} tables={counts['tables']} "
          f"documents={counts['documents']} files={counts['files']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

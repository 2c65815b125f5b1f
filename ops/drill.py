"""A restore drill that proves a snapshot: `python -m ops.drill --stack STACK [--file ZIP]`.

It starts a throwaway backend of the stack's release beside the real one (its own name, a
random instance secret, an admin key derived from it, a free loopback port, no volume: its
data dies with it), imports the snapshot through the API `restore` uses, exports it again
and checks that the tables, documents and stored files match what the snapshot holds (and
its run record, when one lies beside it): the backup client's `drill` (backup_drill.py).
Nothing of the real deployment is touched; every wait is bounded; the throwaway backend is
removed at the end whatever happens. Per target:

* docker: a container of the stack's backend image on its Docker engine; --file (a zip
  on this machine, e.g. from `ops/backup.py fetch`) is required.
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
import json
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from components.admin_key import issue_admin_key
from ops import backup
from ops.backup_drill import DrillFailed, drill_backend, expected_counts
from ops.commands import last_line, run_command
from ops.drill_host import drill_host
from ops.drill_kubernetes import drill_kubernetes
from ops.stack_settings import StackSettingsError, stack_config, stack_settings

PULUMI_TIMEOUT = 120.0
DOCKER_TIMEOUT = 120.0
START_TIMEOUT = 300.0
IMPORT_TIMEOUT = 3600.0


DrillError = DrillFailed  # the drill failed; str() says where (never a key)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pick_deployment(settings, key: Optional[str]):
    names = [d.key for d in settings.deployments]
    if key is None and len(names) == 1:
        return settings.deployments[0]
    for deployment in settings.deployments:
        if deployment.key == key:
            return deployment
    raise DrillError(f"pass --deployment with one of {', '.join(names)}" if key is None else
                     f"--deployment {key!r} is not in the stack (it has {', '.join(names)})")


def drill_docker(settings, snapshot: Optional[Path], run: Callable, say: Callable,
                 timeout: float) -> dict:
    if snapshot is None:
        raise DrillError("on the Docker target pass --file (a snapshot zip; `python "
                         "ops/backup.py fetch` downloads the newest off-host copy)")
    expected = expected_counts(snapshot)
    docker = ["docker", *(["--host", settings.docker_host] if settings.docker_host else [])]
    name = f"convex-drill-{secrets.token_hex(4)}"
    instance_secret = secrets.token_hex(32)
    port = free_port()
    image = settings.backend_image
    say(f"drill: starting {image} as {name} on 127.0.0.1:{port}")
    started = run([*docker, "run", "-d", "--name", name, "--label", "convex-selfhost.role=drill",
                   "-p", f"127.0.0.1:{port}:3210", "-e", f"INSTANCE_NAME={name}",
                   "-e", "INSTANCE_SECRET", "-e", "DISABLE_BEACON=true",
                   image], DOCKER_TIMEOUT,
                  env={**os.environ, "INSTANCE_SECRET": instance_secret})
    try:
        if started.returncode != 0:
            raise DrillError(f"docker run failed: {last_line(started.stderr)}")
        url = f"http://127.0.0.1:{port}"
        key = issue_admin_key(name, instance_secret)
        return drill_backend(backup, url, key, snapshot, IMPORT_TIMEOUT, say, timeout,
                             expected)
    finally:
        removed = run([*docker, "rm", "-f", "-v", name], DOCKER_TIMEOUT)
        say(f"drill: removed {name}" if removed.returncode == 0 else
            f"drill: could not remove {name}: {last_line(removed.stderr)}; remove it by hand")


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
    return drill_docker(settings, snapshot, run, say, timeout)


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

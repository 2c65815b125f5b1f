"""A restore drill that proves a snapshot: `python -m ops.drill --stack STACK --file ZIP`.

On the stack's Docker engine it starts a throwaway backend of the stack's release beside
the real one (its own container name, a random instance secret, an admin key derived here,
a free loopback port, no volume: its data dies with it), imports the snapshot through the
same API `restore` uses, exports it again and checks that the tables, documents and stored
files match what the snapshot holds (and its run record, when one lies beside it). The
container is removed at the end whatever happens; every wait is bounded. Nothing of the
real deployment is touched. Docker target only: on a host or a cluster, restore into a
scratch stack as the README's restore drill says.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, Optional, Sequence

from components.admin_key import issue_admin_key
from ops import backup
from ops.backup_verify import VerifyError, verify
from ops.commands import last_line, run_command

PULUMI_TIMEOUT = 120.0
DOCKER_TIMEOUT = 120.0
START_TIMEOUT = 300.0
IMAGE = "ghcr.io/get-convex/convex-backend"


class DrillError(Exception):
    """The drill failed; str() says where."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stack_setting(stack: str, key: str, run: Callable = run_command) -> str:
    done = run(["pulumi", "config", "get", key, "--stack", stack], PULUMI_TIMEOUT)
    return done.stdout.strip() if done.returncode == 0 else ""


def wait_until_up(url: str, timeout: float, sleep=time.sleep) -> None:
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), backup.NoRedirect())
    while True:
        try:
            with opener.open(f"{url}/version", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise DrillError(f"the drill backend did not answer {url}/version within "
                             f"{timeout:g}s")
        sleep(1)


def expected_counts(snapshot: Path) -> dict:
    """What the snapshot holds, checked against its run record when that names it."""
    try:
        counts = verify(str(snapshot)).record()
    except VerifyError as error:
        raise DrillError(f"the snapshot failed verification: {error}") from None
    record_path = snapshot.parent / backup.LAST_RUN
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = {}
        if isinstance(record, dict) and record.get("file") == snapshot.name:
            recorded = {k: record.get(k) for k in counts}
            if recorded != counts:
                raise DrillError(f"the snapshot holds {counts}, its run record says {recorded}")
    return counts


def drill(stack: str, snapshot: Path, run: Callable = run_command,
          say: Callable[[str], None] = print, timeout: float = START_TIMEOUT) -> dict:
    if stack_setting(stack, "convex-selfhost:target", run) not in ("", "docker"):
        raise DrillError("the drill runs on the Docker target; on a host or a cluster restore "
                         "into a scratch stack (README: Restore drill)")
    expected = expected_counts(snapshot)
    version = stack_setting(stack, "convex-selfhost:version", run)
    if not version:
        from components.releases import DEFAULT_VERSION
        version = DEFAULT_VERSION
    docker_host = stack_setting(stack, "docker:host", run)
    docker = ["docker", *(["--host", docker_host] if docker_host else [])]
    name = f"convex-drill-{secrets.token_hex(4)}"
    instance_secret = secrets.token_hex(32)
    port = free_port()
    say(f"drill: starting {IMAGE}:{version[:12]} as {name} on 127.0.0.1:{port}")
    started = run([*docker, "run", "-d", "--name", name, "--label", "convex-selfhost.role=drill",
                   "-p", f"127.0.0.1:{port}:3210", "-e", f"INSTANCE_NAME={name}",
                   "-e", "INSTANCE_SECRET", f"{IMAGE}:{version}"], DOCKER_TIMEOUT,
                  env={**os.environ, "INSTANCE_SECRET": instance_secret})
    try:
        if started.returncode != 0:
            raise DrillError(f"docker run failed: {last_line(started.stderr)}")
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, timeout)
        key = issue_admin_key(name, instance_secret)
        client = backup.Client(url, key, run_timeout=timeout)
        try:
            written = backup.Restore(client, str(snapshot), 1.0, say,
                                     lambda summary: True).run()
        except backup.BackupError as error:
            raise DrillError(f"the import failed: {backup.redact(str(error), key)}") from None
        finally:
            client.close()
        say(f"drill: imported {written} document(s); exporting again to compare")
        with tempfile.TemporaryDirectory() as again:
            if not backup.run_once(url, key, again, 1, timeout, 1.0):
                raise DrillError("the export of the drill backend failed (see the line above)")
            record = json.loads(Path(again, backup.LAST_RUN).read_text())
        got = {k: record.get(k) for k in expected}
        if got != expected:
            raise DrillError(f"the drill backend holds {got} after the import, the snapshot "
                             f"{expected}")
        return expected
    finally:
        removed = run([*docker, "rm", "-f", "-v", name], DOCKER_TIMEOUT)
        say(f"drill: removed {name}" if removed.returncode == 0 else
            f"drill: could not remove {name}: {last_line(removed.stderr)}; remove it by hand")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.drill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", required=True, help="the stack whose release is drilled")
    parser.add_argument("--file", required=True, help="a snapshot zip (e.g. from fetch)")
    parser.add_argument("--timeout", type=float, default=START_TIMEOUT)
    args = parser.parse_args(argv)
    snapshot = Path(args.file)
    if not snapshot.is_file():
        print(f"error: --file {args.file} is not a file", file=sys.stderr)
        return 2
    try:
        counts = drill(args.stack, snapshot, timeout=args.timeout)
    except DrillError as error:
        print(f"convex-backup drill failed file={snapshot} reason={json.dumps(str(error))}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"convex-backup drill ok file={snapshot} tables={counts['tables']} "
          f"documents={counts['documents']} files={counts['files']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

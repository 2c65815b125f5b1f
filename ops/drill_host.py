"""The restore drill on the host target (`python -m ops.drill`, ops/drill.py): over SSH with
the stack's pinned host key, the installed binary in a temporary directory on loopback and
the backup client installed beside it run the client's drill (ops/backup_drill.py)."""

from __future__ import annotations

import contextlib
import secrets
import shlex
import subprocess
import threading
from pathlib import Path
from typing import Callable, Optional, Sequence

from components.admin_key import issue_admin_key
from ops import backup
from ops.backup_drill import DrillFailed, expected_counts, result_counts

IMPORT_TIMEOUT = 3600.0  # the client's --timeout: the import, and the export after it


# The host's half: bash as root, its secrets and the snapshot on stdin (never in a file
# outside its 0700 temporary directory, removed on every exit). The binary takes the
# throwaway instance secret only as a flag, as the unit passes the real one.
HOST_SCRIPT = r"""set -euo pipefail
umask 077
IFS= read -r secret
while IFS= read -r line && [ -n "$line" ]; do export "$line"; done
dir=$(mktemp -d /var/tmp/convex-drill.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ]; then  # a background job of a script ignores SIGINT: TERM, then KILL
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
cd "$dir"
mkdir storage tmp
%(receive)s
read -r port site < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
TMPDIR="$dir/tmp" %(binary)s --instance-name %(instance)s --instance-secret "$secret" \
  --interface 127.0.0.1 --port "$port" --site-proxy-port "$site" \
  --convex-origin "http://127.0.0.1:$port" --convex-site "http://127.0.0.1:$site" \
  --disable-beacon --local-storage storage db.sqlite3 >backend.log 2>&1 &
pid=$!
echo "drill: started %(instance)s on 127.0.0.1:$port"
status=0
python3 %(client)s drill --url "http://127.0.0.1:$port" %(source)s \
  --wait %(wait)d --timeout %(timeout)d || status=$?
if [ "$status" != 0 ]; then
  echo "drill: the drill backend's last lines:"; tail -n 20 backend.log
fi
exit "$status"
"""


def host_script(instance: str, install_dir: str, source: Sequence[str], upload: bool,
                wait: float, timeout: float) -> str:
    """The drill's script for the host; every value quoted."""
    from components.core.backups import ENTRY

    return HOST_SCRIPT % {
        "receive": "cat > snapshot.zip" if upload else ":",
        "binary": shlex.quote(f"{install_dir}/convex-local-backend"),
        "client": shlex.quote(f"{install_dir}/{ENTRY}"),
        "instance": shlex.quote(instance),
        "source": ("--file \"$dir/snapshot.zip\"" if upload else
                   " ".join(shlex.quote(part) for part in source)),
        "wait": int(wait), "timeout": int(timeout)}


def host_stdin(secret: str, environment: dict) -> bytes:
    lines = [secret]
    for name, value in environment.items():
        if "\n" in value or "\r" in value or not value:
            raise DrillFailed(f"the value of {name} is empty or holds a line break")
        lines.append(f"{name}={value}")
    return ("\n".join(lines) + "\n\n").encode()


def stream(argv: Sequence[str], head: bytes, body: Optional[Path], timeout: float,
           say: Callable[[str], None], hide: Sequence[str] = ()) -> tuple[int, str]:
    """Run ARGV with HEAD then BODY's bytes on stdin, its output line by line to SAY (with
    HIDE's strings redacted), killed after TIMEOUT seconds; (exit status, output)."""
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)

    def feed() -> None:
        with contextlib.suppress(OSError):
            proc.stdin.write(head)
            if body is not None:
                with body.open("rb") as source:
                    while chunk := source.read(1 << 20):
                        proc.stdin.write(chunk)
        with contextlib.suppress(OSError):
            proc.stdin.close()
    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines = []
    try:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            for secret in hide:
                line = backup.redact(line, secret) if secret else line
            lines.append(line)
            say(line)
        status = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if not timer.is_alive() and status < 0:
        lines.append(f"(stopped after {timeout:g}s)")
    return status, "\n".join(lines)


def drill_host(settings, deployment, snapshot: Optional[Path], say: Callable,
               timeout: float) -> dict:
    from components.core.backups import offsite_arguments, offsite_secrets
    from components.host.unit import INSTALL_ROOT, backup_dir_for
    from ops.upgrade_host import ssh_command
    from ops.upgrade_local import UpgradeError

    instance = deployment.instance_name
    backups = settings.backups
    environment: dict = {}
    if snapshot is not None:
        expected_counts(snapshot)
        source: list = []
    elif backups is not None and (backups.local or not backups.s3_bucket):
        source = ["--dest", f"/var/lib/{backup_dir_for(instance)}"]
    elif backups is not None:
        source = offsite_arguments(backups, instance)
        environment = offsite_secrets(backups)
    else:
        raise DrillFailed("the stack takes no backups (backupSchedule): pass --file")
    drill_name = f"convex-drill-{secrets.token_hex(4)}"
    drill_secret = secrets.token_hex(32)
    key = issue_admin_key(drill_name, drill_secret)
    environment = {backup.KEY_ENV: key, **environment}
    script = host_script(drill_name, f"{INSTALL_ROOT}/{instance}", source,
                         snapshot is not None, timeout, IMPORT_TIMEOUT)
    host = settings.host
    remote = f"bash -c {shlex.quote(script)}"
    if host.user != "root":
        remote = f"sudo -n {remote}"
    say(f"drill: on {host.user}@{host.address}, {drill_name} beside {instance}")
    try:
        with ssh_command(host) as ssh:
            status, output = stream(ssh(remote), host_stdin(drill_secret, environment),
                                    snapshot, timeout + 2 * IMPORT_TIMEOUT + 60, say,
                                    hide=[key, drill_secret, *environment.values()])
    except UpgradeError as error:
        raise DrillFailed(str(error).replace(" Nothing was changed.", "")) from None
    return result_counts(status, output, "the drill on the host")

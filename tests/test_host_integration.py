"""The host target on a real engine (opt-in, a few minutes): the Pulumi CLI and the
pulumi-command plugin deploy the stand-in convex-local-backend to a systemd + sshd test
host (tests/hosttarget.py) over SSH with a pinned host key.

    CONVEX_SELFHOST_INTEGRATION=1 ./test.sh -m integration tests/test_host_integration.py -s

It checks: the first `up` installs and starts the unit and waits until the backend
answers, with the generated admin key accepted by the backend; a second `preview` and a
`refresh` show no changes; a new binary is swapped in while the old one runs and only the
stage, install and health steps run again; nothing secret is in `pulumi stack export` in
plain text; a backend that never answers fails `up` twice; a wrong host key is refused;
`destroy` removes the unit and keeps the data directory; scheduled backups run from a
systemd timer whose elapses match the cron expression (systemd-analyze on the host);
`ops.upgrade` swaps the binary and follows the journal over SSH; `ops.drill` imports the
host's newest snapshot (and one sent from here) into a throwaway backend and cleans up.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import hosttarget
import pytest
from test_integration import integration_skip_reason, project_copy
from test_restore_standin import seed_zip

from ops import backup

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration


def _skip_reason():
    reason = integration_skip_reason() or hosttarget.skip_reason()
    if not reason and shutil.which("pulumi-resource-command") is None:
        done = subprocess.run(["pulumi", "plugin", "ls"], capture_output=True, text=True)
        if "command" not in done.stdout:
            reason = ("the pulumi-command plugin is not installed (../shared/tools/"
                      "build-command-plugin.sh builds it)")
    return reason


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("hostit")
    ws = project_copy(root)
    older, newer = hosttarget.standin_versions()
    binaries = {}
    for version in (older, newer):
        directory = root / f"bin-{version[:7]}"
        directory.mkdir()
        binaries[version] = hosttarget.standin_binary(version, directory)
    with hosttarget.running_host() as host:
        yield ws, host, binaries, (older, newer)
        for stack in ws.stacks:
            ws.pulumi("state", "unprotect", "--all", "--yes", stack=stack, check=False)
            ws.pulumi("destroy", "--yes", "--skip-preview", stack=stack, check=False)
            ws.pulumi("stack", "rm", "--yes", "--force", stack=stack, check=False)


def _stack(ws, host, binary, version, role, **extra):
    path, sha = binary
    config = {"target": "host", "hostAddress": host.address, "sshPort": host.port,
              "sshUser": "root", "sshHostKey": host.host_key, "backendBinary": str(path),
              "backendBinarySha256": sha, "dashboard": "false", "version": version,
              "protectData": "false", "backendStartTimeoutSeconds": 30, **extra}
    return ws.new_stack(role, config, {"sshPrivateKey": host.private_key})


def _changes(ws, stack):
    steps = ws.preview_steps(stack)
    return sorted((s["op"], s["urn"].rsplit("::", 1)[-1]) for s in steps if s["op"] != "same")


def test_the_host_target_deploys_swaps_and_removes_the_backend(setup):
    ws, host, binaries, (older, newer) = setup
    stack = _stack(ws, host, binaries[older], older, "host")
    ws.pulumi("up", "--yes", "--skip-preview", stack=stack)
    outputs = ws.outputs(stack)
    instance = outputs["instanceName"]
    unit = f"{instance}.service"
    assert host.ssh(f"systemctl is-active {unit}").stdout.strip() == "active"
    port = 3210
    version = host.ssh(f"curl -fsS http://127.0.0.1:{port}/version").stdout.strip()
    print(f"\n/version on the host: {version}")
    key = outputs["adminKey"]
    checked = host.ssh(f"curl -s -o /dev/null -w '%{{http_code}}' -H 'Authorization: Convex "
                       f"{key}' http://127.0.0.1:{port}/api/check_admin_key").stdout
    assert checked.strip() == "200"
    env_mode = host.ssh(f"stat -c '%a %U' /etc/convex-selfhost/{instance}.env").stdout.strip()
    assert env_mode == "600 root"

    # Nothing to do the second time, also after reading everything back.
    assert _changes(ws, stack) == []
    refresh = ws.pulumi("refresh", "--yes", "--skip-preview", stack=stack)
    assert "error" not in refresh.stdout.lower()
    assert _changes(ws, stack) == []

    # Nothing secret in plain text in the state.
    state = ws.pulumi("stack", "export", stack=stack).stdout
    secret = outputs["instanceSecret"]
    for value in (secret, key, key.split("|", 1)[1], host.private_key.strip().splitlines()[1]):
        assert value not in state

    # A new release: the binary is swapped while the old one runs, the unit restarts.
    path, sha = binaries[newer]
    ws.pulumi("config", "set", "convex-selfhost:backendBinary", str(path), stack=stack)
    ws.pulumi("config", "set", "convex-selfhost:backendBinarySha256", sha, stack=stack)
    ws.pulumi("config", "set", "convex-selfhost:version", newer, stack=stack)
    changes = _changes(ws, stack)
    print(f"\nversion change: {changes}")
    assert {name for _, name in changes} <= {
        f"{instance}-backend-upload", f"{instance}-backend-stage",
        f"{instance}-backend-install", f"{instance}-backend-healthy"}
    ws.pulumi("up", "--yes", "--skip-preview", stack=stack)
    assert host.ssh(f"curl -fsS http://127.0.0.1:{port}/version").stdout.strip() != version
    assert _changes(ws, stack) == []

    # destroy: the unit goes, the data directory stays.
    ws.pulumi("destroy", "--yes", "--skip-preview", stack=stack)
    gone = host.ssh(f"systemctl cat {unit}", check=False)
    assert gone.returncode != 0
    kept = host.ssh(f"ls /var/lib/private/convex-selfhost/{instance}").stdout
    print(f"\ndata directory after destroy: {kept.split()}")
    assert kept.strip()


def test_a_backend_that_never_answers_fails_up_twice(setup):
    ws, host, binaries, (older, _) = setup
    path, sha = binaries[older]
    never = path.parent.parent / "bin-never"
    never.mkdir(exist_ok=True)
    broken, broken_sha = hosttarget.standin_binary(older, never)
    stack = _stack(ws, host, (broken, broken_sha), older, "never",
                   backendPort=3310, sitePort=3311, backendStartTimeoutSeconds=10)
    instance = f"convex-{stack}"
    # The stand-in answers 503 forever when a NEVER_HEALTHY file lies beside the binary.
    host.ssh(f"mkdir -p /opt/convex-selfhost/{instance} && "
             f"touch /opt/convex-selfhost/{instance}/NEVER_HEALTHY")
    for attempt in (1, 2):
        done = ws.pulumi("up", "--yes", "--skip-preview", stack=stack, check=False)
        assert done.returncode != 0, attempt
        assert "did not answer" in done.stdout + done.stderr, attempt


def test_a_host_presenting_another_key_is_refused(setup):
    ws, host, binaries, (older, _) = setup
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq5WZ5ZxXW1dWgH0Gm4k6o1bP8Y2dF3m6k9Q"
    stack = _stack(ws, host, binaries[older], older, "wrongkey", sshHostKey=other,
                   backendPort=3320, sitePort=3321)
    done = ws.pulumi("up", "--yes", "--skip-preview", stack=stack, check=False)
    assert done.returncode != 0
    assert "host key" in (done.stdout + done.stderr).lower()
    unit = f"convex-{stack}.service"
    assert host.ssh(f"systemctl cat {unit}", check=False).returncode != 0
    print(json.dumps({"refused": True}))


def test_scheduled_backups_land_on_the_host(setup):
    ws, host, binaries, (older, _) = setup
    stack = _stack(ws, host, binaries[older], older, "backups", backendPort=3330,
                   sitePort=3331, backupSchedule="* * * * *", backupKeep=2)
    ws.pulumi("up", "--yes", "--skip-preview", stack=stack)
    instance = f"convex-{stack}"
    directory = f"/var/lib/private/convex-selfhost-backups/{instance}"
    # 32 documents in 2 tables, restored with the client installed beside the binary.
    seed = seed_zip(Path(ws.root) / "seed.zip")
    host.put(seed, "/tmp/seed.zip", mode="0600")
    key = ws.outputs(stack)["adminKey"]
    restored = host.ssh(f"{backup.KEY_ENV}={shlex.quote(key)} python3 /opt/convex-selfhost/"
                        f"{instance}/convex_backup.py restore --url http://127.0.0.1:3330 "
                        "--file /tmp/seed.zip --yes --poll-interval 0.2", check=False)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    listing = ""
    for _ in range(50):  # the first run is at the next full minute
        listing = host.ssh(f"ls {directory} 2>/dev/null || true").stdout
        record = host.ssh(f"cat {directory}/.last-run.json 2>/dev/null || true").stdout
        if "snapshot-" in listing and ".zip" in listing and '"documents": 32' in record:
            break
        time.sleep(3)
    print(f"\nbackups on the host: {listing.split()}")
    assert ".zip" in listing, host.ssh(f"journalctl -u {instance}-backup -n 20 --no-pager",
                                       check=False).stdout
    mode = host.ssh(f"stat -c %a /etc/convex-selfhost/{instance}-backup.env").stdout.strip()
    assert mode == "600"
    assert host.ssh(f"systemctl is-enabled {instance}-backup.timer").stdout.strip() == "enabled"
    result = host.ssh(f"systemctl show -p Result --value {instance}-backup.service").stdout
    assert result.strip() == "success"
    # The restore drill, as the README gives it: the host's newest snapshot, then a file
    # sent from here, each into a throwaway backend beside the real one.
    newest = sorted(n for n in listing.split() if n.endswith(".zip"))[-1]
    copy = Path(ws.root) / newest
    subprocess.run(["docker", "cp", f"{host.container}:{directory}/{newest}", str(copy)],
                   check=True, capture_output=True)
    for extra in ([], ["--file", str(copy)]):
        done = subprocess.run([sys.executable, "-m", "ops.drill", "--stack", stack, *extra],
                              cwd=ws.project, env=ws.env, capture_output=True, text=True,
                              timeout=300)
        print(done.stdout[-1500:])
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert done.stdout.splitlines()[-1].endswith("tables=2 documents=32 files=0")
        assert key not in done.stdout + done.stderr
    # status.sh reads the units over SSH (the backend's loopback URL is the host's own, so
    # the checks from here of the backend itself fail and are not looked at).
    done = subprocess.run([sys.executable, "-m", "ops.status", stack], cwd=ws.project,
                          env=ws.env, capture_output=True, text=True, timeout=300)
    print(done.stdout)
    assert f"ok    {instance}.service is active on 127.0.0.1" in done.stdout
    assert f"ok    {instance}-backup.timer is active (last " in done.stdout
    assert "ok    backups: health ok: last=" in done.stdout
    # Nothing of the drills is left: no directory, no process ([c]: not this command).
    left = host.ssh("ls /var/tmp | grep '[c]onvex-drill' || true; "
                    "pgrep -f '[c]onvex-drill' || true").stdout.split()
    assert left == [], host.ssh("ps -eo pid,ppid,args").stdout
    # Turning the schedule off removes the backup units; the snapshots stay.
    ws.pulumi("config", "rm", "convex-selfhost:backupSchedule", stack=stack)
    ws.pulumi("config", "rm", "convex-selfhost:backupKeep", stack=stack)
    ws.pulumi("up", "--yes", "--skip-preview", stack=stack)
    for name in ("service", "timer"):
        assert host.ssh(f"systemctl cat {instance}-backup.{name}",
                        check=False).returncode != 0
    assert ".zip" in host.ssh(f"ls {directory}").stdout


@pytest.mark.parametrize("cron", ["15 3 * * *", "*/20 1-3 * * *", "0 3 1,15 * 1-5",
                                  "30 4 * 6-8 7", "0 0 */10 * 0", "5 */6 29 2 *"])
def test_the_timer_elapses_when_the_cron_expression_does(setup, cron):
    """systemd's own calendar (systemd-analyze on the test host) against the backup
    client's cron reading, for the next elapses."""
    import datetime as dt

    from components.host.unit import on_calendar
    from ops.backup import parse_cron

    _ws, host, _binaries, _versions = setup
    start = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
    ours, when = [], start
    for _ in range(8):
        when = parse_cron(cron).next_after(when)
        ours.append(when)
    theirs = set()
    for expr in on_calendar(cron):
        done = host.ssh(f"TZ=UTC systemd-analyze calendar --iterations=8 "
                        f"--base-time='2027-01-01 00:00:00 UTC' {shlex.quote(expr)}")
        for line in done.stdout.splitlines():
            line = line.strip()
            if line.startswith(("Next elapse:", "Iter.")) and "UTC" in line:
                stamp = line.split(":", 1)[1].strip().split(" ", 1)[1].replace(" UTC", "")
                theirs.add(dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.timezone.utc))
    assert sorted(theirs)[:8] == ours, (on_calendar(cron), sorted(theirs)[:8])


def test_ops_upgrade_swaps_the_binary_and_follows_the_journal_over_ssh(setup, tmp_path):
    """`python -m ops.upgrade run --binary ... --binary-sha256 ...` on the host target, as
    the README's host section gives it: a backup through the export API, version and binary
    set together, the preview judged, `pulumi up`, the unit's journal read over SSH with the
    pinned host key, the admin key checked. The stand-in logs no migrations: the run's
    driver (tests/test_upgrade_real.py) adds the line a migrated backend logs after the
    first real journal poll, and records the real lines it read."""
    from test_upgrade_real import Runner

    ws, host, binaries, (older, newer) = setup
    address = subprocess.run(["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}",
                              host.container], capture_output=True, text=True,
                             check=True).stdout.strip()
    port = 3340
    stack = _stack(ws, host, binaries[older], older, "upgrade", backendPort=port,
                   sitePort=port + 1, bindAddress=address,
                   cloudOrigin=f"http://{address}:{port}",
                   siteOrigin=f"http://{address}:{port + 1}")
    ws.pulumi("up", "--yes", "--skip-preview", stack=stack)
    instance = ws.outputs(stack)["instanceName"]
    runner = Runner(ws, tmp_path, stack, port, shim_env=False)
    runner.backend_host, runner.to = address, newer
    path, sha = binaries[newer]
    done, backup = runner.run("--binary", str(path), "--binary-sha256", sha,
                              synthetic_migration=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "preview: only the binary's stage, install and health steps change" in done.stdout
    assert f"upgraded {stack} to {newer[:12]}" in done.stdout
    version = host.ssh(f"curl -fsS http://{address}:{port}/version").stdout.strip()
    assert version == newer
    seen = runner.seen.read_text()
    print(f"\njournal lines read over SSH: {len(seen.splitlines())}, e.g. "
          f"{seen.splitlines()[0][:100]!r}")
    assert f"instance {instance}" in seen  # the new binary's start, from the real journal
    log = (backup / "upgrade.log").read_text()
    assert "failed (exit" not in log and ws.outputs(stack)["adminKey"] not in log
    assert _changes(ws, stack) == []

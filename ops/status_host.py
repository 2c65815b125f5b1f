"""`./status.sh` on the host target: the systemd units on the host, read over SSH with the
stack's pinned host key (ops/upgrade_host.py), besides the backend checked from here.

One remote command per deployment prints `name=value` lines: the backend unit's state;
with scheduled backups, the timer's state, its last and next elapse, the last run's result,
and the backup client's own `health` line (the last run's record in the backup directory).
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from typing import Callable, Optional

from components.core.backups import ENTRY
from components.host.unit import (
    BACKUP_RUN_TIMEOUT_SECONDS,
    BACKUP_STOP_MARGIN_SECONDS,
    INSTALL_ROOT,
    backup_dir_for,
    unit_name_for,
)
from ops.backup_cron import CronError, parse_cron
from ops.commands import last_line

SSH_TIMEOUT = 60


def remote_script(instance: str, backups: bool) -> str:
    """The read-only remote command (as root, or with sudo -n) for one deployment."""
    unit = unit_name_for(instance)
    lines = [f"printf 'unit=%s\\n' \"$(systemctl is-active {shlex.quote(unit)})\""]
    if backups:
        timer = unit.replace(".service", "-backup.timer")
        service = unit.replace(".service", "-backup.service")
        client = f"{INSTALL_ROOT}/{instance}/{ENTRY}"
        dest = f"/var/lib/{backup_dir_for(instance)}"
        lines += [
            f"printf 'timer=%s\\n' \"$(systemctl is-active {shlex.quote(timer)})\"",
            f"printf 'last=%s\\n' \"$(systemctl show -p LastTriggerUSec --value "
            f"{shlex.quote(timer)})\"",
            f"printf 'next=%s\\n' \"$(systemctl show -p NextElapseUSecRealtime --value "
            f"{shlex.quote(timer)})\"",
            f"printf 'result=%s\\n' \"$(systemctl show -p Result --value "
            f"{shlex.quote(service)})\"",
            f"printf 'health=%s\\n' \"$(python3 {shlex.quote(client)} health --dest "
            f"{shlex.quote(dest)} 2>&1 | tail -n 1)\""]
    return "; ".join(lines)


def parse(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name in ("unit", "timer", "last", "next", "result", "health"):
            found[name] = value.strip()
    return found


def overdue(last: str, cron: str, now: dt.datetime) -> Optional[str]:
    """When LAST (an ISO 8601 time with its zone: the last successful run, or since when
    one was expected) is older than two scheduled times plus a run's bound, the moment one
    was due by; else None."""
    try:
        finished = dt.datetime.fromisoformat(last.replace("Z", "+00:00")) if last else None
        schedule = parse_cron(cron)
    except (ValueError, CronError):
        return None
    if finished is None or finished.tzinfo is None:
        return None
    due = schedule.next_after(schedule.next_after(finished)) + dt.timedelta(
        seconds=BACKUP_RUN_TIMEOUT_SECONDS + BACKUP_STOP_MARGIN_SECONDS)
    return due.isoformat(timespec="seconds") if now > due else None


def check_host(settings, instance: str, report, run: Callable,
               now: Optional[dt.datetime] = None) -> None:
    """Report the units of INSTANCE on the stack's host (report.ok / report.fail)."""
    from ops.upgrade_host import ssh_command
    from ops.upgrade_local import UpgradeError

    host = settings.host
    script = remote_script(instance, settings.backups is not None)
    command = f"bash -c {shlex.quote(script)}"
    if host.user != "root":
        command = f"sudo -n {command}"
    try:
        with ssh_command(host) as ssh:
            done = run(ssh(command), SSH_TIMEOUT)
    except UpgradeError as error:
        report.fail(str(error).replace(" Nothing was changed.", ""))
        return
    seen = parse(done.stdout)
    unit = unit_name_for(instance)
    if done.returncode != 0 or "unit" not in seen:
        report.fail(f"cannot read the units on {host.address} over SSH: "
                    f"{last_line(done.stderr)}")
        return
    if seen["unit"] == "active":
        report.ok(f"{unit} is active on {host.address}")
    else:
        report.fail(f"{unit} is {seen['unit'] or 'unknown'} on {host.address} "
                    f"(`journalctl -u {unit}` there)")
    if settings.backups is None:
        return
    timer = unit.replace(".service", "-backup.timer")
    if seen.get("timer") == "active":
        report.ok(f"{timer} is active (last {seen.get('last') or 'never'}, next "
                  f"{seen.get('next') or 'unknown'})")
    else:
        report.fail(f"{timer} is {seen.get('timer') or 'unknown'}: no backups are scheduled")
    health = seen.get("health", "")
    if seen.get("result") not in ("success", "") or "health failed" in health:
        report.fail(f"the last backup failed ({seen.get('result')}): {health} "
                    f"(`journalctl -u {timer.replace('.timer', '.service')}` there)")
    elif health.startswith("convex-backup health ok"):
        found = re.search(r"last=(\S+)", health)
        late = overdue(found[1] if found else "", settings.backups.schedule,
                       now or dt.datetime.now(dt.timezone.utc))
        if late:
            report.fail(f"backups: no successful run since the last one; one was due by {late} "
                        f"(cron {settings.backups.schedule}): {health}")
        else:
            report.ok(f"backups: {health.removeprefix('convex-backup ')}")
    else:
        report.fail(f"backups: no health from the client ({health or 'no output'})")

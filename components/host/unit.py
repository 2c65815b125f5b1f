"""The files the host target writes: the systemd unit and its environment file.

Pure functions of a deployment spec, so every byte is tested. Values come validated from
the settings; they are still quoted for systemd, so none can add a line or an argument.
"""

from __future__ import annotations

from components.core.backend import binary_invocation
from components.core.backups import ENTRY, offsite_arguments
from components.core.spec import DeploymentSpec
from ops.backup_cron import parse_cron

INSTALL_ROOT = "/opt/convex-selfhost"  # the binary: <root>/<instance>/convex-local-backend
CONFIG_DIR = "/etc/convex-selfhost"  # <instance>.env, mode 600, root only
# Uploads before they are installed; not under /var/lib/convex-selfhost, where systemd
# links the units' state directories and a private stage directory would block them.
STAGE_DIR = "/var/lib/convex-selfhost-stage"
CA_FILE = "database-ca.pem"  # beside the env file
# restartPolicy as systemd's Restart=; unless-stopped has no systemd twin: `systemctl stop`
# already keeps a unit stopped until the next start.
RESTART = {"no": "no", "on-failure": "on-failure", "always": "always",
           "unless-stopped": "always"}


def unit_name(spec: DeploymentSpec) -> str:
    """convex-prod.service for the default instance names, convex-<name>.service else."""
    return unit_name_for(spec.instance_name)


def unit_name_for(instance_name: str) -> str:
    name = instance_name
    return f"{name}.service" if name.startswith("convex-") else f"convex-{name}.service"


def binary_path(spec: DeploymentSpec) -> str:
    return f"{INSTALL_ROOT}/{spec.instance_name}/convex-local-backend"


def env_path(spec: DeploymentSpec) -> str:
    return f"{CONFIG_DIR}/{spec.instance_name}.env"


def ca_path(spec: DeploymentSpec) -> str:
    return f"{CONFIG_DIR}/{spec.instance_name}-{CA_FILE}"


def state_dir(spec: DeploymentSpec) -> str:
    """StateDirectory= of the unit (under /var/lib; /var/lib/private with DynamicUser)."""
    return f"convex-selfhost/{spec.instance_name}"


def _argument(value: str) -> str:
    """One ExecStart argument: `${NAME}` references stay as they are (systemd expands them
    to one word from the environment file), anything else is quoted literally."""
    if value.startswith("${") and value.endswith("}") and value[2:-1].isidentifier():
        return value
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
               .replace("$", "$$"))
    return f'"{escaped}"'


def invocation(spec: DeploymentSpec) -> tuple[list[str], list[tuple[str, str]]]:
    return binary_invocation(spec, storage_dir="storage", sqlite_path="db.sqlite3",
                             ca_cert_path=ca_path(spec))


BACKUP_SCRIPT = ENTRY  # ops/backup.py (and its modules), beside the binary


def backup_unit_name(spec: DeploymentSpec) -> str:
    return unit_name(spec).replace(".service", "-backup.service")


def backup_env_path(spec: DeploymentSpec) -> str:
    return f"{CONFIG_DIR}/{spec.instance_name}-backup.env"


def backup_dir(spec: DeploymentSpec) -> str:
    """StateDirectory= of the backup unit: the snapshots, kept on destroy."""
    return backup_dir_for(spec.instance_name)


def backup_dir_for(instance_name: str) -> str:
    return f"convex-selfhost-backups/{instance_name}"


_HARDENING = ["NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
              "PrivateTmp=yes", "PrivateDevices=yes", "ProtectKernelTunables=yes",
              "ProtectKernelModules=yes", "ProtectControlGroups=yes", "ProtectProc=invisible",
              "RestrictSUIDSGID=yes", "RestrictRealtime=yes", "LockPersonality=yes",
              "UMask=0077"]


def backup_timer_name(spec: DeploymentSpec) -> str:
    return unit_name(spec).replace(".service", "-backup.timer")


# A run is bounded by the client's own --timeout (its default, 1800 s); systemd stops a
# run that somehow outlives it by this much.
BACKUP_RUN_TIMEOUT_SECONDS = 1800
BACKUP_STOP_MARGIN_SECONDS = 300
_WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


def _calendar_list(values: frozenset[int], low: int, high: int) -> str:
    if values == frozenset(range(low, high + 1)):
        return "*"
    return ",".join(f"{v:02d}" for v in sorted(values))


def on_calendar(cron: str) -> list[str]:
    """systemd OnCalendar= expressions (UTC) that elapse exactly when the 5-field cron
    expression does. Cron runs when day-of-month OR day-of-week matches if both are
    restricted (neither starts with "*"), and systemd ANDs them: that case is two lines."""
    schedule = parse_cron(cron)
    time_part = (f"{_calendar_list(schedule.hours, 0, 23)}:"
                 f"{_calendar_list(schedule.minutes, 0, 59)}:00 UTC")
    months = _calendar_list(schedule.months, 1, 12)
    days = _calendar_list(schedule.days, 1, 31)
    weekdays = ("" if schedule.weekdays == frozenset(range(7)) else
                ",".join(_WEEKDAYS[d] for d in sorted(schedule.weekdays)) + " ")
    if schedule.any_day:
        return [f"{weekdays}*-{months}-{days} {time_part}"]
    return [f"{weekdays}*-{months}-* {time_part}", f"*-{months}-{days} {time_part}"]


def backup_unit_file(spec: DeploymentSpec) -> str:
    """One run of the same backup client as the Docker target's sidecar; its timer
    (backup_timer_file) starts it on the schedule. A failed run leaves the unit failed."""
    backups = spec.backups
    script = f"{INSTALL_ROOT}/{spec.instance_name}/{BACKUP_SCRIPT}"
    arguments = ["once", "--url", f"http://{spec.bind_address}:{spec.backend_port}",
                 "--dest", f"%S/{backup_dir(spec)}", "--keep", str(backups.keep),
                 "--timeout", str(BACKUP_RUN_TIMEOUT_SECONDS),
                 *offsite_arguments(backups, spec.instance_name)]
    exec_start = " ".join(["/usr/bin/python3", _argument(script),
                           *(a if a.startswith("%S/") else _argument(a) for a in arguments)])
    return "\n".join([
        "# Written by convex-selfhost; `pulumi up` replaces it.",
        "[Unit]",
        f"Description=Backup of Convex backend {spec.instance_name} (convex-selfhost)",
        f"After={unit_name(spec)}",
        "",
        "[Service]",
        "Type=oneshot",
        "DynamicUser=yes",
        f"StateDirectory={backup_dir(spec)}",
        "StateDirectoryMode=0700",
        f"EnvironmentFile={backup_env_path(spec)}",
        f"ExecStart={exec_start}",
        f"TimeoutStartSec={BACKUP_RUN_TIMEOUT_SECONDS + BACKUP_STOP_MARGIN_SECONDS}",
        *_HARDENING,
        "",
    ])


def backup_timer_file(spec: DeploymentSpec) -> str:
    """The schedule (backupSchedule, UTC) as a timer; Persistent= runs a backup missed
    while the host was off once it is back."""
    return "\n".join([
        "# Written by convex-selfhost; `pulumi up` replaces it.",
        "[Unit]",
        f"Description=Scheduled backups of Convex backend {spec.instance_name} "
        f"(convex-selfhost; cron {spec.backups.schedule} UTC)",
        "",
        "[Timer]",
        *(f"OnCalendar={expr}" for expr in on_calendar(spec.backups.schedule)),
        "Persistent=yes",
        "AccuracySec=1s",
        f"Unit={backup_unit_name(spec)}",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])


def unit_file(spec: DeploymentSpec) -> str:
    arguments, _ = invocation(spec)
    exec_start = " ".join([binary_path(spec), *map(_argument, arguments)])
    r = spec.resources
    limits = []
    if r.memory_limit_mb:
        limits.append(f"MemoryMax={r.memory_limit_mb}M")
    if r.cpus:
        limits.append(f"CPUQuota={round(float(r.cpus) * 100)}%")
    lines = [
        "# Written by convex-selfhost; `pulumi up` replaces it.",
        "[Unit]",
        f"Description=Convex backend {spec.instance_name} (convex-selfhost)",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        # A user of its own, made for the unit; the data stays in the state directory.
        "DynamicUser=yes",
        f"StateDirectory={state_dir(spec)}",
        "StateDirectoryMode=0700",
        f"WorkingDirectory=%S/{state_dir(spec)}",
        f"EnvironmentFile={env_path(spec)}",
        # Temporary files on the data's file system: the backend renames them into place.
        f"Environment=TMPDIR=%S/{state_dir(spec)}/tmp",
        "ExecStartPre=/bin/mkdir -p tmp storage",
        f"ExecStart={exec_start}",
        f"Restart={RESTART.get(r.restart_policy, 'on-failure')}",
        "RestartSec=2",
        # As upstream's compose file: SIGINT, then 10 s to stop.
        "KillSignal=SIGINT",
        "TimeoutStopSec=10",
        *_HARDENING,
        *limits,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def env_file(entries: list[tuple[str, str]]) -> str:
    """An EnvironmentFile: NAME="value" lines (systemd reads quotes and backslashes)."""
    lines = ["# Written by convex-selfhost; secrets: mode 600, root only."]
    for name, value in entries:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{name}="{escaped}"')
    return "\n".join(lines) + "\n"

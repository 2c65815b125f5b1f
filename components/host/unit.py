"""The files the host target writes: the systemd unit and its environment file.

Pure functions of a deployment spec, so every byte is tested. Values come validated from
the settings; they are still quoted for systemd, so none can add a line or an argument.
"""

from __future__ import annotations

from components.core.backend import binary_invocation
from components.core.spec import DeploymentSpec

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
    name = spec.instance_name
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


BACKUP_SCRIPT = "convex_backup.py"  # ops/backup.py, beside the binary


def backup_unit_name(spec: DeploymentSpec) -> str:
    return unit_name(spec).replace(".service", "-backup.service")


def backup_env_path(spec: DeploymentSpec) -> str:
    return f"{CONFIG_DIR}/{spec.instance_name}-backup.env"


def backup_dir(spec: DeploymentSpec) -> str:
    """StateDirectory= of the backup unit: the snapshots, kept on destroy."""
    return f"convex-selfhost-backups/{spec.instance_name}"


_HARDENING = ["NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
              "PrivateTmp=yes", "PrivateDevices=yes", "ProtectKernelTunables=yes",
              "ProtectKernelModules=yes", "ProtectControlGroups=yes", "ProtectProc=invisible",
              "RestrictSUIDSGID=yes", "RestrictRealtime=yes", "LockPersonality=yes",
              "UMask=0077"]


def backup_unit_file(spec: DeploymentSpec) -> str:
    """The same backup client as the Docker target's sidecar, in its schedule mode, as a
    unit of its own beside the backend's."""
    backups = spec.backups
    script = f"{INSTALL_ROOT}/{spec.instance_name}/{BACKUP_SCRIPT}"
    arguments = ["schedule", "--url", f"http://{spec.bind_address}:{spec.backend_port}",
                 "--dest", f"%S/{backup_dir(spec)}", "--keep", str(backups.keep),
                 "--cron", backups.schedule]
    exec_start = " ".join(["/usr/bin/python3", _argument(script),
                           *(a if a.startswith("%S/") else _argument(a) for a in arguments)])
    return "\n".join([
        "# Written by convex-selfhost; `pulumi up` replaces it.",
        "[Unit]",
        f"Description=Scheduled backups of Convex backend {spec.instance_name} (convex-selfhost)",
        f"After={unit_name(spec)}",
        "",
        "[Service]",
        "Type=simple",
        "DynamicUser=yes",
        f"StateDirectory={backup_dir(spec)}",
        "StateDirectoryMode=0700",
        f"EnvironmentFile={backup_env_path(spec)}",
        f"ExecStart={exec_start}",
        "Restart=on-failure",
        "RestartSec=10",
        *_HARDENING,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
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

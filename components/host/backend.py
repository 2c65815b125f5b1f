"""ConvexHostBackend: the binary, its systemd unit and a health gate, on one host over SSH.

Three pulumi-command resources, in order:
- `stage`: the binary reaches the host: uploaded (CopyToRemote) from a file you downloaded,
  or downloaded by the host from a URL; its SHA-256 is checked on the host either way.
- `install`: installs the staged binary beside the running one and renames it into place
  (a running binary cannot be overwritten), writes the environment file (mode 600) and the
  unit, and restarts the unit. Its script is the command's stdin, a secret: the secrets in
  it never reach a command line, the log or the state in plain text. Any change of binary,
  unit or environment runs it again (update, no replacement); `pulumi destroy` stops and
  removes the unit, keeping the data directory.
- `healthy`: waits, bounded, until the backend answers /version on the host; until then
  `pulumi up` fails, and the next one waits again.
Command outputs are secret in the state (`additional_secret_outputs`): pulumi-command
stores stdout and stderr in plain text otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_command import remote

from components.core.backups import client_files
from components.core.spec import DeploymentSpec
from components.host import unit

SECRET_OUTPUTS = ["stdout", "stderr"]


@dataclass(frozen=True)
class HostConnection:
    address: str
    port: int
    user: str
    private_key: Optional[str]  # secret; None: the SSH agent (SSH_AUTH_SOCK)
    host_key: str  # pinned: the connection fails unless the host presents this key

    def args(self) -> remote.ConnectionArgs:
        return remote.ConnectionArgs(
            host=self.address, port=self.port, user=self.user,
            private_key=pulumi.Output.secret(self.private_key) if self.private_key else None,
            host_key=self.host_key,
            dial_error_limit=5, per_dial_timeout=15)

    def as_root(self, script: str) -> str:
        """The command line that runs SCRIPT with bash as root (sudo -n unless root)."""
        line = f"bash -c {shlex.quote(script)}"
        return line if self.user == "root" else f"sudo -n {line}"

    def root_shell(self) -> str:
        """bash as root reading its script from stdin: errors then quote this short command
        line, not the script, and a script holding secrets travels as a secret stdin."""
        return "bash -s" if self.user == "root" else "sudo -n bash -s"


@dataclass(frozen=True)
class BinarySource:
    sha256: str
    path: str = ""  # a local file, or
    url: str = ""  # https, downloaded by the host


@dataclass(frozen=True)
class HostBackendArgs:
    spec: DeploymentSpec
    connection: HostConnection
    binary: BinarySource
    environment: pulumi.Input[str]  # the EnvironmentFile's content (secret)
    ca_certificate: str = ""  # PEM, external databases only
    # With scheduled backups: the backup unit's EnvironmentFile (the admin key; secret).
    backup_environment: Optional[pulumi.Input[str]] = None


def staged_path(spec: DeploymentSpec, sha256: str) -> str:
    return f"{unit.STAGE_DIR}/{spec.instance_name}-{sha256[:16]}"


def stage_script(spec: DeploymentSpec, binary: BinarySource) -> str:
    """Bring the binary to the stage directory, checked against its SHA-256: downloaded by
    the host (URL), or uploaded beforehand (file). Upstream's releases are zip files
    holding `convex-local-backend`; a zip is unpacked after the check."""
    staged = shlex.quote(staged_path(spec, binary.sha256))
    download = f"{staged}.download"
    lines = ["set -euo pipefail", "umask 077"]
    if binary.url:
        lines += [
            "command -v curl >/dev/null || { echo 'curl is not installed on the host' >&2; "
            "exit 1; }",
            f"curl -fsSL --proto =https --max-time 600 -o {download} {shlex.quote(binary.url)}",
        ]
    lines += [
        f"echo {shlex.quote(binary.sha256)} {download} | sha256sum -c --quiet --strict || "
        f"{{ echo 'the binary does not match backendBinarySha256' >&2; rm -f {download}; "
        "exit 1; }",
        f'if [ "$(head -c 2 {download})" = PK ]; then',
        f"  python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1])"
        f".read(\"convex-local-backend\"))' {download} > {staged}",
        f"  rm -f {download}",
        "else",
        f"  mv -f {download} {staged}",
        "fi",
    ]
    return "\n".join(lines)


def _backup_lines(spec: DeploymentSpec, backup_environment: Optional[str]) -> list[str]:
    """Install (or, without a schedule, remove) the backup service and its timer."""
    service = shlex.quote(unit.backup_unit_name(spec))
    timer = shlex.quote(unit.backup_timer_name(spec))
    units = f"/etc/systemd/system/{service} /etc/systemd/system/{timer}"
    if spec.backups is None or backup_environment is None:
        return [f"if [ -e /etc/systemd/system/{service} ]; then",
                f"  systemctl disable --now --quiet {timer} {service} 2>/dev/null || true",
                f"  rm -f {units} {shlex.quote(unit.backup_env_path(spec))}",
                "  systemctl daemon-reload",
                "fi"]
    directory = f"{unit.INSTALL_ROOT}/{spec.instance_name}"
    env = shlex.quote(unit.backup_env_path(spec))
    lines = [
        "command -v python3 >/dev/null || { echo 'python3 is not installed on the host "
        "(scheduled backups run the backup client with it)' >&2; exit 1; }",
        # Earlier releases ran the client in its schedule mode as a service of its own.
        f"if grep -qs '\"schedule\"' /etc/systemd/system/{service}; then",
        f"  systemctl disable --now --quiet {service} || true",
        "fi",
        f"echo {base64.b64encode(backup_environment.encode()).decode()} | base64 -d > {env}.new",
        f"chmod 600 {env}.new",
        f"mv -f {env}.new {env}",
    ]
    for name, text in client_files().items():  # the client and its modules, side by side
        path = shlex.quote(f"{directory}/{name}")
        lines += [f"echo {base64.b64encode(text.encode()).decode()} | base64 -d > {path}.new",
                  f"chmod 644 {path}.new", f"mv -f {path}.new {path}"]
    for name, text in ((service, unit.backup_unit_file(spec)),
                       (timer, unit.backup_timer_file(spec))):
        lines += [f"echo {base64.b64encode(text.encode()).decode()} | base64 -d > "
                  f"/etc/systemd/system/{name}.new",
                  f"mv -f /etc/systemd/system/{name}.new /etc/systemd/system/{name}"]
    return lines + [
        "systemctl daemon-reload",
        # A run in progress finishes; the next one uses the new files.
        f"systemctl enable --quiet {timer}",
        f"systemctl restart {timer}",
    ]


def install_script(spec: DeploymentSpec, sha256: str, ca_certificate: str,
                   environment: str, backup_environment: Optional[str] = None) -> str:
    staged = shlex.quote(staged_path(spec, sha256))
    binary = shlex.quote(unit.binary_path(spec))
    env = shlex.quote(unit.env_path(spec))
    service = shlex.quote(unit.unit_name(spec))
    unit_b64 = base64.b64encode(unit.unit_file(spec).encode()).decode()
    lines = [
        "set -euo pipefail",
        "umask 077",
        f"test -s {staged} || {{ echo 'the staged binary is missing; run pulumi up again' "
        ">&2; exit 1; }",
        f"install -d -m 0755 {shlex.quote(unit.INSTALL_ROOT)} "
        f"{shlex.quote(unit.INSTALL_ROOT + '/' + spec.instance_name)}",
        # A running binary cannot be overwritten: install beside it, rename over it.
        f"install -m 0755 {staged} {binary}.new",
        f"mv -f {binary}.new {binary}",
        f"install -d -m 0700 {shlex.quote(unit.CONFIG_DIR)}",
        # The environment file holds secrets: this script reaches the host as secret stdin.
        f"echo {base64.b64encode(environment.encode()).decode()} | base64 -d > {env}.new",
        f"chmod 600 {env}.new",
        f"mv -f {env}.new {env}",
    ]
    if ca_certificate:
        ca_b64 = base64.b64encode(ca_certificate.encode()).decode()
        lines.append(f"echo {ca_b64} | base64 -d > {shlex.quote(unit.ca_path(spec))}")
        lines.append(f"chmod 644 {shlex.quote(unit.ca_path(spec))}")
    lines += [
        f"echo {unit_b64} | base64 -d > /etc/systemd/system/{service}.new",
        f"mv -f /etc/systemd/system/{service}.new /etc/systemd/system/{service}",
        "systemctl daemon-reload",
        f"systemctl enable --quiet {service}",
        f"systemctl restart {service} || {{ systemctl status {service} --no-pager -n 15 >&2; "
        "exit 1; }",
        *_backup_lines(spec, backup_environment),
        # The instance secret is on the binary's command line (upstream takes it no other
        # way). /proc mounted hidepid=invisible hides it from other users' `ps`, but not
        # from `systemctl status`: only administrators may log into such a host.
        "grep -qE '^proc /proc proc .*hidepid=(2|invisible)' /proc/mounts || echo "
        "'warning: /proc is not mounted hidepid=invisible: every user of this host can read "
        "the instance secret from the backend command line (ps). Even with it, systemctl "
        "status shows it: let only administrators log into this host.' >&2",
    ]
    return "\n".join(lines)


def remove_script(spec: DeploymentSpec) -> str:
    service = shlex.quote(unit.unit_name(spec))
    backup = shlex.quote(unit.backup_unit_name(spec))
    timer = shlex.quote(unit.backup_timer_name(spec))
    return "\n".join([
        "set -uo pipefail",
        f"systemctl disable --now --quiet {timer} {backup} {service} 2>/dev/null || true",
        f"rm -f /etc/systemd/system/{service} /etc/systemd/system/{backup} "
        f"/etc/systemd/system/{timer} "
        f"{shlex.quote(unit.env_path(spec))} {shlex.quote(unit.backup_env_path(spec))} "
        f"{shlex.quote(unit.ca_path(spec))}",
        f"rm -rf {shlex.quote(unit.INSTALL_ROOT + '/' + spec.instance_name)}",
        "systemctl daemon-reload",
        # The data and backup directories (StateDirectory) stay: removing them is deliberate.
    ])


def health_script(spec: DeploymentSpec, timeout_seconds: int) -> str:
    url = shlex.quote(f"http://{spec.bind_address}:{spec.backend_port}/version")
    service = shlex.quote(unit.unit_name(spec))
    return "\n".join([
        "set -uo pipefail",
        "command -v curl >/dev/null || { echo 'curl is not installed on the host' >&2; "
        "exit 1; }",
        f"deadline=$((SECONDS + {int(timeout_seconds)}))",
        f"until curl -fsS --max-time 5 -o /dev/null {url} 2>/dev/null; do",
        "  if [ $SECONDS -ge $deadline ]; then",
        f"    echo \"the backend did not answer {url} within {int(timeout_seconds)}s; "
        f"last log lines (journalctl -u {service}):\" >&2",
        f"    journalctl -u {service} -n 15 --no-pager -o cat >&2 || true",
        "    exit 1",
        "  fi",
        "  sleep 1",
        "done",
    ])


class ConvexHostBackend(pulumi.ComponentResource):
    """The backend binary under systemd on one host, healthy before `up` ends."""

    stage: pulumi.Resource
    install: remote.Command
    healthy: remote.Command

    def __init__(self, name: str, args: HostBackendArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:HostBackend", name, None, opts)
        spec, connection = args.spec, args.connection.args()
        secret_outputs = pulumi.ResourceOptions(parent=self,
                                                additional_secret_outputs=SECRET_OUTPUTS)
        self.stage = self._stage(name, args, connection, secret_outputs)
        install = pulumi.Output.secret(pulumi.Output.all(
            args.environment, args.backup_environment).apply(
                lambda envs: install_script(spec, args.binary.sha256, args.ca_certificate,
                                            envs[0], envs[1])))
        shell = args.connection.root_shell()
        self.install = remote.Command(
            f"{name}-install", connection=connection, create=shell, update=shell,
            delete=args.connection.as_root(remove_script(spec)),
            stdin=install,
            opts=pulumi.ResourceOptions.merge(secret_outputs, pulumi.ResourceOptions(
                depends_on=[self.stage])))
        # Waits again whenever the install ran again (another binary, unit or environment).
        fingerprint = pulumi.Output.secret(install.apply(
            lambda script: hashlib.sha256(script.encode()).hexdigest()))
        self.healthy = remote.Command(
            f"{name}-healthy", connection=connection, create="bash -s",
            stdin=health_script(spec, spec.resources.backend_start_timeout_seconds),
            triggers=[fingerprint],
            opts=pulumi.ResourceOptions.merge(secret_outputs, pulumi.ResourceOptions(
                depends_on=[self.install])))
        self.register_outputs({"unit": unit.unit_name(spec)})

    def _stage(self, name, args, connection, opts) -> pulumi.Resource:
        spec, binary = args.spec, args.binary
        if binary.url:
            script = stage_script(spec, binary)
            return remote.Command(f"{name}-stage", connection=connection,
                                  create=args.connection.as_root(script),
                                  triggers=[binary.sha256, binary.url], opts=opts)
        # The upload runs as the SSH user: the stage directory is theirs.
        owner = shlex.quote(args.connection.user)
        prepare = remote.Command(
            f"{name}-stage-dir", connection=connection,
            create=args.connection.as_root(f"umask 077 && mkdir -p {unit.STAGE_DIR} && "
                                           f"chown {owner} {unit.STAGE_DIR}"),
            opts=opts)
        upload = remote.CopyToRemote(
            f"{name}-upload", connection=connection,
            source=pulumi.FileAsset(binary.path),
            remote_path=staged_path(spec, binary.sha256) + ".download",
            triggers=[binary.sha256],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[prepare]))
        return remote.Command(
            f"{name}-stage", connection=connection,
            create=args.connection.as_root(stage_script(spec, binary)),
            triggers=[binary.sha256], opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(depends_on=[upload])))

"""Test hosts for the host target: the systemd + sshd stand-in container, and the stand-in
``convex-local-backend`` executable to deploy to it.

    with running_host() as host:
        host.ssh("systemctl is-system-running")
        host.connection()   # host/port/user/private_key, as pulumi-command's Connection

A host is `convex-standin-host:bookworm` (tests/standins/build.sh builds it; see
tests/standins/host/README.md) run with the options systemd needs without --privileged,
on a loopback port Docker picks, with a fresh ed25519 key pair (in a temporary
directory) authorized for `root` and for the sudo user `deploy`. Its host key is read
through `docker exec`, not over SSH, so every `ssh` here checks it
(StrictHostKeyChecking=yes against a known_hosts file holding only that key).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
HOST_IMAGE = "convex-standin-host:bookworm"
ENABLE_VAR = "CONVEX_SELFHOST_INTEGRATION"
CONTAINER_LABEL = "org.convex-selfhost.test=hosttarget"
# What systemd needs as PID 1 in a container here (--privileged is refused).
SYSTEMD_RUN_OPTIONS = ("--cap-add", "SYS_ADMIN", "--cgroupns=private", "--tmpfs", "/run",
                       "--tmpfs", "/run/lock", "--stop-signal", "SIGRTMIN+3")
HOST_KEY_FILE = "/etc/ssh/ssh_host_ed25519_key.pub"
BUILD_BINARY = REPO / "tests" / "standins" / "host" / "build_binary.py"


class HostError(RuntimeError):
    """The test host did not come up, or a command on it failed."""


# --------------------------------------------------------------------------- skipping


def docker_problem() -> Optional[str]:
    """Why no Docker engine can be used here; None when `docker info` answers."""
    if shutil.which("docker") is None:
        return "the Docker CLI (`docker`) is not on PATH"
    try:
        done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`docker info` failed: {error}"
    if done.returncode != 0 or not done.stdout.strip():
        lines = (done.stderr or done.stdout).strip().splitlines()
        return ("no Docker engine answers `docker info`: "
                + (lines[-1] if lines else f"exit code {done.returncode}")
                + " (tests/standins/start-dockerd.sh starts one)")
    return None


def skip_reason(image: str = HOST_IMAGE) -> Optional[str]:
    """Why the host tests cannot run here, naming every missing piece; None if they can."""
    missing = []
    if os.environ.get(ENABLE_VAR) != "1":
        missing.append(f"opt-in: set {ENABLE_VAR}=1 to run them")
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            missing.append(f"`{tool}` is not on PATH (apt-get install openssh-client)")
    problem = docker_problem()
    if problem:
        missing.append(problem)
    elif subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
        missing.append(f"the image {image} is missing (tests/standins/build.sh builds it)")
    return "; ".join(missing) or None


# --------------------------------------------------------------------------- the binary


@functools.lru_cache(maxsize=None)
def _build_binary_module():
    spec = importlib.util.spec_from_file_location("standin_build_binary", BUILD_BINARY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=None)
def _launcher() -> bytes:
    return _build_binary_module().build_launcher()


def can_build_elf() -> bool:
    return shutil.which("go") is not None


def standin_binary(version: Optional[str], dest_dir: "str | os.PathLike[str]",
                   elf: Optional[bool] = None) -> tuple[Path, str]:
    """Build the stand-in convex-local-backend for `version` (None: no version baked in)
    as `dest_dir/convex-local-backend`; return (path, sha256 hex).

    elf=True: a real ELF executable (needs Go; a running copy cannot be written over, as
    with upstream's binary); False: a Python zip application; None: ELF when Go is here."""
    if elf is None:
        elf = can_build_elf()
    path = Path(dest_dir) / "convex-local-backend"
    return path, _build_binary_module().build(version, path, _launcher() if elf else None)


def is_elf(path: "str | os.PathLike[str]") -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def standin_versions() -> tuple[str, str]:
    """Two versions to build (older, newer): the pinned releases of the Docker stand-ins."""
    return tuple(_build_binary_module().DEFAULT_VERSIONS)


# --------------------------------------------------------------------------- the host


@dataclass
class Host:
    """A running test host. `user` is root; `deploy` has the same key and sudo."""

    container: str
    name: str
    address: str
    port: int
    private_key: str
    public_key: str
    private_key_path: Path
    host_key: str  # "ssh-ed25519 AAAA..."
    known_hosts_path: Path
    workdir: Path
    user: str = "root"
    _removed: bool = field(default=False, repr=False)

    @property
    def known_hosts_line(self) -> str:
        """The host key pinned to this address and port (OpenSSH known_hosts form)."""
        return f"[{self.address}]:{self.port} {self.host_key}"

    def connection(self, user: Optional[str] = None) -> dict:
        """pulumi-command's Connection arguments (Python names) for this host."""
        return {"host": self.address, "port": self.port, "user": user or self.user,
                "private_key": self.private_key}

    def ssh_command(self, user: Optional[str] = None) -> list[str]:
        return ["ssh", "-F", "/dev/null", "-i", str(self.private_key_path), "-p", str(self.port),
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts_path}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
                "-o", "LogLevel=ERROR", f"{user or self.user}@{self.address}"]

    def ssh(self, command: str, *, user: Optional[str] = None, input: Optional[bytes] = None,
            check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a shell command on the host over SSH; text output."""
        done = subprocess.run(self.ssh_command(user) + [command], input=input,
                              capture_output=True, timeout=timeout)
        result = subprocess.CompletedProcess(
            done.args, done.returncode, done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"))
        if check and result.returncode != 0:
            raise HostError(f"ssh {command!r} exited {result.returncode}:\n"
                            f"{result.stdout}{result.stderr}")
        return result

    def put(self, local: "str | os.PathLike[str]", remote: str, mode: str = "0755") -> None:
        """Copy a file to the host over SSH (no scp/sftp needed)."""
        q = shlex.quote
        self.ssh(f"install -d {q(os.path.dirname(remote) or '.')} && "
                 f"cat > {q(remote)}.part && chmod {mode} {q(remote)}.part && "
                 f"mv -f {q(remote)}.part {q(remote)}", input=Path(local).read_bytes())

    def exec(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        """`docker exec` on the host (a channel that does not depend on SSH)."""
        done = subprocess.run(["docker", "exec", self.container, *command],
                              capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise HostError(f"docker exec {command} exited {done.returncode}:\n"
                            f"{done.stdout}{done.stderr}")
        return done

    def diagnostics(self) -> str:
        parts = []
        for command in (["systemctl", "is-system-running"], ["systemctl", "--failed", "--no-pager"],
                        ["journalctl", "-b", "--no-pager", "-n", "40"]):
            done = subprocess.run(["docker", "exec", self.container, *command],
                                  capture_output=True, text=True, timeout=30)
            parts.append(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}")
        return "\n".join(parts)

    def remove(self) -> None:
        if self._removed:
            return
        self._removed = True
        subprocess.run(["docker", "rm", "-f", "-v", self.container], capture_output=True,
                       timeout=120)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _docker(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise HostError(f"docker {' '.join(args)} exited {done.returncode}: "
                        f"{(done.stderr or done.stdout).strip()}")
    return done.stdout.strip()


def start_host(*, image: str = HOST_IMAGE, name: Optional[str] = None,
               boot_timeout: float = 90, extra_run_args: Sequence[str] = ()) -> Host:
    """Start a host container and wait (at most `boot_timeout` s) until SSH logins work."""
    workdir = Path(tempfile.mkdtemp(prefix="convex-host-"))
    key_path = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "convex-selfhost-test",
                    "-f", str(key_path)], check=True, capture_output=True)
    public_key = key_path.with_suffix(".pub").read_text().strip()
    name = name or f"convex-host-{uuid.uuid4().hex[:8]}"
    try:
        container = _docker("run", "-d", "--name", name, "--hostname", name,
                            "--label", CONTAINER_LABEL, *SYSTEMD_RUN_OPTIONS,
                            "-p", "127.0.0.1::22", "-e", f"SSH_AUTHORIZED_KEYS={public_key}",
                            *extra_run_args, image)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    host = Host(container=container, name=name, address="127.0.0.1", port=0,
                private_key=key_path.read_text(), public_key=public_key,
                private_key_path=key_path, host_key="",
                known_hosts_path=workdir / "known_hosts", workdir=workdir)
    try:
        mapping = _docker("port", container, "22/tcp").splitlines()[0]
        host.port = int(mapping.rsplit(":", 1)[1])
        _wait_for_ssh(host, boot_timeout)
    except Exception as error:
        details = host.diagnostics()
        host.remove()
        raise HostError(f"test host {name} did not come up: {error}\n{details}") from None
    except BaseException:
        host.remove()
        raise
    return host


def _wait_for_ssh(host: Host, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not host.host_key:
            key = subprocess.run(["docker", "exec", host.container, "cat", HOST_KEY_FILE],
                                 capture_output=True, text=True)
            if key.returncode == 0 and key.stdout.strip():
                host.host_key = " ".join(key.stdout.split()[:2])
                host.known_hosts_path.write_text(host.known_hosts_line + "\n")
            else:
                last = (key.stderr or key.stdout).strip()
        if host.host_key:
            done = host.ssh("true", check=False, timeout=15)
            if done.returncode == 0:
                return
            last = done.stderr.strip()
        time.sleep(0.5)
    raise HostError(f"no SSH login to {host.address}:{host.port} within {timeout:.0f} s "
                    f"(last: {last or 'nothing'})")


@contextlib.contextmanager
def running_host(**kwargs) -> Iterator[Host]:
    host = start_host(**kwargs)
    try:
        yield host
    finally:
        host.remove()

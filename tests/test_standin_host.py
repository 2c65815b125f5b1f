"""The host target's test infrastructure: the stand-in convex-local-backend executable and
the systemd + sshd test host (tests/standins/host/README.md).

The executable's tests run everywhere (python3, loopback ports). The host tests are opt-in:

    CONVEX_SELFHOST_INTEGRATION=1 ./test.sh tests/test_standin_host.py -m integration -s

and need a Docker engine and the image convex-standin-host:bookworm
(tests/standins/build.sh).
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import hosttarget
import pytest

from components import admin_key

try:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV  # noqa: F401
    HAVE_AESGCMSIV = True
except ImportError:
    HAVE_AESGCMSIV = False

needs_aesgcmsiv = pytest.mark.skipif(
    not HAVE_AESGCMSIV, reason="this Python's cryptography has no AES-GCM-SIV (needs >= 42)")
OLD, NEW = hosttarget.standin_versions()
SECRET = "ab" * 32


@pytest.fixture(scope="module")
def binaries(tmp_path_factory) -> dict:
    """version -> (path, sha256) for both versions and a build without a version (Python
    zip applications: these tests need no Go)."""
    root = tmp_path_factory.mktemp("binaries")
    return {v: hosttarget.standin_binary(v, root / (v or "none"), elf=False)
            for v in (OLD, NEW, None)}


@pytest.fixture(scope="module")
def host_binaries(tmp_path_factory) -> dict:
    """version -> (path, sha256) to deploy: ELF executables where Go is available."""
    root = tmp_path_factory.mktemp("host-binaries")
    return {v: hosttarget.standin_binary(v, root / v) for v in (OLD, NEW)}


needs_go = pytest.mark.skipif(not hosttarget.can_build_elf(),
                              reason="the Go toolchain (`go`) builds the ELF launcher")


def run(binary: Path, *args: str, env: dict | None = None, cwd: Path | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess:
    """Run the stand-in with this Python (it has the test dependencies)."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("DISABLE_BEACON", "CONVEX_RELEASE_VERSION_DEV")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(binary), *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def get(url: str, headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class Running:
    """The stand-in started in `cwd` on free loopback ports; stop() sends SIGINT."""

    def __init__(self, binary: Path, cwd: Path, *args: str, env: dict | None = None,
                 instance: str = "host-it"):
        self.api, self.site = free_ports(2)
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("DISABLE_BEACON", "CONVEX_RELEASE_VERSION_DEV")}
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, str(binary), "--instance-name", instance,
             "--instance-secret", SECRET, "--interface", "127.0.0.1", "--port", str(self.api),
             "--site-proxy-port", str(self.site), *args],
            cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"stand-in exited {self.proc.returncode}:\n"
                                     f"{self.proc.stdout.read()}")
            try:
                with socket.create_connection(("127.0.0.1", self.api), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.proc.kill()
        raise AssertionError("stand-in did not listen within 20 s")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.api}{path}"

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            output, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            output, _ = self.proc.communicate()
        return self.proc.returncode, output


# --------------------------------------------------------------------------- the executable


def test_builds_are_reproducible_and_versions_differ(binaries, tmp_path):
    again = hosttarget.standin_binary(OLD, tmp_path, elf=False)
    assert again[1] == binaries[OLD][1]
    assert again[0].read_bytes() == binaries[OLD][0].read_bytes()
    assert len({sha for _, sha in binaries.values()}) == 3
    for path, _ in binaries.values():
        assert path.name == "convex-local-backend" and os.access(path, os.X_OK)
        assert path.read_bytes().startswith(b"#!/usr/bin/env python3\n")


def test_runs_as_an_executable_and_prints_help_and_version(binaries):
    path, _ = binaries[NEW]
    done = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout.strip()) == (0, f"convex-local-backend {NEW}")
    assert run(path, "-V").stdout.strip() == f"convex-local-backend {NEW}"
    helped = run(path, "--help")
    assert helped.returncode == 0
    for flag in ("--instance-name", "--instance-secret", "--port", "--site-proxy-port",
                 "--convex-origin", "--convex-site", "--db", "--interface", "--local-storage",
                 "--s3-storage", "--do-not-require-ssl", "--disable-beacon",
                 "--redact-logs-to-client", "db_spec"):
        assert flag in helped.stdout, flag


@pytest.mark.parametrize("args", [
    ["--instance-name", "a"],                        # requires --instance-secret
    ["--instance-secret", SECRET],                   # requires --instance-name
    ["--convex-origin", "https://api.example.com"],  # requires --convex-site
    ["--convex-site", "https://site.example.com"],   # requires --convex-origin
    ["--db", "postgres"],                            # only the DbDriverTag names
    ["--port", "65536"], ["--port", "x"], ["--site-proxy-port", "-1"],
    ["--interface", "::1"],                          # an Ipv4Addr
    ["--local-storage", "d", "--s3-storage"],        # one storage choice
    ["--disable-beacon=true"],                       # a flag takes no value
    ["--instance-nam", "a"],                         # clap does not complete prefixes
    ["--convex-http-proxy", "not a url"],
    ["--no-such-flag"],
    ["a.sqlite3", "b.sqlite3"],
])
def test_usage_errors_exit_2_like_clap(binaries, args, tmp_path):
    done = run(binaries[NEW][0], *args, cwd=tmp_path)
    assert done.returncode == 2, done
    assert "error" in done.stderr
    assert SECRET not in done.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args, message", [
    ([], "--instance-secret is required"),
    (["--instance-name", "a", "--instance-secret", "zz" * 32], "Couldn't hexdecode key"),
    (["--instance-name", "a", "--instance-secret", "ab" * 31], "was 31 bytes, not 32"),
    (["--instance-name", "a", "--instance-secret", SECRET, "--convex-origin", "api.example.com",
      "--convex-site", "https://s.example.com"], "should start with https:// or http://"),
    (["--instance-name", "a", "--instance-secret", SECRET, "missing/db.sqlite3"],
     "unable to open database file"),
    (["--instance-name", "a", "--instance-secret", SECRET, "--db", "postgres-v5",
      "db.sqlite3"], "needs a postgres:// URL"),
])
def test_configuration_errors_exit_1(binaries, args, message, tmp_path):
    done = run(binaries[NEW][0], *args, cwd=tmp_path)
    assert done.returncode == 1, done
    assert message in done.stderr
    assert SECRET not in done.stdout + done.stderr


def test_the_secret_is_read_from_the_flag_only(binaries, tmp_path):
    done = run(binaries[NEW][0], "--instance-name", "a", cwd=tmp_path,
               env={"INSTANCE_SECRET": SECRET})
    assert done.returncode == 2  # --instance-name still requires --instance-secret
    done = run(binaries[NEW][0], cwd=tmp_path, env={"INSTANCE_SECRET": SECRET})
    assert done.returncode == 1 and "--instance-secret is required" in done.stderr


def test_disable_beacon_environment_is_boolish(binaries, tmp_path):
    done = run(binaries[NEW][0], cwd=tmp_path, env={"DISABLE_BEACON": "maybe"})
    assert done.returncode == 2 and "DISABLE_BEACON" in done.stderr


@needs_aesgcmsiv
def test_serves_version_checks_admin_keys_and_logs_each_request(binaries, tmp_path):
    path, _ = binaries[NEW]
    backend = Running(path, tmp_path, "--disable-beacon")
    try:
        assert get(backend.url("/version")) == (200, NEW)
        assert get(f"http://127.0.0.1:{backend.site}/version") == (200, NEW)
        key = admin_key.issue_admin_key("host-it", SECRET)
        status, body = get(backend.url("/api/check_admin_key"), {"Authorization": f"Convex {key}"})
        assert status == 200 and json.loads(body)["success"] is True
        other = admin_key.issue_admin_key("host-it", "cd" * 32)
        assert get(backend.url("/api/check_admin_key"),
                   {"Authorization": f"Convex {other}"})[0] == 401
    finally:
        code, output = backend.stop()
    assert code == 0, output
    assert output.count('"GET /version HTTP/1.1" 200') == 2
    assert output.count('"GET /api/check_admin_key HTTP/1.1"') == 2
    assert "is FRESH" in output and "beacon" not in output and SECRET not in output
    assert "Received Ctrl-C signal!" in output and "successfully shut down" in output
    marker = json.loads((tmp_path / "convex-standin-marker.json").read_text())
    assert (marker["instanceName"], marker["version"]) == ("host-it", NEW)
    assert (tmp_path / "convex_local_backend.sqlite3").is_file()
    assert (tmp_path / "convex_local_storage").is_dir()

    again = Running(binaries[OLD][0], tmp_path)
    try:
        assert get(again.url("/version")) == (200, OLD)
    finally:
        code, output = again.stop()
    assert code == 0 and "is EXISTING" in output and "beacon" in output


@needs_aesgcmsiv
def test_keygen_prints_a_key_the_project_accepts(binaries):
    done = run(binaries[NEW][0], "keygen", "admin-key", "--instance-name", "host-it",
               "--instance-secret", SECRET)
    assert done.returncode == 0, done
    info = admin_key.check_admin_key(done.stdout.strip(), "host-it", SECRET)
    assert info is not None


@needs_go
@needs_aesgcmsiv
def test_elf_build_is_a_real_executable_that_cannot_be_overwritten_while_running(tmp_path):
    path, sha = hosttarget.standin_binary(NEW, tmp_path / "a", elf=True)
    assert hosttarget.is_elf(path)
    assert hosttarget.standin_binary(NEW, tmp_path / "b", elf=True)[1] == sha
    assert hosttarget.standin_binary(OLD, tmp_path / "c", elf=True)[1] != sha
    done = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "CONVEX_STANDIN_PYTHON": sys.executable})
    assert (done.returncode, done.stdout.strip()) == (0, f"convex-local-backend {NEW}")
    done = subprocess.run([str(path), "--port", "x"], capture_output=True, text=True,
                          timeout=30, env={**os.environ, "CONVEX_STANDIN_PYTHON": sys.executable})
    assert done.returncode == 2
    (tmp_path / "data").mkdir()
    for stop_signal, code in ((signal.SIGINT, 0), (signal.SIGTERM, -signal.SIGTERM)):
        api, site = free_ports(2)
        proc = subprocess.Popen(
            [str(path), "--instance-name", "a", "--instance-secret", SECRET, "-i", "127.0.0.1",
             "-p", str(api), "--site-proxy-port", str(site)], cwd=tmp_path / "data",
            env={**os.environ, "CONVEX_STANDIN_PYTHON": sys.executable},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while get_or_none(f"http://127.0.0.1:{api}/version") != (200, NEW):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
            with pytest.raises(OSError) as busy:
                open(path, "r+b")
            assert busy.value.errno == errno.ETXTBSY
        finally:
            proc.send_signal(stop_signal)
            proc.communicate(timeout=20)
        assert proc.returncode == code  # SIGTERM: dies of it (upstream handles SIGINT only)


def get_or_none(url: str):
    try:
        return get(url)
    except OSError:
        return None


@needs_aesgcmsiv
def test_never_healthy_file_beside_the_executable(binaries, tmp_path):
    path = tmp_path / "bin" / "convex-local-backend"
    path.parent.mkdir()
    path.write_bytes(binaries[NEW][0].read_bytes())
    (path.parent / "NEVER_HEALTHY").touch()
    (tmp_path / "data").mkdir()
    backend = Running(path, tmp_path / "data")
    try:
        assert get(backend.url("/version"))[0] == 503
    finally:
        code, output = backend.stop()
    assert code == 0 and "NEVER HEALTHY" in output


@needs_aesgcmsiv
@pytest.mark.parametrize("dev_version, expected", [(None, "unknown"), ("dev", "unknown"),
                                                   ("1.2.3-ci", "1.2.3-ci")])
def test_without_a_baked_version_it_reports_like_upstream(binaries, tmp_path, dev_version,
                                                          expected):
    env = {} if dev_version is None else {"CONVEX_RELEASE_VERSION_DEV": dev_version}
    assert run(binaries[None][0], "--version", env=env).stdout.strip() == \
        f"convex-local-backend {expected}"
    backend = Running(binaries[None][0], tmp_path, env=env)
    try:
        assert get(backend.url("/version")) == (200, expected)
    finally:
        backend.stop()


@needs_aesgcmsiv
def test_postgres_spec_is_accepted_and_its_password_never_logged(binaries, tmp_path):
    backend = Running(binaries[NEW][0], tmp_path, "--db", "postgres-v5",
                      "postgres://convex:pw-not-logged@db.internal:5432", "--s3-storage",
                      instance="my-app")
    try:
        assert get(backend.url("/version")) == (200, NEW)
    finally:
        code, output = backend.stop()
    assert code == 0
    assert "pw-not-logged" not in output and "database my_app" in output
    assert "require_ssl=True" in output
    assert (tmp_path / "convex-standin-marker.json").is_file()
    assert not (tmp_path / "convex_local_storage").exists()


# --------------------------------------------------------------------------- the host


def test_skip_reason_names_the_opt_in(monkeypatch):
    monkeypatch.delenv(hosttarget.ENABLE_VAR, raising=False)
    assert f"{hosttarget.ENABLE_VAR}=1" in hosttarget.skip_reason()


host_skip = hosttarget.skip_reason()


@pytest.fixture(scope="module")
def host():
    with hosttarget.running_host() as running:
        yield running


def wait_for(host: hosttarget.Host, command: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        done = host.ssh(command, check=False)
        if done.returncode == 0 or time.monotonic() > deadline:
            return done.stdout
        time.sleep(0.3)


def start_unit(host: hosttarget.Host, unit: str, binary: str, *flags: str) -> None:
    """The stand-in as a transient unit, hardened as the host target's unit would be."""
    properties = ["DynamicUser=yes", f"StateDirectory={unit}",
                  f"WorkingDirectory=/var/lib/{unit}", "ProtectSystem=strict",
                  "ProtectHome=yes", "PrivateTmp=yes", "ProtectProc=invisible",
                  "NoNewPrivileges=yes", "KillSignal=SIGINT"]
    command = ["systemd-run", f"--unit={unit}", f"--description=convex stand-in {unit}",
               *(f"--property={p}" for p in properties), binary,
               "--instance-name", "host-it", "--instance-secret", SECRET, *flags]
    host.ssh(shlex.join(command))


@pytest.mark.integration
@pytest.mark.skipif(host_skip is not None, reason=host_skip or "")
def test_key_login_with_pinned_host_key_only(host, tmp_path):
    assert host.ssh("id -u").stdout.strip() == "0"
    assert host.ssh("sudo -n id -u", user="deploy").stdout.strip() == "0"
    assert host.ssh("systemctl is-system-running").stdout.strip() == "running"
    # Another host key for the same address: ssh refuses to connect.
    other = tmp_path / "known_hosts"
    other.write_text(f"[{host.address}]:{host.port} ssh-ed25519 "
                     "AAAAC3NzaC1lZDI1NTE5AAAAIBZ2Q6KkCwQbmR2sMqAaBwj1jyTkxVrzDdxDbfghVTIz\n")
    command = [a if not a.startswith("UserKnownHostsFile=") else f"UserKnownHostsFile={other}"
               for a in host.ssh_command()]
    done = subprocess.run(command + ["true"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 255 and "host key" in done.stderr.lower()
    # No password or keyboard-interactive login is offered.
    nokey = subprocess.run(
        ["ssh", "-F", "/dev/null", "-p", str(host.port), "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={host.known_hosts_path}", "-o", "PubkeyAuthentication=no",
         f"root@{host.address}", "true"], capture_output=True, text=True, timeout=30)
    assert nokey.returncode == 255 and "(publickey)" in nokey.stderr


INSTALLED = "/opt/convex/bin/convex-local-backend"


def stage(host: hosttarget.Host, binaries: dict, version: str) -> str:
    path, sha = binaries[version]
    staged = f"/opt/convex/releases/{sha}/convex-local-backend"
    host.put(path, staged, mode="0644")  # as CopyToRemote leaves it: no mode kept
    assert host.ssh(f"sha256sum {staged}").stdout.split()[0] == sha
    return staged


def install(host: hosttarget.Host, staged: str) -> None:
    """A new file renamed over the old one: works while the old one runs."""
    host.ssh(f"install -D -m 0755 {staged} {INSTALLED}.new && mv -f {INSTALLED}.new {INSTALLED}")


def this_start(host: hosttarget.Host, unit: str) -> str:
    """The unit's journal since the backend last started."""
    journal = host.ssh(f"journalctl -u {unit} --no-pager -o cat").stdout
    return journal.rsplit("Starting a Convex backend", 1)[1]


@pytest.mark.integration
@pytest.mark.skipif(host_skip is not None, reason=host_skip or "")
def test_standin_under_systemd_with_dynamic_user_and_a_version_change(host, host_binaries):
    flags = ("--port", "3210", "--site-proxy-port", "3211", "--disable-beacon")
    install(host, stage(host, host_binaries, OLD))
    start_unit(host, "convex-it", INSTALLED, *flags)
    assert wait_for(host, "curl -sf http://127.0.0.1:3210/version") == OLD
    key = admin_key.issue_admin_key("host-it", SECRET)
    checked = host.ssh(f"curl -s -H {shlex.quote('Authorization: Convex ' + key)} "
                       "http://127.0.0.1:3210/api/check_admin_key").stdout
    assert json.loads(checked)["success"] is True
    pid = host.ssh("systemctl show -p MainPID --value convex-it").stdout.strip()
    assert host.ssh(f"ps -o user= -p {pid}").stdout.strip() == "convex-it"  # DynamicUser
    log = this_start(host, "convex-it")
    assert '"GET /version HTTP/1.1" 200' in log and "is FRESH" in log

    staged = stage(host, host_binaries, NEW)
    if hosttarget.is_elf(host_binaries[NEW][0]):
        # Like upstream's binary (and unlike a script), the running file cannot be written.
        busy = host.ssh(f"cp {staged} {INSTALLED}", check=False)
        assert busy.returncode != 0 and "Text file busy" in busy.stderr
    install(host, staged)
    assert host.ssh("curl -sf http://127.0.0.1:3210/version").stdout == OLD  # until restarted
    host.ssh("systemctl stop convex-it")
    log = this_start(host, "convex-it")
    # KillSignal=SIGINT: the backend shuts down and exits 0.
    assert "Server successfully shut down." in log and "Deactivated successfully" in log

    start_unit(host, "convex-it", INSTALLED, *flags)
    assert wait_for(host, "curl -sf http://127.0.0.1:3210/version") == NEW
    assert "is EXISTING" in this_start(host, "convex-it")
    host.ssh("systemctl stop convex-it")
    marker = host.ssh("cat /var/lib/private/convex-it/convex-standin-marker.json").stdout
    assert json.loads(marker)["version"] == OLD  # written on the first start only
    # ProtectSystem=strict: only the state directory was writable.
    assert sorted(host.ssh("ls /var/lib/private/convex-it").stdout.split()) == [
        "convex-standin-marker.json", "convex_local_backend.sqlite3", "convex_local_storage"]


@pytest.mark.integration
@pytest.mark.skipif(host_skip is not None, reason=host_skip or "")
def test_never_healthy_standin_on_the_host(host, host_binaries):
    path, _ = host_binaries[NEW]
    host.put(path, "/opt/convex/sick/convex-local-backend")
    host.ssh("touch /opt/convex/sick/NEVER_HEALTHY")
    start_unit(host, "convex-sick", "/opt/convex/sick/convex-local-backend",
               "--port", "3310", "--site-proxy-port", "3311")
    code = wait_for(host, "curl -s -o /dev/null -w '%{http_code}' "
                          "http://127.0.0.1:3310/version | grep -x 503")
    assert code.strip() == "503"
    assert "NEVER HEALTHY" in host.ssh("journalctl -u convex-sick --no-pager -o cat").stdout
    host.ssh("systemctl stop convex-sick")


@pytest.mark.integration
@pytest.mark.skipif(host_skip is not None, reason=host_skip or "")
def test_hidepid_hides_the_command_line_in_proc_but_not_from_systemd(host, host_binaries):
    path, _ = host_binaries[NEW]
    host.put(path, "/opt/convex/pid/convex-local-backend")
    start_unit(host, "convex-pid", "/opt/convex/pid/convex-local-backend",
               "--port", "3410", "--site-proxy-port", "3411")
    wait_for(host, "curl -sf http://127.0.0.1:3410/version")
    pid = host.ssh("systemctl show -p MainPID --value convex-pid").stdout.strip()
    as_nobody = f"runuser -u nobody -- cat /proc/{pid}/cmdline"
    try:
        # Without hidepid, any local user reads the secret (ProtectProc hides nothing here).
        assert SECRET in host.ssh(as_nobody).stdout
        host.ssh("mount -o remount,hidepid=invisible /proc")
        hidden = host.ssh(as_nobody, check=False)
        assert hidden.returncode != 0 and SECRET not in hidden.stdout
        assert SECRET in host.ssh(f"cat /proc/{pid}/cmdline").stdout  # root still sees it
        # But PID 1 answers anyone's GetUnitProcesses (what `systemctl status` shows) with
        # the command lines it reads as root: hidepid does not hide the secret from that.
        via_systemd = host.ssh(
            "runuser -u nobody -- busctl call org.freedesktop.systemd1 "
            "/org/freedesktop/systemd1 org.freedesktop.systemd1.Manager GetUnitProcesses "
            "s convex-pid.service").stdout
        assert SECRET in via_systemd
    finally:
        host.ssh("mount -o remount,hidepid=off /proc", check=False)
        host.ssh("systemctl stop convex-pid", check=False)

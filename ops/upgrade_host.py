"""The upgrade tool on the host target (`target: host`): the new binary's settings, what a
preview may change, and the backend's journal over SSH.

An in-place upgrade there sets `version` and the new binary (`backendBinaryUrl` or
`backendBinary`, with `backendBinarySha256`) together; `pulumi up` stages it beside the
running one, renames it into place and restarts the unit (components/host/backend.py);
the migrations are followed in the unit's journal, read with `journalctl` over SSH with
the stack's own connection settings and its pinned host key (never trusted on first use).
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from ops.upgrade_local import UpgradeError, polled_lines

# What an in-place upgrade replaces on this target: the stage, upload, install and health
# commands. Anything else changing (the instance secret, another deployment) is refused.
CHANGEABLE_TYPES = frozenset({"command:remote:Command", "command:remote:CopyToRemote"})
SHA256 = re.compile(r"[0-9a-f]{64}")
SSH_CONNECT_TIMEOUT = 15


@dataclass(frozen=True)
class NewBinary:
    """--binary-url or --binary, with --binary-sha256: the settings an upgrade sets."""

    sha256: str
    url: str = ""
    path: str = ""

    def config(self) -> list[tuple[str, Optional[str]]]:
        """(key, value) pairs to set; None: remove the key (the other source)."""
        return [("backendBinaryUrl", self.url or None),
                ("backendBinary", str(Path(self.path).resolve()) if self.path else None),
                ("backendBinarySha256", self.sha256)]


def new_binary(url: Optional[str], path: Optional[str], sha256: Optional[str]
               ) -> Optional[NewBinary]:
    """The new binary from the command line; None when no binary flag was given. Checks
    what the program would refuse, before anything runs."""
    if not (url or path or sha256):
        return None
    problems = []
    if bool(url) == bool(path):
        problems.append("pass exactly one of --binary-url (the release zip the host "
                        "downloads) and --binary (a file you downloaded)")
    if url and not url.startswith("https://"):
        problems.append("--binary-url must be an https:// URL")
    if path and not Path(path).is_file():
        problems.append(f"--binary {shlex.quote(path)} is not a file")
    digest = (sha256 or "").strip().lower()
    if not SHA256.fullmatch(digest):
        problems.append("--binary-sha256 must be the file's SHA-256 (64 hex characters: "
                        "sha256sum < FILE)")
    if problems:
        raise UpgradeError("; ".join(problems) + ". Nothing was changed.")
    return NewBinary(digest, url or "", path or "")


def known_hosts_line(address: str, port: int, host_key: str) -> str:
    host = address if port == 22 else f"[{address}]:{port}"
    return f"{host} {host_key}\n"


@contextlib.contextmanager
def ssh_command(host) -> Iterator[Callable[[str], list[str]]]:
    """A function turning a remote command line into ssh's argv for the stack's host
    (components.settings HostSettings): its pinned key as the only known host, its private
    key (if the stack has one; else the SSH agent) in a private temporary directory that is
    removed afterwards, batch mode (never a prompt)."""
    if shutil.which("ssh") is None:
        raise UpgradeError("ssh is not installed on this machine (the journal of the backend "
                           "is read over SSH). Nothing was changed.")
    with tempfile.TemporaryDirectory(prefix="convex-upgrade-ssh-") as directory:
        known = Path(directory, "known_hosts")
        known.write_text(known_hosts_line(host.address, host.port, host.host_key))
        identity: list[str] = []
        if host.private_key is not None:
            key = Path(directory, "id")
            key.touch(mode=0o600)
            text = host.private_key.reveal()
            key.write_text(text if text.endswith("\n") else text + "\n")
            identity = ["-i", str(key), "-o", "IdentitiesOnly=yes"]

        def argv(command: str) -> list[str]:
            return ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                    "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
                    "-o", f"ConnectTimeout={SSH_CONNECT_TIMEOUT}", "-p", str(host.port),
                    *identity, "-l", host.user, "--", host.address, command]

        yield argv


def journal_command(unit: str, since_epoch: int, user: str) -> str:
    """The remote command printing the unit's journal since a moment, messages only."""
    line = shlex.join(["journalctl", "--unit", unit, "--output", "cat", "--no-pager",
                       "--since", f"@{int(since_epoch)}"])
    return line if user == "root" else f"sudo -n {line}"


def journal_lines(ssh: Callable[[str], list[str]], unit: str, user: str,
                  since_epoch: Optional[int] = None, poll: float = 2.0, sleep=time.sleep,
                  run=None, progress: Callable[[str], None] = lambda _line: None
                  ) -> Sequence[str]:
    """New lines of the unit's journal on the host (from `since_epoch`, default: now),
    polled as docker logs are."""
    since = int(time.time()) - 1 if since_epoch is None else since_epoch
    return polled_lines(ssh(journal_command(unit, since, user)), "ssh journalctl",
                        f"`journalctl -u {unit}` over SSH", poll, sleep, run, None, progress)


def host_settings(stack_name: str, config):
    """The stack's SSH connection (HostSettings), read and checked as the program reads
    it, from the Automation API's config map (values shown, secrets included)."""
    from components.settings import ConfigError, settings_from_config

    raw = {key: item.value for key, item in config.items()}
    try:
        settings = settings_from_config(stack_name, raw,
                                        {key for key, item in config.items() if item.secret})
    except ConfigError as error:
        raise UpgradeError(f"the stack's settings are not valid: {error}") from None
    return settings.host


def host_journal(stack_name: str, config, resources: contextlib.ExitStack,
                 progress: Callable[[str], None]) -> Callable[[str], Sequence[str]]:
    """log_lines for the Upgrader: a unit's journal on the stack's host, from before this
    run (`pulumi up` restarts the unit and the new binary migrates on its start, before
    `up` ends). The SSH files live as long as `resources`."""
    host = host_settings(stack_name, config)
    ssh = resources.enter_context(ssh_command(host))
    since = int(time.time()) - 1
    return lambda unit: journal_lines(ssh, unit, host.user, since, progress=progress)


def check_target(host: bool, binary: Optional[NewBinary], mode: str) -> None:
    """The host target upgrades in place with a new binary; Docker needs none."""
    if host and mode != "in-place":
        raise UpgradeError("on the host target only --mode in-place is supported (the "
                           "backend keeps its data directory). Nothing was changed.")
    if host and binary is None:
        raise UpgradeError("on the host target pass the new release's binary: "
                           "--binary-url URL (or --binary FILE) and --binary-sha256 SHA256 "
                           "(the binary of --to). Nothing was changed.")
    if not host and binary is not None:
        raise UpgradeError("--binary-url, --binary and --binary-sha256 are for host-target "
                           "stacks; a Docker stack's version names its images. Nothing "
                           "was changed.")

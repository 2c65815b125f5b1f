"""The host target (`target: host`): SSH connection, the pinned host key and the backend
binary, plus what that target cannot do (yet) reported as problems up front."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from pathlib import Path
from typing import Optional

from components.settings.model import HostSettings
from components.settings.network import is_hostname
from components.settings.reader import Reader, SecretValue

TARGETS = ("docker", "host", "kubernetes")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_HOST_KEY = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|"
                       r"sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/]{40,}={0,2}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_URL = re.compile(r"https://[A-Za-z0-9._~:/?#\[\]@!&'()*+,;=%-]+")
HOST_ONLY_KEYS = ("hostAddress", "sshPort", "sshUser", "sshPrivateKey", "sshHostKey",
                  "backendBinary", "backendBinaryUrl", "backendBinarySha256")


def read_target(reader: Reader) -> str:
    return reader.choice("target", TARGETS)


def read_host(reader: Reader, target: str, bind: Optional[str]) -> Optional[HostSettings]:
    if target != "host":
        for name in HOST_ONLY_KEYS:
            if name != "sshPort" and name != "sshUser" and reader.string(name):
                reader.problem(name, "only applies with `target: host`; remove it, or set "
                                     "`pulumi config set target host`.")
        return None
    address = reader.string("hostAddress")
    if not address:
        reader.problem("hostAddress", "is required with `target: host`: the Linux host's name "
                                      "or IP address (`pulumi config set hostAddress <host>`).")
    elif address.startswith("-") or not is_hostname(address):
        reader.problem("hostAddress", f"{reader.shown('hostAddress')} is not a host name or IP "
                                      "address.")
    port = reader.integer("sshPort", 1, 65535)
    user = reader.string("sshUser")
    if not _USER.fullmatch(user):
        reader.problem("sshUser", f"{reader.shown('sshUser')} is not a Linux user name "
                                  "(lowercase letters, digits, '_' and '-').")
    private_key = reader.secret("sshPrivateKey")  # None: the SSH agent (SSH_AUTH_SOCK)
    if private_key is None:
        pass
    elif "PRIVATE KEY-----" not in private_key.reveal():
        reader.problem("sshPrivateKey", "is not a private key in PEM/OpenSSH form (a "
                                        "-----BEGIN ... PRIVATE KEY----- block).")
    else:  # the reader strips values; a PEM block ends with a line break
        private_key = SecretValue(private_key.reveal() + "\n")
    host_key = " ".join(reader.string("sshHostKey").split()[:2])
    if not _HOST_KEY.fullmatch(host_key):
        reader.problem("sshHostKey", "is required with `target: host` and must be the host's "
                                     "public key, e.g. `ssh-ed25519 AAAA...` (from `ssh-keyscan "
                                     "-t ed25519 <host>`, checked out of band): the connection "
                                     "is refused unless the host presents exactly this key.")
    binary, url, sha = _read_binary(reader)
    if bind is not None and not isinstance(ipaddress.ip_address(bind), ipaddress.IPv4Address):
        reader.problem("bindAddress", "must be an IPv4 address with `target: host` (the "
                                      "binary's --interface takes IPv4 only).")
    _refuse_docker_only(reader)
    return HostSettings(address=address, port=port or 22, user=user,
                        private_key=private_key, host_key=host_key,
                        binary_path=binary, binary_url=url, binary_sha256=sha)


def _read_binary(reader: Reader) -> tuple[str, str, str]:
    binary, url = reader.string("backendBinary"), reader.string("backendBinaryUrl")
    sha = reader.string("backendBinarySha256").lower()
    if bool(binary) == bool(url):
        reader.problem("backendBinary", "set exactly one of backendBinary (a file you "
                                        "downloaded from upstream's releases) and "
                                        "backendBinaryUrl (the host downloads it).")
    if not _SHA256.fullmatch(sha):
        reader.problem("backendBinarySha256", "must be the binary's SHA-256, 64 hex characters "
                                              "(`sha256sum convex-local-backend`).")
        return binary, url, sha
    if url and not _URL.fullmatch(url):
        reader.problem("backendBinaryUrl", f"{reader.shown('backendBinaryUrl')} is not an "
                                           "https URL.")
    if binary:
        path = Path(binary).expanduser()
        if not path.is_file():
            reader.problem("backendBinary", f"{reader.shown('backendBinary')} is not a file "
                                            "on this machine.")
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != sha:
                reader.problem("backendBinary", f"the file's SHA-256 is {digest}, not "
                                                "backendBinarySha256: download it again, or "
                                                "check which release you meant.")
    return binary, url, sha


def _refuse_docker_only(reader: Reader) -> None:
    """What the host target does not run (yet): said before anything is created."""
    if reader.boolean("dashboard"):
        reader.problem("dashboard", "the host target runs the backend only; set `dashboard: "
                                    "false` and run the dashboard image elsewhere, or use "
                                    "`npx convex dashboard` against the backend.")
    if reader.boolean("provisionPostgres"):
        reader.problem("provisionPostgres", "is a Docker-target feature; with `target: host` "
                                            "use an external database (databaseUrl).")
    if reader.boolean("tlsProxy"):
        reader.problem("tlsProxy", "is a Docker-target feature; with `target: host` put the "
                                   "host's own reverse proxy in front and set cloudOrigin and "
                                   "siteOrigin.")
    if reader.string("dataVolumeName"):
        reader.problem("dataVolumeName", "names a Docker volume; the host target keeps data in "
                                         "the unit's state directory.")

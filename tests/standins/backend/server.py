#!/usr/bin/env python3
"""Stand-in for the Convex backend image (ghcr.io/get-convex/convex-backend).

A TEST STAND-IN, not Convex: it only emulates what convex-selfhost's deployment and
tests touch.

* Listens on 0.0.0.0:3210 (API) and 0.0.0.0:3211 (HTTP actions / site proxy).
* ``GET /version`` answers 200 with the image tag (``STANDIN_VERSION``), or 503 forever
  when ``STANDIN_NEVER_HEALTHY=1`` (a backend that never becomes healthy).
* Refuses to start (exit 1) unless ``INSTANCE_NAME`` is set and ``INSTANCE_SECRET`` is
  64 hex characters.
* Writes a marker file into the data directory (``/convex/data``) on first start and
  logs whether the directory was fresh or already held data.
* ``GET /api/check_admin_key`` checks an admin key the way the real backend does
  (``Authorization: Convex <key>`` header, or ``?adminKey=`` when no header is sent):
  200 ``{"success": true, "allowedOps": [...], "isReadOnly": ...}`` for a valid key,
  401 ``{"code": "BadAdminKey", ...}`` for a key that does not decrypt / belongs to
  another instance, 403 ``{"code": "BadDeployKey", ...}`` when no admin identity was
  presented. This is an independent implementation of Convex's admin-key format:

      derived = HMAC-SHA256(secret, be32(1) || b"admin key")[:16]   (KBKDF, counter mode)
      key     = "<instance name>|" + hex(0x01 || nonce(12) || AES-128-GCM-SIV(derived,
                                        nonce, AdminKey protobuf, aad=b"\\x01"))

  Legacy (pre-2024, secretbox) admin keys are not supported.
* Logs every request line to stdout; SIGINT and SIGTERM stop it cleanly (exit 0).

Environment knobs for tests: ``STANDIN_DATA_DIR`` (default /convex/data),
``STANDIN_API_PORT`` / ``STANDIN_SITE_PORT`` (defaults 3210 / 3211),
``STANDIN_LEGACY_CHECK_ADMIN_KEY=1`` (answer like older backends, e.g. tag 4d3b0a5d…:
read-only keys get 403 ReadOnlyAdminKey and success bodies are just
``{"success": true}``).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import io
import json
import os
import re
import signal
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import parse_qs, urlsplit

try:  # cryptography >= 42 provides AES-GCM-SIV
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
except ImportError:  # pragma: no cover - reported at start-up
    AESGCMSIV = None  # type: ignore[assignment,misc]
    InvalidTag = Exception  # type: ignore[assignment,misc]

ADMIN_KEY_VERSION = 1
ADMIN_KEY_PURPOSE = b"admin key"
NONCE_LEN = 12
MARKER_NAME = "convex-standin-marker.json"

# keybroker::operations::read_only_operations(), serialized as upstream does.
READ_ONLY_OPERATIONS = [
    "ViewEnvironmentVariables", "ViewLogs", "ViewMetrics", "ViewIntegrations", "ViewData",
    "ViewBackups", "DownloadBackups", "RunInternalQueries", "RunTestQuery", "ViewAuditLog",
    "ViewUsageLimits", "ViewUsage",
]


def log(message: str) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    print(f"{stamp} convex-standin: {message}", flush=True)


# --------------------------------------------------------------------------- admin keys


class AdminKeyError(Exception):
    """A request that upstream answers with an error: HTTP status, code and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict:
        return {"code": self.code, "message": self.message}


def bad_admin_key() -> AdminKeyError:
    return AdminKeyError(401, "BadAdminKey",
                         "The provided admin key was invalid for this instance")


def bad_deploy_key(instance_name: Optional[str]) -> AdminKeyError:
    where = f"for deployment '{instance_name}'" if instance_name else "for this deployment"
    return AdminKeyError(
        403, "BadDeployKey",
        f"The provided deploy key was invalid {where}. Double check that the environment "
        "this key was generated for matches the desired deployment.")


@dataclass(frozen=True)
class AdminKeyClaims:
    """The decrypted AdminKey protobuf."""

    instance_name: Optional[str]
    issued_s: int
    member_id: Optional[int]
    system: bool
    is_read_only: bool


def parse_instance_secret(secret_hex: str) -> bytes:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", secret_hex or ""):
        raise ValueError("INSTANCE_SECRET must be 64 hex characters (32 bytes)")
    return bytes.fromhex(secret_hex)


def derive_admin_key_key(secret: bytes) -> bytes:
    """KBKDF in counter mode with HMAC-SHA256: one block, counter 1, label 'admin key'."""
    block = hmac.new(secret, (1).to_bytes(4, "big") + ADMIN_KEY_PURPOSE, hashlib.sha256)
    return block.digest()[:16]


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def decode_admin_key_proto(data: bytes) -> AdminKeyClaims:
    """Decode convex_keys.AdminKey; unknown fields are skipped as protobuf does."""
    instance_name: Optional[str] = None
    issued_s = 0
    member_id: Optional[int] = None
    system = False
    is_read_only = False
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            if field == 2:
                issued_s = value
            elif field == 3:  # oneof identity: the last one seen wins
                member_id, system = value, False
            elif field == 5:
                is_read_only = bool(value)
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            chunk = data[pos:pos + length]
            if len(chunk) != length:
                raise ValueError("truncated field")
            pos += length
            if field == 1:
                instance_name = chunk.decode("utf-8")
            elif field == 4:
                member_id, system = None, True
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated field")
    return AdminKeyClaims(instance_name, issued_s, member_id, system, is_read_only)


def decrypt_admin_key(encrypted_part: str, secret: bytes) -> AdminKeyClaims:
    """Raise ValueError unless `encrypted_part` is hex of a version-1 sealed AdminKey."""
    if AESGCMSIV is None:
        raise ValueError("cryptography with AES-GCM-SIV is not installed")
    try:
        raw = bytes.fromhex(encrypted_part)
    except ValueError as e:
        raise ValueError("not hex") from e
    if len(raw) < 1 + NONCE_LEN + 16 or raw[0] != ADMIN_KEY_VERSION:
        raise ValueError("not a version-1 admin key")
    nonce, sealed = raw[1:1 + NONCE_LEN], raw[1 + NONCE_LEN:]
    try:
        plaintext = AESGCMSIV(derive_admin_key_key(secret)).decrypt(
            nonce, sealed, bytes([ADMIN_KEY_VERSION]))
    except InvalidTag as e:
        raise ValueError("does not decrypt with this instance's secret") from e
    return decode_admin_key_proto(plaintext)


def remove_type_prefix_from_admin_key(key: str) -> str:
    """Drop a dashboard/CLI `prod:`/`dev:` style prefix (`preview:`/`project:` drop the name)."""
    prefix, sep, key_part = key.partition("|")
    if not sep:
        return key
    kind, colon, name = prefix.partition(":")
    if not colon:
        return key
    if kind.lower() in ("preview", "project"):
        return key_part
    return f"{name}|{key_part}"


def check_admin_key(key: str, instance_name: str, secret: bytes) -> AdminKeyClaims:
    """KeyBroker::check_admin_key: the claims of a valid key, else AdminKeyError(401)."""
    name_part, sep, encrypted_part = key.partition("|")
    name_from_key: Optional[str] = None
    if sep:  # "<[type:]name>|<hex>"; the type prefix (prod:, dev:) is only for display
        _kind, colon, rest = name_part.partition(":")
        name_from_key = rest if colon else name_part
    else:
        encrypted_part = key
    try:
        claims = decrypt_admin_key(encrypted_part, secret)
    except (ValueError, UnicodeDecodeError):
        # Upstream then treats it as an access token, which self-hosting rejects.
        raise bad_admin_key() from None
    name = name_from_key if name_from_key is not None else claims.instance_name
    if name is None or name != instance_name or claims.issued_s == 0:
        raise bad_admin_key()
    if claims.member_id is None and not claims.system:
        raise bad_admin_key()
    return claims


def check_admin_key_request(authorization: Optional[str], query_admin_key: Optional[str],
                            instance_name: str, secret: bytes,
                            legacy: bool = False) -> tuple[int, dict]:
    """GET /api/check_admin_key: (status, JSON body) as upstream answers it."""
    try:
        if authorization is not None:
            if len(authorization) < 7:
                raise AdminKeyError(400, "InvalidHeaderFailure", "Invalid authentication header")
            if authorization[:7].lower() != "convex ":
                if len(authorization) > 7 and authorization[:7].lower() == "bearer ":
                    # A user (OIDC) identity is no admin.
                    raise bad_deploy_key(None)
                raise AdminKeyError(400, "InvalidAdminKey", "Invalid admin key")
            key = remove_type_prefix_from_admin_key(authorization[7:])
            key, colon, acting_user_b64 = key.partition(":")
            if colon:  # "<key>:<base64 JSON of user attributes>": an admin acting as a user
                try:
                    json.loads(base64.b64decode(acting_user_b64, validate=True))
                except (binascii.Error, ValueError):
                    raise AdminKeyError(400, "HeaderParseFailure",
                                        "Malformed Authorization header.") from None
        elif query_admin_key is not None:
            key = query_admin_key
        else:
            raise bad_deploy_key(None)
        claims = check_admin_key(key, instance_name, secret)
        if claims.system:
            raise bad_deploy_key(None)
        if legacy:
            if claims.is_read_only:
                raise AdminKeyError(403, "ReadOnlyAdminKey",
                                    "You do not have permission to perform this operation.")
            return 200, {"success": True}
        ops = READ_ONLY_OPERATIONS if claims.is_read_only else []
        return 200, {"success": True, "allowedOps": ops, "isReadOnly": claims.is_read_only}
    except AdminKeyError as e:
        return e.status, e.body()


# --------------------------------------------------------------------------- server


@dataclass
class Config:
    instance_name: str
    secret: bytes
    version: str
    data_dir: str
    api_port: int
    site_port: int
    never_healthy: bool
    legacy_check: bool


def config_from_env(env: "os._Environ[str] | dict[str, str]") -> Config:
    """The server's configuration; SystemExit(1) with a log line when it is unusable."""
    instance_name = env.get("INSTANCE_NAME", "")
    if not instance_name:
        log("FATAL: INSTANCE_NAME is not set; refusing to start")
        raise SystemExit(1)
    if not env.get("INSTANCE_SECRET"):
        log("FATAL: INSTANCE_SECRET is not set; refusing to start")
        raise SystemExit(1)
    try:
        secret = parse_instance_secret(env.get("INSTANCE_SECRET", ""))
    except ValueError as e:
        log(f"FATAL: {e}; refusing to start")
        raise SystemExit(1) from None
    if AESGCMSIV is None:
        log("FATAL: python cryptography with AES-GCM-SIV (>= 42) is missing")
        raise SystemExit(1)
    return Config(
        instance_name=instance_name,
        secret=secret,
        version=env.get("STANDIN_VERSION", "unknown"),
        data_dir=env.get("STANDIN_DATA_DIR", "/convex/data"),
        api_port=int(env.get("STANDIN_API_PORT", "3210")),
        site_port=int(env.get("STANDIN_SITE_PORT", "3211")),
        never_healthy=env.get("STANDIN_NEVER_HEALTHY", "") == "1",
        legacy_check=env.get("STANDIN_LEGACY_CHECK_ADMIN_KEY", "") == "1",
    )


def prepare_data_dir(config: Config) -> bool:
    """Create the marker on first start; True when the data directory was fresh."""
    os.makedirs(config.data_dir, exist_ok=True)
    marker = os.path.join(config.data_dir, MARKER_NAME)
    if os.path.exists(marker):
        try:
            with open(marker, encoding="utf-8") as f:
                previous = json.load(f)
        except (OSError, ValueError):
            previous = {}
        log(f"data directory {config.data_dir} is EXISTING (marker from "
            f"{previous.get('created', '?')}, instance {previous.get('instanceName', '?')}, "
            f"version {previous.get('version', '?')})")
        if previous.get("instanceName") not in (None, config.instance_name):
            log(f"WARNING: the data directory belongs to instance "
                f"{previous.get('instanceName')}, not {config.instance_name}")
        return False
    fresh = not os.listdir(config.data_dir)
    with open(marker + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"instanceName": config.instance_name, "version": config.version,
                   "created": datetime.datetime.now(datetime.timezone.utc).isoformat()}, f)
    os.replace(marker + ".tmp", marker)
    log(f"data directory {config.data_dir} is FRESH" if fresh else
        f"data directory {config.data_dir} held other files but no marker; marker written")
    return True


class Handler(BaseHTTPRequestHandler):
    server_version = "convex-standin"
    protocol_version = "HTTP/1.1"
    config: Config
    role: str  # "api" or "site"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log(f"[{self.role}] {self.client_address[0]} {format % args}")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, body: dict) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._drain()
        url = urlsplit(self.path)
        config = self.config
        if url.path == "/version":
            if config.never_healthy:
                self._text(503, "stand-in configured never to become healthy")
            else:
                self._text(200, config.version)
        elif self.role == "site":
            self._json(404, {"code": "NoMatchingRoute", "message": "No matching routes found"})
        elif url.path == "/instance_name":
            self._text(200, config.instance_name)
        elif url.path == "/api/check_admin_key":
            query = parse_qs(url.query)
            status, body = check_admin_key_request(
                self.headers.get("Authorization"),
                (query.get("adminKey") or [None])[0],
                config.instance_name, config.secret, config.legacy_check)
            self._json(status, body)
        elif url.path == "/":
            self._text(200, "This Convex deployment is running (convex-selfhost test "
                            "stand-in, not the real backend).")
        elif url.path.startswith("/api/export/zip/"):
            if self._admin():
                export = EXPORTS.get(url.path.rsplit("/", 1)[1])
                if export is None:
                    self._json(404, {"code": "ExportNotFound", "message": "no such export"})
                else:
                    self._send(200, export_zip(config), "application/zip")
        else:
            self._json(404, {"code": "NotFound", "message": "stand-in has no such route"})

    do_HEAD = do_GET

    def _admin(self) -> bool:
        """The export API needs a valid admin key (stand-in of the real check)."""
        status, body = check_admin_key_request(self.headers.get("Authorization"), None,
                                               self.config.instance_name, self.config.secret,
                                               False)
        if status != 200:
            self._json(status, body)
        return status == 200

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        if url.path in ("/api/export/request/zip", "/api/query") and not self._admin():
            return
        if url.path == "/api/export/request/zip":
            # Like the real backend's snapshot export (a minimal zip), completed at once.
            export_id = f"export{len(EXPORTS) + 1}"
            EXPORTS[export_id] = {"_id": export_id, "_creationTime": time.time() * 1000,
                                  "state": "completed",
                                  "include_storage": "includeStorage=true" in url.query}
            self._send(200, b"", "text/plain")
        elif url.path == "/api/query":
            path = json.loads(body or b"{}").get("path")
            if path != "_system/cli/exports:getLatest":
                self._json(400, {"status": "error", "errorMessage": "stand-in: unknown query"})
            else:
                latest = list(EXPORTS.values())[-1] if EXPORTS else None
                self._json(200, {"status": "success", "value": latest, "logLines": []})
        else:
            self._json(404, {"code": "NotFound", "message": "stand-in has no such route"})

    do_PUT = do_PATCH = do_DELETE = do_POST


# Snapshot exports requested since start (the real backend keeps them in `_exports`).
EXPORTS: dict[str, dict] = {}


def export_zip(config: Config) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.md", f"Snapshot export of {config.instance_name} (stand-in)\n")
        archive.writestr("_tables/documents.jsonl", "")
    return buffer.getvalue()


def make_server(config: Config, role: str, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    handler = type(f"{role.capitalize()}Handler", (Handler,), {"config": config, "role": role})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main() -> int:
    config = config_from_env(os.environ)
    log(f"starting stand-in backend {config.version} for instance {config.instance_name}")
    prepare_data_dir(config)
    servers = [make_server(config, "api", config.api_port),
               make_server(config, "site", config.site_port)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        log(f"received {signal.Signals(signum).name}, shutting down")
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    for thread in threads:
        thread.start()
    log(f"listening on 0.0.0.0:{config.api_port} (api) and 0.0.0.0:{config.site_port} (site)"
        + (" -- NEVER HEALTHY: /version answers 503" if config.never_healthy else ""))
    while not stop.wait(3600):
        pass
    for server in servers:
        server.shutdown()
        server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

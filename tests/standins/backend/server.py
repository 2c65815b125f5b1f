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
* The snapshot export API (``POST /api/export/request/zip``, ``GET /api/export/zip/<id>``,
  the query ``_system/cli/exports:getLatest``): an export completes at once; its zip holds
  ``README.md``, ``_tables/documents.jsonl``, ``_storage/documents.jsonl`` and
  ``<table>/documents.jsonl`` for every table imported (below).
* Environment variables, kept in the data directory (``standin-environment.json``): the
  query ``_system/cli/queryEnvironmentVariables`` (documents ``{_id, _creationTime, name,
  value}`` sorted by name) and ``POST /api/update_environment_variables`` ``{"changes":
  [{"name", "value"?}]}`` (no value: unset), with upstream's name, value and count limits.
* The snapshot import API ``npx convex import`` uses (see ops/backup.py): start_upload,
  upload_part (parts appended in arrival order, like the local-disk storage), finish_upload
  (zip only), the queries ``_system/cli/queryImport`` and ``:list``, perform_import and
  cancel_import, through the states uploaded -> waiting_for_confirmation -> in_progress ->
  completed / failed, each step after ``STANDIN_IMPORT_DELAY`` seconds (default 0.2). The
  documents of ``<table>/documents.jsonl`` entries are kept in the data directory
  (``standin-tables/<table>.jsonl``), a summary of each import in ``standin-imports.json``.
  Imports themselves, like exports, live in memory.
* Logs every request line to stdout; SIGINT and SIGTERM stop it cleanly (exit 0).

Environment knobs for tests: ``STANDIN_DATA_DIR`` (default /convex/data),
``STANDIN_API_PORT`` / ``STANDIN_SITE_PORT`` (defaults 3210 / 3211),
``STANDIN_LEGACY_CHECK_ADMIN_KEY=1`` (answer like older backends, e.g. tag 4d3b0a5d…:
read-only keys get 403 ReadOnlyAdminKey and success bodies are just
``{"success": true}``), ``STANDIN_IMPORT_DELAY`` (seconds per import step).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import io
import itertools
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
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
    import_delay: float = 0.2


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
        import_delay=float(env.get("STANDIN_IMPORT_DELAY", "0.2")),
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

    def _admin(self, write: bool = False) -> bool:
        """An admin key is needed (stand-in of the real check); WRITE: not a read-only one."""
        status, body = check_admin_key_request(self.headers.get("Authorization"), None,
                                               self.config.instance_name, self.config.secret,
                                               False)
        if status == 200 and write and body.get("isReadOnly"):
            status, body = 403, {"code": "ReadOnlyAdminKey",
                                 "message": "You do not have permission to perform this "
                                            "operation."}
        if status != 200:
            self._json(status, body)
        return status == 200

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._drain_and_refuse(length)
            return
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        route = POST_ROUTES.get(url.path)
        if self.role == "site" or route is None:
            self._json(404, {"code": "NotFound", "message": "stand-in has no such route"})
            return
        handler, write = route
        if not self._admin(write):
            return
        try:
            status, answer = handler(self.config, url, body)
        except ApiError as e:
            status, answer = e.status, e.body()
        if answer is None:
            self._send(status, b"", "text/plain")
        else:
            self._json(status, answer)

    def _drain_and_refuse(self, length: int) -> None:
        while length > 0 and (chunk := self.rfile.read(min(length, 1 << 20))):
            length -= len(chunk)
        self._json(413, {"code": "PayloadTooLarge", "message": "stand-in: body too large"})

    do_PUT = do_PATCH = do_DELETE = do_POST


MAX_BODY = 64 << 20  # an upload part is 5 MiB; anything far larger is refused


class ApiError(AdminKeyError):
    """Any refused request: HTTP status, code and message (the backend's JSON error shape)."""


def bad_json(message: str) -> ApiError:
    return ApiError(400, "BadJsonBody", message)


def internal_error() -> ApiError:  # what upstream answers for a failure that is not the caller's
    return ApiError(500, "InternalServerError",
                    "Your request couldn't be completed. Try again later.")


def json_body(body: bytes) -> dict:
    try:
        value = json.loads(body or b"{}")
    except ValueError as e:
        raise bad_json(f"Failed to deserialize the JSON body: {e}") from None
    if not isinstance(value, dict):
        raise bad_json("Failed to deserialize the JSON body: expected an object")
    return value


def now_ms() -> float:
    return time.time() * 1000


# ----------------------------------------------------------------- data kept in the volume

ENV_FILE = "standin-environment.json"
TABLES_DIR = "standin-tables"
IMPORTS_FILE = "standin-imports.json"
UPLOADS_DIR = "standin-uploads"
DATA_LOCK = threading.RLock()  # one writer at a time for every file below
ENV_NAME = re.compile(r"[a-zA-Z_]+[a-zA-Z0-9_]*")
TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
ENV_VAR_LIMIT, MAX_NAME_LENGTH, MAX_VALUE_LENGTH = 100, 40, 8 << 10  # upstream's limits


def write_json_file(path: str, value) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)


def read_json_file(path: str, default):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def environment_variables(config: Config) -> list[dict]:
    """Stored as upstream's _environment_variables documents, sorted by name."""
    with DATA_LOCK:
        docs = read_json_file(os.path.join(config.data_dir, ENV_FILE), [])
    return sorted(docs, key=lambda doc: doc["name"])


def update_environment_variables(config: Config, url, body: bytes):
    """POST /api/update_environment_variables: all changes are checked, then applied."""
    changes = json_body(body).get("changes")
    if not isinstance(changes, list) or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str)
            and isinstance(c.get("value"), (str, type(None))) for c in changes):
        raise bad_json("Failed to deserialize the JSON body: expected changes: "
                       "[{name: string, value?: string}]")
    for change in changes:
        name, value = change["name"], change.get("value")
        if not ENV_NAME.fullmatch(name):
            raise ApiError(400, "EnvironmentVariableNameInvalid",
                           f"The environment variable name {name} is invalid. Environment "
                           "variable names must begin with a letter and may only include "
                           "characters a-z, A-Z, 0-9, and underscores.")
        if len(name) > MAX_NAME_LENGTH:
            raise ApiError(400, "EnvironmentVariableNameTooLong",
                           f"The environment variable name {name} is too long. Environment "
                           f"variable names must be less than {MAX_NAME_LENGTH}.")
        if value is not None and len(value.encode()) > MAX_VALUE_LENGTH:
            raise ApiError(400, "EnvironmentVariableValueTooLarge",
                           f"The environment variable value is {len(value.encode())} bytes, "
                           f"which is too large. (max size: {MAX_VALUE_LENGTH}")
    with DATA_LOCK:
        docs = {doc["name"]: doc for doc in environment_variables(config)}
        for change in changes:
            name, value = change["name"], change.get("value")
            if value is None:
                docs.pop(name, None)
            elif name in docs:
                docs[name] = dict(docs[name], value=value)
            else:
                docs[name] = {"_id": uuid.uuid4().hex, "_creationTime": now_ms(),
                              "name": name, "value": value}
        if len(docs) > ENV_VAR_LIMIT:
            raise ApiError(400, "EnvVarLimitMet",
                           f"The environment variable limit ({ENV_VAR_LIMIT}) has been met.")
        write_json_file(os.path.join(config.data_dir, ENV_FILE),
                        sorted(docs.values(), key=lambda doc: doc["name"]))
    log(f"environment variables updated ({len(changes)} change(s))")
    return 200, None


def tables_dir(config: Config) -> str:
    return os.path.join(config.data_dir, TABLES_DIR)


def stored_tables(config: Config) -> dict[str, list[str]]:
    """{table: its documents as JSON lines}, from the data directory."""
    directory = tables_dir(config)
    tables: dict[str, list[str]] = {}
    with DATA_LOCK:
        if os.path.isdir(directory):
            for name in sorted(os.listdir(directory)):
                table = name.removesuffix(".jsonl")
                if name.endswith(".jsonl") and TABLE_NAME.fullmatch(table):
                    with open(os.path.join(directory, name), encoding="utf-8") as f:
                        tables[table] = [line for line in f.read().splitlines() if line]
    return tables


# ----------------------------------------------------------------- snapshot export

# Snapshot exports requested since start (the real backend keeps them in `_exports`).
EXPORTS: dict[str, dict] = {}


def export_zip(config: Config) -> bytes:
    buffer = io.BytesIO()
    tables = stored_tables(config)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.md", f"Snapshot export of {config.instance_name} (stand-in)\n")
        archive.writestr("_tables/documents.jsonl", "".join(
            json.dumps({"name": table, "id": 10001 + number}) + "\n"
            for number, table in enumerate(tables)))
        archive.writestr("_storage/documents.jsonl", "")
        for table, lines in tables.items():
            archive.writestr(f"{table}/documents.jsonl", "".join(line + "\n" for line in lines))
    return buffer.getvalue()


def request_export(config: Config, url, body: bytes):
    # Like the real backend's snapshot export, completed at once.
    export_id = f"export{len(EXPORTS) + 1}"
    EXPORTS[export_id] = {"_id": export_id, "_creationTime": now_ms(), "state": "completed",
                          "include_storage": "includeStorage=true" in url.query}
    return 200, None


# ----------------------------------------------------------------- snapshot import

IMPORTS: dict[str, dict] = {}  # _snapshot_imports documents, oldest first
PARSED: dict[str, dict[str, list[str]]] = {}  # what each import will write
IMPORT_IDS = itertools.count(1)
IMPORTS_LOCK = threading.Lock()
MODES = {"append": "Append", "replace": "Replace", "replaceAll": "ReplaceAll",
         "requireEmpty": "RequireEmpty"}
FORMATS = ("csv", "jsonLines", "jsonArray", "zip")
DOCUMENTS_ENTRY = re.compile(r"([^/]+)/documents\.jsonl")


def upload_path(config: Config, token: str) -> str:
    """The file an upload token stands for (its object key only: no path from the client)."""
    try:
        key = json.loads(token)["objectKey"]
        uuid.UUID(hex=key)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise internal_error() from None
    path = os.path.join(config.data_dir, UPLOADS_DIR, key + ".blob")
    if not os.path.exists(path):
        raise internal_error()
    return path


def start_upload(config: Config, url, body: bytes):
    key = uuid.uuid4().hex
    os.makedirs(os.path.join(config.data_dir, UPLOADS_DIR), exist_ok=True)
    open(os.path.join(config.data_dir, UPLOADS_DIR, key + ".blob"), "wb").close()
    return 200, {"uploadToken": json.dumps({"objectKey": key}, separators=(",", ":"))}


def upload_part(config: Config, url, body: bytes):
    query = parse_qs(url.query)
    token, number = (query.get("uploadToken") or [None])[0], (query.get("partNumber") or [""])[0]
    if token is None or not number.isdigit() or not 0 <= int(number) < 1 << 16:
        raise ApiError(400, "BadQueryArgs", "Failed to deserialize query string: missing or "
                                            "invalid `uploadToken` or `partNumber`")
    with DATA_LOCK, open(upload_path(config, token), "ab") as blob:
        blob.write(body)  # in arrival order, as the local-disk storage does
    return 200, ""


def finish_upload(config: Config, url, body: bytes):
    request = json_body(body)
    spec, token, parts = request.get("import"), request.get("uploadToken"), request.get(
        "partTokens")
    if not isinstance(spec, dict) or not isinstance(token, str) or not isinstance(parts, list):
        raise bad_json("Failed to deserialize the JSON body: missing field `import`, "
                       "`uploadToken` or `partTokens`")
    if spec.get("format") not in FORMATS or spec.get("mode", "requireEmpty") not in MODES:
        raise bad_json(f"Failed to deserialize the JSON body: unknown variant in format "
                       f"{spec.get('format')!r} or mode {spec.get('mode')!r}")
    if spec["format"] != "zip":
        raise ApiError(400, "StandinUnsupported", "stand-in: only zip imports are emulated")
    if spec.get("tableName") is not None:
        raise ApiError(400, "InvalidName", "ZIP import cannot have table name")
    path = upload_path(config, token)
    with IMPORTS_LOCK:
        import_id = f"import{next(IMPORT_IDS)}"
        IMPORTS[import_id] = {
            "_id": import_id, "_creationTime": now_ms(), "state": {"state": "uploaded"},
            "format": {"format": "zip"}, "mode": MODES[spec.get("mode", "requireEmpty")],
            "component_path": None, "fq_object_key": os.path.basename(path),
            "member_id": None, "checkpoints": None, "requestor": {"type": "snapshotImport"}}
    later(config, parse_import, config, import_id, path)
    return 200, {"importId": import_id}


def later(config: Config, function, *args) -> None:
    timer = threading.Timer(config.import_delay, function, args)
    timer.daemon = True
    timer.start()


def set_state(import_id: str, state: dict) -> None:
    with IMPORTS_LOCK:
        IMPORTS[import_id]["state"] = state
    log(f"import {import_id}: {state['state']}")


def import_failed(import_id: str, message: str) -> None:
    set_state(import_id, {"state": "failed",
                          "error_message": f"Hit an error while importing:\n{message}"})


def read_import_zip(path: str) -> dict[str, list[str]]:
    """{table: documents} of a snapshot zip's root-level <table>/documents.jsonl entries
    (_storage counted as files; other system tables skipped, as upstream does), plus the
    empty tables _tables names. ValueError: the message the import fails with."""
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.testzip() is not None:
                raise zipfile.BadZipFile
            entries = {info.filename: archive.read(info) for info in archive.infolist()}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise ValueError("invalid zip file") from None
    tables: dict[str, list[str]] = {}
    for name, data in entries.items():
        match = DOCUMENTS_ENTRY.fullmatch(name)
        if match is None or (match[1].startswith("_") and match[1] not in ("_tables",
                                                                            "_storage")):
            continue
        table = match[1]
        if not table.startswith("_") and not TABLE_NAME.fullmatch(table):
            raise ValueError(f"table name '{table}' invalid")
        lines = []
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            try:
                value = json.loads(line)
            except ValueError as e:
                raise ValueError(f"Row {number} wasn't valid JSON: {e}") from None
            if not isinstance(value, dict):
                raise ValueError(f"Row {number} wasn't an object")
            lines.append(json.dumps(value, separators=(",", ":")))
        tables[table] = lines
    for line in tables.pop("_tables", []):
        name = json.loads(line).get("name")
        if isinstance(name, str) and not name.startswith("_"):
            if not TABLE_NAME.fullmatch(name):
                raise ValueError(f"{name!r} isn't a valid table name")
            tables.setdefault(name, [])
    return tables


def render_changes(changes: list[tuple[str, int, int, int, str]]) -> list[str]:
    """Upstream's table (crates/application/src/snapshot_import/table_change.rs)."""
    rows = [("table", "create", "delete")] + [
        (table, f"{added:,}", f"{deleted:,} of {existing:,}{unit}")
        for table, added, deleted, existing, unit in changes]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for number, row in enumerate(rows):
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append(" | ".join(cells) + " |")
        if number == 0:
            lines.append("-" * (sum(widths) + 8))
    return lines


def parse_import(config: Config, import_id: str, path: str) -> None:
    """uploaded -> waiting_for_confirmation (or failed), as the import worker does."""
    mode = IMPORTS[import_id]["mode"]
    try:
        tables = read_import_zip(path)
    except ValueError as e:
        import_failed(import_id, str(e))
        return
    existing = {table: len(lines) for table, lines in stored_tables(config).items()}
    names = sorted(set(tables) | (set(existing) if mode == "ReplaceAll" else set()))
    changes = []
    for table in names:
        added, have = len(tables.get(table, [])), existing.get(table, 0)
        if mode == "RequireEmpty" and have:
            import_failed(import_id, f"Table {table} already exists. Please choose a new table "
                                     "name or use replace/append modes.")
            return
        deleted = have if mode in ("Replace", "ReplaceAll") else 0
        changes.append((table, added, deleted, have, " files" if table == "_storage" else ""))
    PARSED[import_id] = {table: lines for table, lines in tables.items() if table != "_storage"}
    lines = render_changes(changes)
    message = "\n".join((["Import change summary:"] + lines if lines else []) + [
        "Once the import has started, it will run in the background.\nInterrupting `npx convex "
        "import` will not cancel it."])
    set_state(import_id, {"state": "waiting_for_confirmation", "message_to_confirm": message,
                          "require_manual_confirmation": any(c[2] for c in changes)})


def perform_import(config: Config, url, body: bytes):
    import_id = json_body(body).get("importId")
    with IMPORTS_LOCK:
        doc = IMPORTS.get(import_id) if isinstance(import_id, str) else None
        if doc is None:
            raise ApiError(400, "InvalidImport", f"invalid import id {import_id}")
        if doc["state"]["state"] != "waiting_for_confirmation":
            raise internal_error()  # upstream: an invalid state transition
        doc["state"] = {"state": "in_progress", "progress_message": "Importing",
                        "checkpoint_messages": []}
    later(config, write_import, config, import_id)
    return 200, None


def cancel_import(config: Config, url, body: bytes):
    import_id = json_body(body).get("importId")
    with IMPORTS_LOCK:
        doc = IMPORTS.get(import_id) if isinstance(import_id, str) else None
        if doc is None:
            raise ApiError(400, "InvalidImport", f"invalid import id {import_id}")
        if doc["state"]["state"] not in ("uploaded", "waiting_for_confirmation",
                                         "in_progress"):
            raise internal_error()
    import_failed(import_id, "Import canceled")
    return 200, None


def write_import(config: Config, import_id: str) -> None:
    """in_progress -> completed: the tables are written to the data directory."""
    tables, mode = PARSED.pop(import_id, {}), IMPORTS[import_id]["mode"]
    if IMPORTS[import_id]["state"]["state"] != "in_progress":
        return  # canceled meanwhile
    directory = tables_dir(config)
    messages = []
    with DATA_LOCK:
        os.makedirs(directory, exist_ok=True)
        if mode == "ReplaceAll":
            for name in os.listdir(directory):
                if name.endswith(".jsonl") and name.removesuffix(".jsonl") not in tables:
                    os.unlink(os.path.join(directory, name))
        for table, lines in tables.items():
            path = os.path.join(directory, table + ".jsonl")
            old = stored_tables(config).get(table, []) if mode == "Append" else []
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in old + lines))
            os.replace(path + ".tmp", path)
            messages.append(f'Imported "{table}" ({len(lines):,} documents)')
        written = sum(len(lines) for lines in tables.values())
        summary = read_json_file(os.path.join(config.data_dir, IMPORTS_FILE), [])
        summary.append({"importId": import_id, "mode": mode,
                        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                        "tables": {table: len(lines) for table, lines in tables.items()},
                        "numRowsWritten": written})
        write_json_file(os.path.join(config.data_dir, IMPORTS_FILE), summary)
    set_state(import_id, {"state": "in_progress", "progress_message": "Importing",
                          "checkpoint_messages": messages})
    later(config, set_state, import_id, {
        "state": "completed", "timestamp": str(time.time_ns()),
        "num_rows_written": str(written)})  # int64s are strings in the "json" format


# ----------------------------------------------------------------- queries


def run_query(config: Config, url, body: bytes):
    """POST /api/query {"path", "args", "format"}: the system queries the CLI runs."""
    request = json_body(body)
    path, args = request.get("path"), request.get("args")
    args = args[0] if isinstance(args, list) and args else args
    args = args if isinstance(args, dict) else {}
    if path == "_system/cli/exports:getLatest":
        value = list(EXPORTS.values())[-1] if EXPORTS else None
    elif path == "_system/cli/queryEnvironmentVariables":
        value = environment_variables(config)
    elif path == "_system/cli/queryImport:list":
        with IMPORTS_LOCK:
            value = json.loads(json.dumps(list(IMPORTS.values())[::-1][:20]))
    elif path in ("_system/cli/queryImport", "_system/cli/queryImport:default"):
        with IMPORTS_LOCK:
            value = json.loads(json.dumps(IMPORTS.get(args.get("importId"))))
    else:
        return 400, {"status": "error", "errorMessage": "stand-in: unknown query"}
    return 200, {"status": "success", "value": value, "logLines": []}


# path -> (handler, needs a key with write access); every POST route needs an admin key.
POST_ROUTES = {
    "/api/export/request/zip": (request_export, False),
    "/api/query": (run_query, False),
    "/api/update_environment_variables": (update_environment_variables, True),
    "/api/import/start_upload": (start_upload, True),
    "/api/import/upload_part": (upload_part, True),
    "/api/import/finish_upload": (finish_upload, True),
    "/api/perform_import": (perform_import, True),
    "/api/cancel_import": (cancel_import, True),
}


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

"""Back up (and restore) a self-hosted Convex deployment through its snapshot export (import) API.

Standard library only, self-contained (it also runs alone as `python convex_backup.py ...`).

What a run leaves in --dest (a 0700 directory; every file 0600):
  snapshot-<UTC time>.zip       the export, file storage included (`npx convex export`'s zip)
  snapshot-<UTC time>.env.json  the deployment's environment variables when it was taken: a
                                JSON array of {"name": ..., "value": ...} objects, sorted by
                                name, values verbatim (newlines included). It is the answer of
                                the system query `npx convex env list` runs
                                (_system/cli/queryEnvironmentVariables), and `restore` sends it
                                back as {"changes": [...]} to /api/update_environment_variables,
                                the request `npx convex env set` makes. Pruned with its snapshot.
  .last-run.json                the last run: ok, file, reason, finished, ...
  .scheduler.json               written when `schedule` starts: its cron, --timeout, start time
  .partial-snapshot-<UTC time>.*  a run in progress (or crashed: the next run removes it)
Only files named exactly like these are ever deleted.

`restore --file snapshot-<UTC time>.zip` replaces ALL data of a deployment with a snapshot,
over the HTTP API `npx convex import --replace-all --yes <zip>` uses against a self-hosted
backend (no Node, no app directory). Upstream: npm-packages/convex/src/cli/lib/convexImport.ts
(the CLI), crates/local_backend/src/router.rs `import_routes` and snapshot_import.rs (the
routes), crates/application/src/snapshot_import/ (the worker), crates/model/src/
snapshot_imports/types.rs (the states). Every request carries `Authorization: Convex <admin
key>`; a refusal is a non-2xx answer with {"code": ..., "message": ...} (401 BadAdminKey, 403
BadDeployKey or InvalidImport for a non-admin, 400 with the reason); system queries go to POST
/api/query {"path", "args", "format": "json"} and answer {"status": "success", "value": ...}
or {"status": "error", "errorMessage": ...}.
  1. query _system/cli/queryImport:list {}: the 20 newest imports; one whose state is
     in_progress is named (the CLI asks "Start another import?" unless --yes).
  2. POST /api/import/start_upload, empty body -> {"uploadToken": "<opaque string>"}.
  3. POST /api/import/upload_part?uploadToken=<URL-encoded>&partNumber=<1, 2, ...>,
     Content-Type: application/octet-stream, one part's raw bytes -> a JSON part token. Parts
     go one after another, in order, 5 MiB each but the last (the S3 multipart minimum; at most
     9,999 parts, so larger parts past ~48 GiB). The local-disk storage of a default
     self-hosted backend appends each body to one file and answers "".
  4. POST /api/import/finish_upload {"import": {"mode": "replaceAll", "format": "zip"},
     "uploadToken": ..., "partTokens": [...]} -> {"importId": "<id>"}.
  5. The import's state ({"state": ...} in the _snapshot_imports document) goes uploaded ->
     waiting_for_confirmation {message_to_confirm: a table of the tables, documents added and
     deleted; require_manual_confirmation} or failed {error_message}. The CLI watches the
     query _system/cli/queryImport {"importId"} over its WebSocket; this client polls the same
     query through /api/query (how `npx convex` runs its other system queries).
  6. POST /api/perform_import {"importId": ...} -> 200, empty body; then in_progress
     {progress_message, checkpoint_messages} -> completed {num_rows_written, an int64: a string
     in "json" format} or failed. Once performed, the import runs on in the backend:
     interrupting the client does not cancel it.
replaceAll deletes every table the snapshot lacks (a table the active schema names is emptied
instead) and replaces the others, file storage included. Unlike the CLI, this client sends no
Convex-Client header and retries nothing (the CLI retries a POST after a network error, and a
part sent twice would be appended twice). Then `restore` sets the environment variables
saved beside the zip (--no-env: not).
"""

import argparse
import base64
import contextlib
import datetime as dt
import functools
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

if __package__:  # imported as ops.backup
    from ops.backup_cron import CronError, CronSchedule, parse_cron  # noqa: F401
    from ops.backup_drill import add_drill_parser, cmd_drill
    from ops.backup_offsite import (
        Offsite,
        OffsiteError,
        add_offsite_arguments,
        fetch,
        offsite_of,
        ship,
    )
    from ops.backup_verify import VerifyError, verify
else:  # run as a file: its modules lie beside it (in the repository, or uploaded with it);
    # that directory is searched even under `python -I`, which leaves it out of sys.path
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from backup_cron import CronError, CronSchedule, parse_cron  # noqa: F401
    from backup_drill import add_drill_parser, cmd_drill
    from backup_offsite import Offsite, OffsiteError, add_offsite_arguments, fetch, offsite_of, ship
    from backup_verify import VerifyError, verify

KEY_ENV = "CONVEX_SELF_HOSTED_ADMIN_KEY"
LAST_RUN = ".last-run.json"
SCHEDULER = ".scheduler.json"
HEALTH_GRACE = 300  # seconds a run may end after its --timeout (a request's last socket wait)
PARTIAL = ".partial-"
UTC = dt.timezone.utc
STAMP = "%Y%m%dT%H%M%SZ"
# Only files named exactly as a run names them are ever deleted: anything else in --dest
# (a hand-made snapshot-before-migration.zip, a directory, a symlink) is not ours.
SNAPSHOT_NAME = re.compile(r"snapshot-([0-9]{8}T[0-9]{6}Z)\.zip")
ENV_NAME = re.compile(r"snapshot-([0-9]{8}T[0-9]{6}Z)\.env\.json")
PARTIAL_NAME = re.compile(re.escape(PARTIAL) +
                          r"snapshot-[0-9]{8}T[0-9]{6}Z\.(zip|env\.json)(\.enc)?")
ENV_QUERY = "_system/cli/queryEnvironmentVariables"  # what `npx convex env list` runs
TIMED_OUT = "timed out"  # BackupError.code of a request that ran into its deadline
QUERY_FAILED = "query failed"  # BackupError.code of a query the backend ran and answered badly
# Every body read has a bound: a backend (or whatever answers in its place) cannot fill the
# memory with an answer or the disk with a download that never ends.
CHUNK = 1 << 20
JSON_LIMIT = 4 << 20  # an /api/query answer: one export document, the environment variables
ERROR_LIMIT = 4096
MAX_BYTES = 20 << 30  # --max-bytes: the largest snapshot a run downloads
MIN_FREE = 1 << 30  # --min-free: left free in --dest, which shares its disk with the data
FREE_CHECK = 16 << 20  # free space is checked again after this many bytes
IMPORT_PART = 5 << 20  # upstream's part size: S3 needs 5 MiB parts but the last
IMPORT_MAX_PARTS = 9999  # the backend refuses an upload of 10,000 parts or more
IMPORT_LIST = "_system/cli/queryImport:list"
IMPORT_QUERY = "_system/cli/queryImport"


class BackupError(Exception):
    """A failed run: str() is the short reason that is logged; code is the backend's error code."""
    def __init__(self, reason: str, code: str = ""):
        super().__init__(reason)
        self.code = code


class UsageError(Exception):
    """Bad arguments or environment: one line on stderr, exit 2."""


def _json_dict(raw) -> dict:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def decode_int64(value):
    """An int64 as the backend's JSON may carry it: a number, a string or {"$integer": b64}."""
    try:
        if isinstance(value, dict):
            return int.from_bytes(base64.b64decode(value["$integer"]), "little", signed=True)
        return int(value)  # None: TypeError
    except (KeyError, TypeError, ValueError):  # informational only: never fail a backup on it
        return None


def redact(text: str, key: str) -> str:
    """TEXT without the admin key, in any case and any common spelling: as is, URL-encoded
    (once or twice), JSON-escaped, base64; also its hex part alone, whole or cut short."""
    if len(key) <= 8:
        return text
    hex_part = key.rpartition("|")[2]  # a legacy key may be all hex, without "name|"
    spellings = set()
    for secret in {key, hex_part} if len(hex_part) > 8 else {key}:
        encoded = urllib.parse.quote(secret, safe="")
        b64 = base64.b64encode(secret.encode()).decode()
        spellings.update({secret, encoded, urllib.parse.quote(encoded, safe=""),
                          urllib.parse.quote_plus(secret), json.dumps(secret)[1:-1],
                          secret.replace("|", "\\u007c"), b64, b64.rstrip("="),
                          base64.urlsafe_b64encode(secret.encode()).decode().rstrip("=")})
    pattern = "|".join(map(re.escape, sorted(spellings, key=len, reverse=True)))
    text = re.sub(pattern, "***", text, flags=re.IGNORECASE)
    if re.fullmatch(r"[0-9A-Fa-f]{16,}", hex_part):  # a backend that cuts what it quotes
        low = hex_part.lower()  # leaves a piece of the hex part
        text = re.sub(r"[0-9A-Fa-f]{16,}",
                      lambda m: "***" if m.group().lower() in low else m.group(), text)
    return text


def write_private(path: Path, text: str, tmp_name: str = "") -> None:
    """Write TEXT to PATH through a temporary file beside it, readable by the owner only."""
    tmp = path.with_name(tmp_name or path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(fd, 0o600)  # a leftover temporary file keeps its old mode otherwise
        out.write(text)
        out.flush()
        os.fsync(fd)
    os.replace(tmp, path)


def private_dir(path: str) -> None:
    """Create PATH 0700, or tighten it to 0700 when it exists and this user owns it."""
    os.makedirs(path, mode=0o700, exist_ok=True)  # FileExistsError: not a directory
    info = os.stat(path)
    if info.st_uid == os.geteuid() and info.st_mode & 0o077:
        os.chmod(path, 0o700)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    # Every redirect is an error: urllib would send the Authorization header (the admin key)
    # along to the new location. (max_redirections = 0 still follows the first one.)
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def human(size: int) -> str:
    for power, unit in enumerate(("B", "KiB", "MiB", "GiB")):
        if size < 1024 ** (power + 1):
            return f"{size / 1024 ** power:.4g}{unit}"
    return f"{size / 1024 ** 4:.4g}TiB"


class Watchdog:
    """Shuts a request's socket down at its deadline. A socket timeout restarts with every
    byte, so a backend that trickles its answer (headers or body) would outlast it."""

    def __init__(self, seconds: float):
        self.expired, self._sock, self._lock = False, None, threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, sock) -> None:
        with self._lock:
            self._sock, expired = sock, self.expired
        if expired:
            self._shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired, sock = True, self._sock
        if sock is not None:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock) -> None:
        with contextlib.suppress(OSError):  # closed already
            sock.shutdown(socket.SHUT_RDWR)  # a blocked read returns or fails at once

    def cancel(self) -> None:
        self._timer.cancel()


class _Watched:
    def __init__(self, *args, watchdog: Watchdog | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.watchdog = watchdog

    def connect(self):
        super().connect()
        if self.watchdog is not None:
            self.watchdog.attach(self.sock)


class _WatchedHTTP(_Watched, http.client.HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        watchdog = getattr(req, "watchdog", None)
        return self.do_open(functools.partial(_WatchedHTTP, watchdog=watchdog), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        watchdog = getattr(req, "watchdog", None)
        return self.do_open(functools.partial(_WatchedHTTPS, watchdog=watchdog), req,
                            context=self._context)


class Client:
    """The backend endpoints a backup needs, over urllib (direct, no proxy: it is a sidecar).

    One request at a time. Each has a whole-request deadline: `timeout` seconds for an API
    call (also the socket timeout), and never later than the run's deadline (`run_timeout`
    seconds from now), which is all a download has."""

    def __init__(self, url: str, key: str, timeout: float = 60.0,
                 run_timeout: float | None = None):
        self.url, self._key, self.timeout = url.rstrip("/"), key, timeout
        self.run_timeout = run_timeout
        self.deadline = None if run_timeout is None else time.monotonic() + run_timeout
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), NoRedirect(), _HTTPHandler(), _HTTPSHandler())
        self._watchdog: Watchdog | None = None
        self._until, self._limit, self._run_bound = math.inf, math.inf, False

    def open(self, what: str, method: str, path: str, body: dict | None = None, *,
             stream: bool = False, data: bytes | None = None,
             content_type: str = "application/json"):
        """Send one request; DATA (raw bytes) instead of BODY (JSON). A STREAM request (a
        download or an upload) has no whole-request limit of its own, only the run's."""
        self.close()
        now = time.monotonic()
        left = math.inf if self.deadline is None else self.deadline - now
        whole = math.inf if stream else self.timeout
        self._limit, self._run_bound = min(whole, left), left <= whole
        self._until = now + self._limit
        if self._limit <= 0:
            raise self._timed_out(what)
        self._watchdog = Watchdog(self._limit) if self._limit < math.inf else None
        headers = {"Authorization": f"Convex {self._key}", "Content-Type": content_type}
        if data is None:
            data = None if method == "GET" else json.dumps(body).encode() if body else b""
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        request.watchdog = self._watchdog
        try:
            return self._opener.open(request, timeout=min(self.timeout, self._limit))
        except urllib.error.HTTPError as err:
            with err:
                info = _json_dict(err.read(ERROR_LIMIT))
            code = str(info.get("code", "error"))
            message = f"{what}: HTTP {err.code} {code} {info.get('message', '')}"
            raise BackupError(message.strip(), code) from None
        except (OSError, http.client.HTTPException) as err:
            if self._expired():
                raise self._timed_out(what) from None
            reason = getattr(err, "reason", None) or err.__class__.__name__
            raise BackupError(f"{what}: cannot reach backend ({reason})") from None

    def _expired(self) -> bool:
        watchdog = self._watchdog
        return (watchdog is not None and watchdog.expired) or time.monotonic() >= self._until

    def _timed_out(self, what: str) -> BackupError:
        if self._run_bound:
            return BackupError(f"{what}: timed out, the run took longer than --timeout "
                               f"{self.run_timeout:g}s", TIMED_OUT)
        return BackupError(f"{what}: no complete answer within {self._limit:g}s", TIMED_OUT)

    def chunks(self, resp, what: str, limit: int, too_big: str):
        """The body of RESP (opened last) in pieces, until LIMIT bytes or the deadline."""
        size = 0
        while True:
            try:
                chunk = resp.read1(CHUNK)  # one read from the socket: the deadline is checked
            except (OSError, http.client.HTTPException):
                if self._expired():
                    raise self._timed_out(what) from None
                raise
            if self._expired():
                raise self._timed_out(what)
            if not chunk:
                return
            size += len(chunk)
            if size > limit:
                raise BackupError(too_big)
            yield chunk

    def read(self, resp, what: str, limit: int = JSON_LIMIT) -> bytes:
        return b"".join(self.chunks(resp, what, limit,
                                    f"{what}: answer larger than {human(limit)}"))

    def close(self) -> None:
        """Stop the last request's watchdog."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def call(self, what: str, path: str, body: dict | None = None, *,
             data: bytes | None = None, content_type: str = "application/json",
             stream: bool = False):
        """POST and return the JSON answer (None for an empty one), at most JSON_LIMIT bytes."""
        try:
            with self.open(what, "POST", path, body, stream=stream, data=data,
                           content_type=content_type) as resp:
                raw = self.read(resp, what)
        except (OSError, http.client.HTTPException) as err:
            raise BackupError(f"{what}: answer cut off ({err.__class__.__name__})") from None
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise BackupError(f"{what}: the answer is not JSON") from None

    def query(self, what: str, function: str, args: dict | None = None):
        """The value of a system query, as `npx convex` runs them."""
        answer = self.call(what, "/api/query",
                           {"path": function, "args": args or {}, "format": "json"})
        answer = answer if isinstance(answer, dict) else {}
        if answer.get("status") != "success":
            message = answer.get("errorMessage", "no valid answer")
            raise BackupError(f"{what}: query failed ({message})", QUERY_FAILED)
        return answer.get("value")

    def latest_export(self) -> dict | None:
        value = self.query("export status", "_system/cli/exports:getLatest")
        return value if isinstance(value, dict) and "_id" in value else None

    def environment_variables(self) -> list[dict]:
        """The deployment's environment variables, [{"name", "value"}] sorted by name."""
        value = self.query("environment variables", ENV_QUERY)
        if not is_env_list(value):
            raise BackupError("environment variables: query failed (no list of names and "
                              "values)")
        return sorted(({"name": v["name"], "value": v["value"]} for v in value),
                      key=lambda v: v["name"])

    def set_environment_variables(self, variables: list[dict]) -> None:
        """Set them all in one request, as `npx convex env set` does."""
        changes = [{"name": v["name"], "value": v["value"]} for v in variables]
        self.open("set environment variables", "POST", "/api/update_environment_variables",
                  {"changes": changes}).close()


def is_env_list(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, dict) and isinstance(v.get("name"), str) and v["name"]
        and isinstance(v.get("value"), str) for v in value)


def wait_for_export(client: Client, timeout: float, poll: float) -> dict:
    """Request an export (or join the one running) and wait until it has completed."""
    deadline = time.monotonic() + timeout
    before = client.latest_export()
    before_id, target, state = before and before["_id"], None, "not started"
    try:
        client.open("request export", "POST", "/api/export/request/zip?includeStorage=true").close()
    except BackupError as err:
        if err.code != "ExportInProgress":
            raise
        if before and before.get("state") in ("requested", "in_progress"):
            target = before_id  # else: wait for the new one someone else requested
    while True:
        try:
            doc = client.latest_export()
        except BackupError as err:
            if err.code != TIMED_OUT:
                raise
            raise BackupError(f"export not completed within {timeout:g}s (state {state})") from None
        if doc and (doc["_id"] == target if target else doc["_id"] != before_id):
            state = str(doc.get("state"))
            if state == "completed":
                return doc
            if state in ("failed", "canceled", "cancelled"):
                raise BackupError(f"export {doc['_id']} ended in state {state}")
        if time.monotonic() + poll > deadline:
            raise BackupError(f"export not completed within {timeout:g}s (state {state})")
        time.sleep(poll)


def check_free(dest: str, needed: int, min_free: int) -> None:
    free = shutil.disk_usage(dest).free
    if free - needed < min_free:
        raise BackupError(f"download stopped: {human(free)} free in --dest, "
                          f"{human(needed)} more needed and --min-free {human(min_free)} kept")


def download(client: Client, export_id: str, dest: str, name: str, max_bytes: int = MAX_BYTES,
             min_free: int = MIN_FREE) -> int:
    """Download into DEST/.partial-NAME, verify it, then move it to DEST/NAME. At most
    MAX_BYTES, and MIN_FREE bytes stay free in DEST, checked before and while it downloads."""
    partial = os.path.join(dest, PARTIAL + name)
    too_big = f"download larger than --max-bytes {human(max_bytes)}"
    try:
        path = "/api/export/zip/" + urllib.parse.quote(export_id, safe="")
        with client.open("download", "GET", path, stream=True) as resp:
            length, size, checked = resp.headers.get("Content-Length"), 0, 0
            expected = int(length) if length is not None and length.isdigit() else None
            if expected is not None and expected > max_bytes:
                raise BackupError(f"download of {human(expected)}: {too_big}")
            check_free(dest, expected or 0, min_free)
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                for chunk in client.chunks(resp, "download", max_bytes, too_big):
                    size += out.write(chunk)
                    if size - checked >= FREE_CHECK:
                        check_free(dest, 0 if expected is None else expected - size, min_free)
                        checked = size
                out.flush()
                os.fsync(out.fileno())
        if expected is not None and expected != size:
            raise BackupError(f"download incomplete: got {size} of {length} bytes")
        if not valid_zip(partial):
            raise BackupError("downloaded file is not a valid zip")
        os.replace(partial, os.path.join(dest, name))
        return size
    except (OSError, http.client.HTTPException) as err:
        raise BackupError(f"download failed ({err.__class__.__name__})") from None
    finally:
        Path(partial).unlink(missing_ok=True)  # gone already when it was kept


def valid_zip(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except Exception:  # BadZipFile, zlib.error, EOFError, OSError...: not a usable zip
        return False


def own_files(dest: str, pattern: re.Pattern) -> list[str]:
    """The names in DEST of regular files (not symlinks, not directories) matching PATTERN."""
    with os.scandir(dest) as entries:
        return sorted(entry.name for entry in entries
                      if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False))


def prune(dest: str, keep: int, newest: str) -> int:
    """Delete all but the newest KEEP snapshots this client wrote (never NEWEST), and the
    environment files of the deleted ones (or of none); returns how many snapshots are left."""
    names = own_files(dest, SNAPSHOT_NAME)
    for name in names[:-keep]:
        if name != newest:
            Path(dest, name).unlink(missing_ok=True)
            names.remove(name)
    kept = {SNAPSHOT_NAME.fullmatch(name)[1] for name in names}
    for name in own_files(dest, ENV_NAME):
        if ENV_NAME.fullmatch(name)[1] not in kept and env_name(newest) != name:
            Path(dest, name).unlink(missing_ok=True)
    return len(names)


def env_name(snapshot: str) -> str:
    """The environment file saved beside SNAPSHOT (a path or a name)."""
    return snapshot.removesuffix(".zip") + ".env.json"


def checked(path: Path) -> dict:
    """The snapshot's counts (backup_verify); a snapshot that fails the check is removed,
    so it never counts toward --keep, and the run fails."""
    try:
        return verify(str(path)).record()
    except VerifyError as error:
        path.unlink(missing_ok=True)
        raise BackupError(f"the snapshot failed verification: {error}") from None


def run_once(url: str, key: str, dest: str, keep: int, timeout: float, poll: float,
             max_bytes: int = MAX_BYTES, min_free: int = MIN_FREE,
             offsite: Offsite | None = None) -> bool:
    """One backup run, over within TIMEOUT seconds: logs exactly one line and writes
    DEST/.last-run.json."""
    started = time.monotonic()
    record: dict = {"ok": False, "file": None, "reason": None}
    client = Client(url, key, run_timeout=timeout)
    try:
        for stale in own_files(dest, PARTIAL_NAME):  # left by a crashed run
            Path(dest, stale).unlink(missing_ok=True)
        doc = wait_for_export(client, timeout, poll)
        variables = client.environment_variables()
        name = "snapshot-" + dt.datetime.now(UTC).strftime(STAMP) + ".zip"
        env_file = Path(dest, env_name(name))
        write_private(env_file, json.dumps(variables, indent=2) + "\n", PARTIAL + env_file.name)
        try:
            size = download(client, doc["_id"], dest, name, max_bytes, min_free)
            counts = checked(Path(dest, name))
        except BaseException:
            env_file.unlink(missing_ok=True)
            raise
        if offsite is not None:
            try:
                record["remote"] = ship(offsite, dest, [name, env_file.name], keep)
            except OffsiteError as error:  # the local files stay
                raise BackupError(f"off-host copy failed: {error}") from None
            record["encrypted"] = bool(offsite.key)
        kept = prune(dest, keep, name)
        record.update(ok=True, file=name, env_file=env_file.name, env_vars=len(variables),
                      bytes=size, export_id=doc["_id"], start_ts=decode_int64(doc.get("start_ts")),
                      **counts)
        line = (f"convex-backup ok file={name} bytes={size} tables={counts['tables']} "
                f"documents={counts['documents']} files={counts['files']} kept={kept}"
                + (f" remote={record['remote']}" if offsite else ""))
    except Exception as err:  # a scheduled run must never crash the loop
        reason = (str(err) if isinstance(err, BackupError) else err.__class__.__name__) or "error"
        reason = redact(reason, key)  # before cutting it
        record["reason"] = reason = reason if len(reason) <= 200 else reason[:197] + "..."
        line = f"convex-backup failed reason={json.dumps(reason)}"
    finally:
        client.close()
    record["finished"] = dt.datetime.now(UTC).isoformat(timespec="seconds")
    with contextlib.suppress(OSError):  # if this fails, the line below still tells
        write_private(Path(dest, LAST_RUN), json.dumps(record))
    print(f"{line} elapsed={time.monotonic() - started:.1f}s", flush=True)
    return record["ok"]


def size(text: str) -> int:
    """A byte count: digits, optionally with K, M, G or T (powers of 1024), B or iB."""
    match = re.fullmatch(r"([0-9]+)([KMGT]?)(i?B)?", text.strip(), re.IGNORECASE | re.ASCII)
    if not match or (match[3] and match[3].lower() == "ib" and not match[2]):
        raise ValueError(text)
    return int(match[1]) << 10 * " KMGT".index(match[2].upper() or " ")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="convex-backup", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("once", "schedule"):
        cmd = sub.add_parser(name, help=f"back up {name if name == 'once' else 'on --cron'}")
        cmd.add_argument("--url", required=True, help="backend URL, e.g. http://backend:3210")
        cmd.add_argument("--dest", required=True, help="backup directory (created 0700)")
        cmd.add_argument("--keep", required=True, type=int, help="snapshots to keep")
        cmd.add_argument("--timeout", type=float, default=1800.0,
                         help="seconds per run: export, download and all")
        cmd.add_argument("--poll-interval", type=float, default=2.0, help="seconds")
        cmd.add_argument("--max-bytes", type=size, default=MAX_BYTES,
                         help="largest snapshot to download (bytes, or with K, M, G, T; 20G)")
        cmd.add_argument("--min-free", type=size, default=MIN_FREE,
                         help="free space to leave in --dest (1G)")
        if name == "schedule":
            cmd.add_argument("--cron", required=True, help="5-field cron expression, UTC")
        add_offsite_arguments(cmd)
    sub.add_parser("health", help="is the last run ok?").add_argument("--dest", required=True)
    get = sub.add_parser("fetch", help="download the newest off-host copy (decrypted, verified)")
    get.add_argument("--dest", required=True, help="directory to put it in (created 0700)")
    add_offsite_arguments(get)
    restore = sub.add_parser("restore", help="replace ALL data with a snapshot zip, as `npx "
                             "convex import --replace-all` does")
    restore.add_argument("--url", required=True, help="backend URL, e.g. http://127.0.0.1:3210")
    restore.add_argument("--file", required=True, help="a snapshot zip")
    restore.add_argument("--app-dir", help=argparse.SUPPRESS)  # ignored: npx is not used
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    restore.add_argument("--timeout", type=float, default=3600.0,
                         help="seconds for the whole import: upload, parse and write")
    restore.add_argument("--poll-interval", type=float, default=1.0, help="seconds")
    restore.add_argument("--no-env", action="store_true",
                         help="do not set the environment variables saved beside the zip")
    add_drill_parser(sub, add_offsite_arguments)
    return parser


def check_args(args) -> str:
    """Validate the arguments of once/schedule/restore/drill in place; the admin key."""
    key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise UsageError(f"{KEY_ENV} is not set; it must hold the deployment's admin key")
    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise UsageError(f"--url must be an http(s) URL, not {args.url!r}")
    if url.username or url.password or url.query or url.fragment:
        raise UsageError("--url must not hold credentials, a query or a fragment")
    args.url = args.url.rstrip("/")
    names = {"restore": ("timeout", "poll_interval"), "drill": ("timeout", "wait")}.get(
        args.command, ("keep", "timeout", "poll_interval", "max_bytes"))
    for name in names:
        if not 0 < getattr(args, name) < float("inf"):
            raise UsageError(f"--{name.replace('_', '-')} must be greater than 0")
    if args.command == "restore":
        return key
    if args.command == "schedule":
        try:
            args.cron = parse_cron(args.cron)
        except CronError as err:
            raise UsageError(f"--cron {json.dumps(args.cron)}: {err}") from None
    try:
        args.offsite = offsite_of(args)
    except OffsiteError as err:
        raise UsageError(str(err)) from None
    if args.command == "drill":  # reads --dest, never writes it
        if not (args.file or args.dest or args.offsite):
            raise UsageError("drill needs --file, --dest or --s3-bucket")
        return key
    try:
        private_dir(args.dest)
    except OSError as err:
        raise UsageError(f"--dest {args.dest} is not a usable directory ({err.strerror})") from None
    return key


def cmd_schedule(args, key: str) -> int:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt
    # health: runs are expected from now on this schedule; a record older than this file was
    # written by an earlier scheduler (a replaced container), not this one.
    marker = {"started": dt.datetime.now(UTC).isoformat(timespec="seconds"),
              "cron": args.cron.expr, "timeout": args.timeout}
    with contextlib.suppress(OSError):  # then health judges the last record alone
        write_private(Path(args.dest, SCHEDULER), json.dumps(marker))
    try:
        while True:
            due = args.cron.next_after(dt.datetime.now(UTC))
            print(f"convex-backup next run={due.strftime('%Y-%m-%dT%H:%M:%SZ')} "
                  f"cron={json.dumps(args.cron.expr)}", flush=True)
            while (left := (due - dt.datetime.now(UTC)).total_seconds()) > 0:
                time.sleep(min(left, 30.0))
            run_once(args.url, key, args.dest, args.keep, args.timeout, args.poll_interval,
                     args.max_bytes, args.min_free, args.offsite)
    except KeyboardInterrupt:
        print("convex-backup stopped", flush=True)
        return 0


def _read_small(path: Path) -> tuple[dict, dt.datetime]:
    """A JSON object written by this client and when it was written (its mtime); {} when it
    is unreadable or not an object. FileNotFoundError when it is not there."""
    with open(path, "rb") as handle:
        written = dt.datetime.fromtimestamp(os.fstat(handle.fileno()).st_mtime, UTC)
        return _json_dict(handle.read(JSON_LIMIT)), written


def _when(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds")


def cmd_health(args) -> int:
    """Healthy: the last run of this scheduler was ok, or it has not run yet, and in either
    case a successful run is not overdue (two scheduled times plus --timeout after the last
    success or the scheduler's start). Without a scheduler file: the last run was ok."""
    try:
        scheduler, started = _read_small(Path(args.dest, SCHEDULER))
    except OSError:
        scheduler, started = None, None
    try:
        record, written = _read_small(Path(args.dest, LAST_RUN))
        record = record or {"reason": f"{LAST_RUN} is unreadable or not a JSON object"}
    except FileNotFoundError:
        record, written = None, None
    except OSError:
        record, written = {"reason": f"{LAST_RUN} is unreadable or not a JSON object"}, None
    if started is not None and written is not None and written < started:
        record = None  # an earlier scheduler's (a replaced container): not this one's
    if record is not None and record.get("ok") is not True:
        reason = record.get("reason")  # a record written before redaction got better
        if isinstance(reason, str):
            reason = redact(reason, os.environ.get(KEY_ENV, "").strip())
        print(f"convex-backup health failed: last={record.get('finished')} "
              f"reason={json.dumps(reason)}")
        return 1
    if scheduler is not None:
        try:
            schedule = parse_cron(str(scheduler.get("cron")))
            timeout = float(scheduler.get("timeout"))
        except (CronError, TypeError, ValueError):
            schedule = None
        if schedule is not None and 0 < timeout < float("inf"):
            since = written if record is not None and written is not None else started
            due = schedule.next_after(schedule.next_after(since)) + dt.timedelta(
                seconds=timeout + HEALTH_GRACE)
            if dt.datetime.now(UTC) > due:
                last = record.get("finished") if record is not None else None
                reason = (f"no successful run since {_when(since)}; one was due by {_when(due)} "
                          f"(cron {schedule.expr}, --timeout {timeout:g}s)")
                print(f"convex-backup health failed: last={last} reason={json.dumps(reason)}")
                return 1
    if record is None:
        print("convex-backup health ok: no run yet" if started is None else
              f"convex-backup health ok: no run yet since the scheduler started at "
              f"{_when(started)}")
        return 0
    print(f"convex-backup health ok: last={record.get('finished')} file={record.get('file')}")
    return 0


def read_env_file(path: str) -> list[dict]:
    """The environment variables saved beside a snapshot; UsageError when unusable."""
    try:
        with open(path, "rb") as handle:
            variables = json.loads(handle.read(JSON_LIMIT + 1))
    except (OSError, ValueError) as err:
        raise UsageError(f"{path} is not readable JSON ({err.__class__.__name__})") from None
    if not is_env_list(variables):
        raise UsageError(f"{path} is not a list of environment variables (name and value)")
    return variables


class ImportFailed(BackupError):
    """The backend took the snapshot but its import failed or was not confirmed."""


def _import_state(doc, import_id: str) -> dict:
    """The state of an import document ({"state": {"state": ..., ...}, ...})."""
    if doc is None:
        raise BackupError(f"import status: the backend has no import {import_id}")
    state = doc.get("state") if isinstance(doc, dict) else None
    if not isinstance(state, dict) or not isinstance(state.get("state"), str):
        raise BackupError("import status: no import state in the answer")
    return state


class Restore:
    """`npx convex import --replace-all` over HTTP (see the module docstring), one step per
    method; `say` prints a line, `confirm(summary)` answers whether to go on."""

    def __init__(self, client: Client, path: str, poll: float, say, confirm):
        self.client, self.path, self.poll = client, path, poll
        self.say, self.confirm = say, confirm

    def run(self) -> int | None:
        """Import the snapshot; the number of documents written, None when not confirmed."""
        self.check_running_imports()
        import_id = self.upload()
        state = self.wait(import_id)
        if state["state"] == "waiting_for_confirmation":
            summary = state.get("message_to_confirm")
            if not self.confirm(summary if isinstance(summary, str) else ""):
                return None
            self.client.call("perform import", "/api/perform_import", {"importId": import_id})
            state = self.wait(import_id)
        if state["state"] == "failed":
            message = state.get("error_message")
            raise ImportFailed(f"import {import_id} failed: "
                               f"{message if isinstance(message, str) else 'no reason given'}")
        if state["state"] != "completed":  # waiting for a second confirmation: not upstream's
            raise ImportFailed(f"import {import_id} is {state['state']}, not completed")
        return decode_int64(state.get("num_rows_written"))

    def check_running_imports(self) -> None:
        try:
            imports = self.client.query("list imports", IMPORT_LIST)
        except BackupError as err:
            if err.code != QUERY_FAILED:  # refused or unreachable: so would the upload be
                raise
            self.say(f"convex-backup restore: cannot list running imports ({err})")
            return
        running = [doc.get("_id") for doc in imports if isinstance(doc, dict)
                   and isinstance(doc.get("state"), dict)
                   and doc["state"].get("state") == "in_progress"
                   ] if isinstance(imports, list) else []
        if running:
            self.say(f"convex-backup restore: another import is in progress "
                     f"(import={running[0]}); it runs on beside this one")

    def upload(self) -> str:
        size = os.path.getsize(self.path)
        part_size = max(IMPORT_PART, -(-size // IMPORT_MAX_PARTS))
        answer = self.client.call("start upload", "/api/import/start_upload")
        token = answer.get("uploadToken") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise BackupError("start upload: no upload token in the answer")
        parts: list = []
        with open(self.path, "rb") as snapshot:  # a zip never starts with the BOM the CLI strips
            while chunk := snapshot.read(part_size):
                number = len(parts) + 1
                query = (f"uploadToken={urllib.parse.quote(token, safe='')}"
                         f"&partNumber={number}")
                parts.append(self.client.call(
                    f"upload part {number}", "/api/import/upload_part?" + query, data=chunk,
                    content_type="application/octet-stream", stream=True))
        answer = self.client.call("finish upload", "/api/import/finish_upload", {
            "import": {"mode": "replaceAll", "format": "zip"}, "uploadToken": token,
            "partTokens": parts})
        import_id = answer.get("importId") if isinstance(answer, dict) else None
        if not isinstance(import_id, str) or not import_id:
            raise BackupError("finish upload: no import id in the answer")
        self.say(f"convex-backup restore uploaded bytes={size} parts={len(parts)} "
                 f"import={import_id}")
        return import_id

    def wait(self, import_id: str) -> dict:
        """Poll until the import waits for confirmation, completed or failed."""
        shown = 0
        while True:
            try:
                state = _import_state(self.client.query(
                    "import status", IMPORT_QUERY, {"importId": import_id}), import_id)
            except BackupError as err:
                if err.code == TIMED_OUT:
                    raise ImportFailed(f"{err}; import {import_id} may still run on the "
                                       "backend (interrupting does not cancel it)",
                                       TIMED_OUT) from None
                raise
            name = state["state"]
            if name in ("waiting_for_confirmation", "completed", "failed"):
                return state
            if name not in ("uploaded", "in_progress"):
                raise ImportFailed(f"import {import_id} is in an unknown state {name!r}")
            messages = state.get("checkpoint_messages")
            for message in messages[shown:] if isinstance(messages, list) else ():
                self.say(f"convex-backup restore: {message}")
            shown = len(messages) if isinstance(messages, list) else shown
            deadline = self.client.deadline
            if deadline is not None and time.monotonic() + self.poll > deadline:
                raise ImportFailed(
                    f"import {import_id} not done within --timeout "
                    f"{self.client.run_timeout:g}s (state {name}); it may still run on the "
                    "backend (interrupting does not cancel it)", TIMED_OUT)
            time.sleep(self.poll)


def cmd_restore(args, key: str) -> int:
    path = os.path.abspath(args.file)
    if not valid_zip(path):
        raise UsageError(f"--file {args.file} is not a readable, valid zip")
    env_file = env_name(path)
    variables = None if args.no_env or not os.path.lexists(env_file) else read_env_file(env_file)
    if not args.yes and not sys.stdin.isatty():
        raise UsageError("restore replaces ALL data: pass --yes (no TTY to confirm on)")
    also = "" if variables is None else f" and set {len(variables)} environment variable(s)"

    def say(line: str) -> None:
        print(redact(line, key), flush=True)

    def confirm(summary: str) -> bool:
        if summary:
            say(summary)
        if args.yes:
            return True
        prompt = (f"Replace ALL data in {args.url} (every table and file) with {path}{also}? "
                  "Type 'yes' to go on: ")
        return input(prompt).strip().lower() == "yes"

    client = Client(args.url, key, run_timeout=args.timeout)
    say(f"convex-backup restore started file={path} url={args.url}")
    try:
        written = Restore(client, path, args.poll_interval, say, confirm).run()
    except (BackupError, OSError) as err:
        reason = redact(str(err) if isinstance(err, BackupError) else
                        f"cannot read the zip ({err.__class__.__name__})", key)
        say(f"convex-backup restore failed file={path} reason={json.dumps(reason)}")
        return 1
    except KeyboardInterrupt:
        print("convex-backup restore interrupted: an import already confirmed goes on in the "
              "backend", file=sys.stderr)
        return 130
    finally:
        client.close()
    if written is None:
        print("convex-backup restore aborted: nothing was changed", file=sys.stderr)
        return 1
    say(f"convex-backup restore ok file={path} documents={written}")
    if variables is None:
        return 0
    try:
        Client(args.url, key).set_environment_variables(variables)
    except BackupError as err:
        reason = redact(str(err), key)
        say(f"convex-backup restore env failed file={env_file} reason={json.dumps(reason)}")
        return 1
    say(f"convex-backup restore env ok file={env_file} variables={len(variables)}")
    return 0


def cmd_fetch(args) -> int:
    """The newest snapshot of the bucket into --dest, ready for `restore --file`."""
    try:
        offsite = offsite_of(args)
        if offsite is None:
            raise UsageError("fetch needs --s3-bucket")
        private_dir(args.dest)
        path = fetch(offsite, args.dest)
        counts = checked(Path(path))
    except (OffsiteError, OSError) as err:
        raise UsageError(str(err) if isinstance(err, OffsiteError) else
                         f"--dest {args.dest}: {err.__class__.__name__}") from None
    except BackupError as err:
        print(f"convex-backup fetch failed reason={json.dumps(str(err))}", flush=True)
        return 1
    print(f"convex-backup fetch ok file={path} tables={counts['tables']} "
          f"documents={counts['documents']} files={counts['files']}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "health":
            return cmd_health(args)
        if args.command == "fetch":
            return cmd_fetch(args)
        key = check_args(args)
        if args.command == "restore":
            return cmd_restore(args, key)
        if args.command == "drill":  # backup_drill cannot import this module by its name
            return cmd_drill(args, key, sys.modules[__name__])
        if args.command == "schedule":
            return cmd_schedule(args, key)
        return 0 if run_once(args.url, key, args.dest, args.keep, args.timeout,
                             args.poll_interval, args.max_bytes, args.min_free,
                             args.offsite) else 1
    except UsageError as err:
        print(f"convex-backup: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""A fake self-hosted Convex backend with just the snapshot export endpoints, for tests.

It follows get-convex/convex-backend (crates/local_backend/src/snapshot_export.rs, router.rs):
  POST /api/export/request/zip?includeStorage=true   -> 200, empty body; 400 ExportInProgress
       when an export is already requested or in progress
  POST /api/query {"path": "_system/cli/exports:getLatest", "args": {}, "format": "json"}
       -> {"status": "success", "value": <latest _exports doc of requestor snapshotExport|null>}
  GET  /api/export/zip/{id}                          -> the zip, with Content-Length
Every request must carry `Authorization: Convex <admin key>` (else 401 BadAdminKey).

Behaviours: normal, fail (the export ends in state failed), in_progress (an export is already
running when the client asks; it completes later), cut (the download sends a Content-Length
larger than the body, then closes), corrupt (a zip whose member fails its CRC), stuck (the export
never finishes), redirect (status queries answer 307 to /elsewhere). Each status poll advances
the running export: requested -> in_progress -> (after `polls` more polls) completed / failed.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BEHAVIOURS = ("normal", "fail", "in_progress", "cut", "corrupt", "stuck", "redirect")
GET_LATEST = "_system/cli/exports:getLatest"


def int64(value: int) -> dict:
    """An int64 the way Convex JSON encodes it: base64 of 8 little-endian bytes."""
    return {"$integer": base64.b64encode(value.to_bytes(8, "little", signed=True)).decode()}


def snapshot_zip() -> bytes:
    """A small export zip laid out like the backend's (tables, _storage, README).

    Entries carry a fixed date, so every call gives the same bytes (writestr with a bare
    name would stamp the current time, two seconds apart at most)."""
    entries = [
        ("README.md", "This is a Convex snapshot export.\n"),
        ("messages/documents.jsonl",
         "".join(json.dumps({"_id": f"m{i}", "body": "hello " * 40}) + "\n" for i in range(50))),
        ("messages/generated_schema.jsonl", '"any"\n'),
        ("_storage/documents.jsonl", '{"_id": "s1", "size": 4}\n'),
        ("_storage/s1", b"\x00\x01\x02\x03"),
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(2026, 11, 26, 3, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def corrupt_zip() -> bytes:
    """A zip that opens but whose first member's data no longer matches its CRC."""
    data = bytearray(snapshot_zip())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 2] ^= 0xFF
    return bytes(data)


class FakeConvex:
    """Start with `with FakeConvex(key, behaviour) as fake:`; the backend is at fake.url."""

    def __init__(self, admin_key: str, behaviour: str = "normal", polls: int = 2,
                 previous: bool = True, echo_auth: bool = False):
        assert behaviour in BEHAVIOURS, behaviour
        self.admin_key, self.behaviour, self.polls = admin_key, behaviour, polls
        self.echo_auth = echo_auth  # a careless backend that quotes the header it refused
        self.zip = corrupt_zip() if behaviour == "corrupt" else snapshot_zip()
        self.lock = threading.Lock()
        self.exports: list[dict] = []  # _exports docs of requestor snapshotExport, oldest first
        self.log: list[tuple[str, str, int]] = []  # (method, path with query, status answered)
        self.auth_headers: list[str | None] = []
        self.downloads: list[str] = []
        self._clock = 1_764_000_000_000.0
        if previous:  # an older, completed export the client must not take for its own
            self._add("completed")
        if behaviour == "in_progress":
            self._add("in_progress")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,),
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeConvex:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def requests_to(self, path: str) -> list[tuple[str, str, int]]:
        return [entry for entry in self.log if urlsplit(entry[1]).path == path]

    # ---- state -----------------------------------------------------------------------------

    def _add(self, state: str) -> dict:
        self._clock += 1000.0
        doc = {"_id": f"kd7{len(self.exports):04d}export", "_creationTime": self._clock,
               "state": state, "requestor": "snapshotExport", "component": None,
               "format": {"format": "zip", "include_storage": True},
               "expiration_ts": int64(int(self._clock * 1e6) + 14 * 86_400 * 10**9)}
        if state != "requested":
            doc["start_ts"] = int64(int(self._clock * 1e6))
        if state == "completed":
            doc["complete_ts"] = int64(int(self._clock * 1e6) + 10**9)
            doc["zip_object_key"] = f"object-{doc['_id']}"
        self.exports.append(doc)
        doc["_polls"] = 0
        return doc

    def _advance(self) -> None:
        doc = self.exports[-1] if self.exports else None
        if doc is None or doc["state"] not in ("requested", "in_progress"):
            return
        if doc["state"] == "requested":
            doc["state"], doc["start_ts"] = "in_progress", int64(int(self._clock * 1e6) + 5)
            return
        doc["_polls"] += 1
        if doc["_polls"] < self.polls or self.behaviour == "stuck":
            return
        doc["state"] = "failed" if self.behaviour == "fail" else "completed"
        doc["complete_ts" if doc["state"] == "completed" else "failed_ts"] = int64(10**18)

    # ---- HTTP ------------------------------------------------------------------------------

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # keep test output quiet
                pass

            def do_POST(self):
                fake._serve(self, "POST")

            def do_GET(self):
                fake._serve(self, "GET")

        return Handler

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self.lock:
            status, payload, headers = self._route(handler, method, body)
            self.log.append((method, handler.path, status))
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
            headers = {"Content-Type": "application/json", "Content-Length": str(len(payload))}
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)
        handler.wfile.flush()

    def _route(self, handler, method: str, body: bytes):
        parts = urlsplit(handler.path)
        auth = handler.headers.get("Authorization")
        self.auth_headers.append(auth)
        if auth != f"Convex {self.admin_key}":
            message = "The provided admin key was invalid for this instance"
            if self.echo_auth:
                message += f": {auth!r} " + "x" * 300
            return 401, {"code": "BadAdminKey", "message": message}, {}
        if method == "POST" and parts.path == "/api/export/request/zip":
            return self._request_export(parse_qs(parts.query), body)
        if method == "POST" and parts.path == "/api/query":
            if self.behaviour == "redirect":
                return 307, b"", {"Location": "/elsewhere", "Content-Length": "0"}
            return self._query(body)
        if method == "GET" and parts.path.startswith("/api/export/zip/"):
            return self._download(parts.path.rsplit("/", 1)[1])
        return 404, {"code": "NotFound", "message": f"{method} {parts.path}"}, {}

    def _request_export(self, query: dict, body: bytes):
        if query.get("includeStorage") != ["true"] or body:
            return 400, {"code": "BadRequest", "message": "expected includeStorage=true"}, {}
        if any(doc["state"] in ("requested", "in_progress") for doc in self.exports):
            return 400, {"code": "ExportInProgress",
                         "message": "There is already an export requested or in progress."}, {}
        self._add("requested")
        return 200, b"", {"Content-Length": "0"}

    def _query(self, body: bytes):
        try:
            request = json.loads(body)
        except ValueError:
            return 400, {"code": "BadJsonBody", "message": "not JSON"}, {}
        if request != {"path": GET_LATEST, "args": {}, "format": "json"}:
            return 200, {"status": "error", "errorMessage": f"unexpected {request!r}"}, {}
        self._advance()
        latest = self.exports[-1] if self.exports else None
        value = {k: v for k, v in latest.items() if not k.startswith("_p")} if latest else None
        return 200, {"status": "success", "value": value, "logLines": []}, {}

    def _download(self, export_id: str):
        doc = next((d for d in self.exports if d["_id"] == export_id), None)
        if doc is None or doc["state"] != "completed":
            return 404, {"code": "NotFound", "message": f"no completed export {export_id}"}, {}
        self.downloads.append(export_id)
        data, length = self.zip, len(self.zip)
        if self.behaviour == "cut":
            data = data[: length // 2]
        headers = {"Content-Type": "application/zip", "Content-Length": str(length),
                   "Content-Disposition": f"attachment; filename=snapshot_{export_id}.zip"}
        return 200, data, headers

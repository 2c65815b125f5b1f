"""ops/backup.py against hostile backends and a hostile --dest (audit "Hardening II"):
each test reproduces one finding on loopback or with planted files."""

import base64
import json
import os
import stat
import threading
import time
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_backup import FakeConvex

from ops import backup

KEY = "convex-self-hosted|" + "5ec2e7" * 10


@pytest.fixture(autouse=True)
def admin_key(monkeypatch):
    monkeypatch.setenv(backup.KEY_ENV, KEY)


def once(url, dest, *extra, keep=1, timeout=5.0):
    return backup.main(["once", "--url", url, "--dest", str(dest), "--keep", str(keep),
                        "--timeout", str(timeout), "--poll-interval", "0.01", *extra])


class Hostile:
    """A loopback backend whose every answer is written by `serve(handler)`, byte by byte if
    it likes; `with Hostile(serve) as server:` then `server.url`."""

    def __init__(self, serve):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(length) if length else b""
                try:
                    serve(self)
                except OSError:  # the client gave up: what these tests want
                    pass
                self.close_connection = True

            do_GET = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def answer(handler, status, payload: bytes, headers=()):
    handler.send_response(status)
    for name, value in {"Content-Length": str(len(payload)), **dict(headers)}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(payload)


def old_snapshot(dest: Path, day: int) -> str:
    name = f"snapshot-202001{day:02d}T030000Z.zip"
    with zipfile.ZipFile(dest / name, "w") as archive:
        archive.writestr("README.md", name)
    return name


def record(dest: Path) -> dict:
    return json.loads((dest / ".last-run.json").read_text())


# ---- prune touches only what it wrote --------------------------------------------------------

def test_prune_leaves_files_it_did_not_write_and_does_not_count_them(tmp_path, capsys):
    mine = [old_snapshot(tmp_path, day) for day in (1, 2, 3)]
    foreign = ["snapshot-before-migration.zip", "snapshot-2020.zip",
               "snapshot-20200101T030000Z.zip.bak", "Snapshot-20200104T030000Z.zip",
               "snapshot-20200105T030000Z.ZIP"]
    for name in foreign:
        (tmp_path / name).write_bytes(b"kept by hand")
    with FakeConvex(KEY) as fake:
        assert once(fake.url, tmp_path, keep=2) == 0
    assert "kept=2 " in capsys.readouterr().out
    left = sorted(p.name for p in tmp_path.iterdir())
    assert set(foreign) <= set(left) and mine[-1] in left
    assert not {mine[0], mine[1]} & set(left)
    for name in foreign:
        assert (tmp_path / name).read_bytes() == b"kept by hand"


def test_symlinks_with_a_snapshot_name_are_neither_counted_nor_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "precious.zip"
    target.write_bytes(b"not a backup")
    dest = tmp_path / "dest"
    dest.mkdir()
    mine = old_snapshot(dest, 2)
    (dest / "snapshot-20200101T030000Z.zip").symlink_to(target)  # sorts first: pruned first
    (dest / ".partial-snapshot-20200101T030000Z.zip").symlink_to(target)
    assert backup.prune(str(dest), 1, "snapshot-20260101T000000Z.zip") == 1
    assert target.read_bytes() == b"not a backup"
    assert (dest / "snapshot-20200101T030000Z.zip").is_symlink() and (dest / mine).exists()
    with FakeConvex(KEY) as fake:
        assert once(fake.url, dest, keep=1) == 0
    assert target.read_bytes() == b"not a backup"
    assert (dest / "snapshot-20200101T030000Z.zip").is_symlink()
    assert (dest / ".partial-snapshot-20200101T030000Z.zip").is_symlink()
    assert not (dest / mine).exists()  # a real, older snapshot of ours: pruned


@pytest.mark.parametrize("planted", ["snapshot-20200101T030000Z.zip",
                                     ".partial-snapshot-20200101T030000Z.zip", ".partial-x"])
def test_a_directory_with_a_snapshot_or_partial_name_never_fails_a_run(tmp_path, capsys, planted):
    (tmp_path / planted).mkdir()
    (tmp_path / planted / "inside").write_text("x")
    with FakeConvex(KEY) as fake:
        assert once(fake.url, tmp_path, keep=1) == 0
        assert once(fake.url, tmp_path, keep=1) == 0
    assert (tmp_path / planted / "inside").read_text() == "x"
    assert record(tmp_path)["ok"] is True
    assert "IsADirectoryError" not in capsys.readouterr().out


def test_partial_files_of_other_names_are_left_alone(tmp_path):
    (tmp_path / ".partial-notes.txt").write_text("mine")
    (tmp_path / ".partial-snapshot-20200101T030000Z.zip").write_bytes(b"crashed run")
    with FakeConvex(KEY) as fake:
        assert once(fake.url, tmp_path) == 0
    assert (tmp_path / ".partial-notes.txt").read_text() == "mine"
    assert not (tmp_path / ".partial-snapshot-20200101T030000Z.zip").exists()


# ---- the key never leaves, whatever its spelling; private files -----------------------------

HEX = KEY.split("|")[1]


@pytest.mark.parametrize("echo", [
    KEY.upper(), KEY.title(), urllib.parse.quote(KEY, safe=""),
    urllib.parse.quote(KEY, safe="").lower(), urllib.parse.quote(urllib.parse.quote(KEY, safe="")),
    urllib.parse.quote_plus("Convex " + KEY), KEY.replace("|", "\\u007c"),
    base64.b64encode(KEY.encode()).decode(), base64.b64encode(HEX.encode()).decode(),
    HEX.upper(), HEX[:20], HEX[7:40].upper(), repr(("Convex", KEY)),
])
def test_an_echoed_key_is_redacted_in_any_spelling(tmp_path, capsys, echo):
    message = json.dumps({"code": "BadAdminKey", "message": f"refused {echo} sorry"}).encode()
    with Hostile(lambda h: answer(h, 401, message)) as server:
        assert once(server.url, tmp_path) == 1
    out = capsys.readouterr().out
    written = (tmp_path / ".last-run.json").read_text()
    assert "***" in record(tmp_path)["reason"] and "sorry" in out
    for text in (out, written, out.lower(), written.lower()):
        assert echo not in text and echo.lower() not in text
        assert HEX[:16] not in text.lower() and HEX[-16:] not in text.lower()


@pytest.mark.parametrize("key", [KEY, "01" + "a3f9" * 30])  # and a legacy key: hex alone
def test_redact_cuts_every_piece_of_the_hex_part(key):
    hex_part = key.rpartition("|")[2]
    text = f"a {hex_part[5:25].upper()} b {hex_part[:15]} c {'0123456789abcdef' * 2}"
    assert backup.redact(text, key) == f"a *** b {hex_part[:15]} c {'0123456789abcdef' * 2}"


def test_health_redacts_a_key_left_in_an_old_record(tmp_path, capsys):
    (tmp_path / ".last-run.json").write_text(json.dumps(
        {"ok": False, "finished": "2026-01-01T00:00:00+00:00", "reason": f"no {KEY.upper()}"}))
    assert backup.main(["health", "--dest", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert HEX.upper() not in out and '"no ***"' in out


def test_every_file_is_private_in_a_private_directory(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir(mode=0o755)
    dest.chmod(0o755)  # made by someone else's umask
    (dest / ".last-run.json").write_text("{}")
    (dest / ".last-run.json").chmod(0o644)
    (dest / ".last-run.json.tmp").write_text("left over")
    (dest / ".last-run.json.tmp").chmod(0o644)
    with FakeConvex(KEY) as fake:
        assert once(fake.url, dest) == 0
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    written = [p for p in dest.iterdir()]
    assert {p.name for p in written} >= {".last-run.json", record(dest)["file"]}
    for path in written:
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600, path.name
    old_umask = os.umask(0)
    try:  # even with a careless umask
        with FakeConvex(KEY, "fail") as fake:
            assert once(fake.url, dest) == 1
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((dest / ".last-run.json").stat().st_mode) == 0o600


def test_a_dest_owned_by_someone_else_is_not_changed(tmp_path, monkeypatch):
    dest = tmp_path / "shared"
    dest.mkdir()
    dest.chmod(0o750)
    monkeypatch.setattr(backup.os, "geteuid", lambda: os.stat(dest).st_uid + 1)
    with FakeConvex(KEY) as fake:
        assert once(fake.url, dest) == 0
    assert stat.S_IMODE(dest.stat().st_mode) == 0o750


# ---- every body and every request is bounded -------------------------------------------------

class Backend:
    """Just enough of the export API for a run; `download(handler)` and `query(handler)`
    (for the export status) answer as they like. Counts the bytes a streaming answer sent."""

    def __init__(self, download=None, query=None):
        self.requested, self.sent = False, 0
        self.download, self.query = download, query

    def __call__(self, handler):
        if handler.path.startswith("/api/export/request/zip"):
            self.requested = True
            return answer(handler, 200, b"")
        if handler.path == "/api/query" and self.query is not None:
            return self.query(handler)
        if handler.path == "/api/query":
            function = json.loads(handler.body)["path"]
            value = {"_id": "e1", "state": "completed"} if self.requested else None
            if function != "_system/cli/exports:getLatest":
                value = []
            return answer(handler, 200, json.dumps({"status": "success", "value": value}).encode())
        if handler.path == "/api/export/zip/e1" and self.download is not None:
            return self.download(handler)
        return answer(handler, 404, b'{"code": "NotFound"}')

    def stream(self, handler, headers=(), piece=b"\0" * 65536, pause=0.0, seconds=10.0):
        """An answer that keeps coming (for SECONDS at most, so a test cannot hang)."""
        handler.send_response(200)
        for name, value in headers:
            handler.send_header(name, value)
        handler.end_headers()
        handler.close_connection = True
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            handler.wfile.write(piece)
            handler.wfile.flush()
            self.sent += len(piece)
            time.sleep(pause)


def failed_run(tmp_path, capsys, backend, *extra, timeout=5.0):
    started = time.monotonic()
    with Hostile(backend) as server:
        assert once(server.url, tmp_path, *extra, timeout=timeout) == 1
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    assert out.startswith("convex-backup failed reason=") and len(out.splitlines()) == 1
    reason = record(tmp_path)["reason"]
    assert json.dumps(reason) in out and record(tmp_path)["ok"] is False
    assert not [p for p in tmp_path.iterdir() if p.name != ".last-run.json"]  # no partial left
    return reason, elapsed


def test_a_download_that_never_ends_stops_at_max_bytes(tmp_path, capsys):
    backend = Backend()
    backend.download = backend.stream  # no Content-Length, never ends
    reason, elapsed = failed_run(tmp_path, capsys, backend, "--max-bytes", "8M")
    assert reason == "download larger than --max-bytes 8MiB"
    assert backend.sent < 64 << 20 and elapsed < 5


def test_a_download_announced_larger_than_max_bytes_is_not_started(tmp_path, capsys):
    backend = Backend()
    backend.download = lambda h: backend.stream(h, [("Content-Length", str(30 << 30))])
    reason, _ = failed_run(tmp_path, capsys, backend, "--max-bytes", "20G")
    assert reason == "download of 30GiB: download larger than --max-bytes 20GiB"
    assert backend.sent < 64 << 20


def test_a_huge_query_answer_is_not_read_into_memory(tmp_path, capsys):
    backend = Backend()
    backend.query = lambda h: backend.stream(h, [("Content-Length", str(400 << 20))],
                                             piece=b" " * 65536)
    reason, elapsed = failed_run(tmp_path, capsys, backend)
    assert reason == "export status: answer larger than 4MiB"
    assert backend.sent < 64 << 20 and elapsed < 5


def usage_with_free(dest: Path, free: int):
    """shutil.disk_usage for a disk with FREE bytes before the run's files were written."""
    real = backup.shutil.disk_usage

    def disk_usage(path):
        written = sum(p.stat().st_size for p in dest.iterdir() if p.is_file())
        return real(path)._replace(free=free - written)

    return disk_usage


def test_the_free_space_reserve_is_checked_before_the_download(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(backup.shutil, "disk_usage", usage_with_free(tmp_path, 3 << 30))
    backend = Backend()
    backend.download = lambda h: backend.stream(h, [("Content-Length", str(5 << 29))])
    reason, _ = failed_run(tmp_path, capsys, backend, "--min-free", "1G")
    assert reason == ("download stopped: 3GiB free in --dest, 2.5GiB more needed and "
                      "--min-free 1GiB kept")


def test_the_free_space_reserve_is_kept_while_downloading(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(backup.shutil, "disk_usage", usage_with_free(tmp_path, 100 << 20))
    backend = Backend()
    backend.download = backend.stream
    reason, elapsed = failed_run(tmp_path, capsys, backend, "--min-free", "40M")
    assert reason.startswith("download stopped: ") and reason.endswith(
        "free in --dest, 0B more needed and --min-free 40MiB kept")
    free = float(reason.split()[2].removesuffix("MiB"))
    assert 40 - 16 <= free < 40  # checked again after every 16 MiB at most
    assert elapsed < 5


@pytest.mark.parametrize("where", ["download", "query", "headers"])
def test_a_backend_that_trickles_cannot_outlast_the_run_timeout(tmp_path, capsys, where):
    """One byte every 0.4 s never trips a socket timeout; --timeout 2 ends the run."""
    backend = Backend()

    def trickle(handler):
        if where == "headers":  # the status line, then headers a byte at a time
            handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
        else:
            handler.send_response(200)
            handler.send_header("Content-Length", "100000")
            handler.end_headers()
        stop = time.monotonic() + 10
        while time.monotonic() < stop:
            handler.wfile.write(b"X" if where == "headers" else b" ")
            handler.wfile.flush()
            time.sleep(0.4)

    if where == "download":
        backend.download = trickle
    else:
        backend.query = trickle
    reason, elapsed = failed_run(tmp_path, capsys, backend, timeout=2.0)
    what = "download" if where == "download" else "export status"
    assert reason == f"{what}: timed out, the run took longer than --timeout 2s"
    assert elapsed < 4


def test_each_api_call_has_its_own_whole_request_deadline(tmp_path):
    def trickle(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _ in range(25):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.2)

    with Hostile(trickle) as server:
        client = backup.Client(server.url, KEY, timeout=1.0, run_timeout=60)
        started = time.monotonic()
        with pytest.raises(backup.BackupError) as failed:
            client.latest_export()
        client.close()
    assert str(failed.value) == "export status: no complete answer within 1s"
    assert time.monotonic() - started < 2.5


def test_a_run_past_its_deadline_makes_no_more_requests(monkeypatch):
    client = backup.Client("http://127.0.0.1:9", KEY, run_timeout=0.5)
    client.deadline = time.monotonic() - 1
    monkeypatch.setattr(client._opener, "open", lambda *a, **k: pytest.fail("opened"))
    with pytest.raises(backup.BackupError) as failed:
        client.open("download", "GET", "/x", stream=True)
    assert str(failed.value) == "download: timed out, the run took longer than --timeout 0.5s"


@pytest.mark.parametrize("text,value", [
    ("0", 0), ("1", 1), ("8M", 8 << 20), ("20G", 20 << 30), ("20GiB", 20 << 30), ("3k", 3072),
    ("2TB", 2 << 40), ("512B", 512)])
def test_sizes(text, value):
    assert backup.size(text) == value


@pytest.mark.parametrize("text", ["", "G", "1.5G", "-1", "1X", "iB", "1 G", "٣"])
def test_bad_sizes_are_usage_errors(tmp_path, capsys, text):
    assert once("http://127.0.0.1:9", tmp_path, "--max-bytes", text) == 2
    assert capsys.readouterr().err == (
        f"convex-backup: error: argument --max-bytes: invalid size value: {text!r}\n")


def test_max_bytes_must_be_positive(tmp_path, capsys):
    assert once("http://127.0.0.1:9", tmp_path, "--max-bytes", "0") == 2
    assert capsys.readouterr().err == "convex-backup: error: --max-bytes must be greater than 0\n"

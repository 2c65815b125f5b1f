"""components/backup.py against hostile backends and a hostile --dest (audit "Hardening II"):
each test reproduces one finding on loopback or with planted files."""

import base64
import json
import os
import stat
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fake_convex_export import FakeConvex

from components import backup

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

"""ops/backup.py in detail: the HTTP client, the export wait, download, retention,
the run record and the command line (test_backup.py runs it end to end)."""

import datetime as dt
import io
import json
import threading
import time
import urllib.error
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ops import backup
from ops.backup import BackupError, Client

KEY = "convex-self-hosted|" + "5ec2e7" * 10
UTC = dt.timezone.utc


class Recorder:
    """A loopback HTTP server that records each request and answers with `answer`."""

    def __init__(self, answer=lambda handler: (200, {}, b"{}")):
        self.requests, self.answer = [], answer
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                recorder.requests.append((self.command, self.path, dict(self.headers), body))
                status, headers, payload = recorder.answer(self)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(payload)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    servers = []

    def start(answer=lambda handler: (200, {}, b"{}")):
        servers.append(Recorder(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


# ---- the client ----------------------------------------------------------------------------

def test_requests_carry_the_key_json_and_the_method(recorder):
    server = recorder()
    client = Client(server.url + "//", KEY)
    assert client.url == server.url and client.timeout == 60.0
    client.open("a", "POST", "/api/query", {"path": "p"}).close()
    client.open("b", "POST", "/api/export/request/zip").close()
    client.open("c", "GET", "/api/export/zip/x").close()
    assert [(m, p, body) for m, p, _, body in server.requests] == [
        ("POST", "/api/query", b'{"path": "p"}'), ("POST", "/api/export/request/zip", None),
        ("GET", "/api/export/zip/x", None)]
    for _, _, headers, _ in server.requests:
        assert headers["Authorization"] == f"Convex {KEY}"
        assert headers["Content-Type"] == "application/json"
    assert server.requests[1][2]["Content-Length"] == "0"
    assert "Content-Length" not in server.requests[2][2]  # a GET carries no body at all


def test_the_timeout_reaches_every_request(monkeypatch):
    client = Client("http://backend:3210", KEY, timeout=7.5)
    seen = []
    monkeypatch.setattr(client._opener, "open", lambda request, **kw: seen.append(kw))
    client.open("a", "GET", "/x")
    assert seen == [{"timeout": 7.5}]


def test_proxies_from_the_environment_are_ignored(recorder, monkeypatch):
    proxy, backend = recorder(), recorder()
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    Client(backend.url.replace("127.0.0.1", "localhost"), KEY).open("a", "GET", "/x").close()
    assert proxy.requests == [] and len(backend.requests) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed_so_the_key_stays_home(recorder, status):
    elsewhere = recorder()
    backend = recorder(lambda h: (status, {"Location": elsewhere.url + "/steal"}, b""))
    client = Client(backend.url, KEY)
    for method in ("GET", "POST"):
        with pytest.raises(BackupError) as failed:
            client.open("download", method, "/api/export/zip/x")
        assert str(failed.value) == f"download: HTTP {status} error"
    assert elsewhere.requests == []


@pytest.mark.parametrize("payload,message,code", [
    (b'{"code": "BadAdminKey", "message": "The provided admin key was invalid"}',
     "status: HTTP 401 BadAdminKey The provided admin key was invalid", "BadAdminKey"),
    (b'{"code": "ExportInProgress"}', "status: HTTP 401 ExportInProgress", "ExportInProgress"),
    (b"<html>no</html>", "status: HTTP 401 error", "error"),
    (b'["a list"]', "status: HTTP 401 error", "error"),
])
def test_http_errors_name_the_status_and_the_backends_code(recorder, payload, message, code):
    server = recorder(lambda h: (401, {}, payload))
    with pytest.raises(BackupError) as failed:
        Client(server.url, KEY).open("status", "GET", "/x")
    assert (str(failed.value), failed.value.code) == (message, code)


def test_an_unreachable_backend_is_named_with_the_reason(monkeypatch):
    client = Client("http://backend:3210", KEY)

    def refuse(request, **kw):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(client._opener, "open", refuse)
    with pytest.raises(BackupError) as failed:
        client.open("export status", "POST", "/api/query")
    assert str(failed.value) == "export status: cannot reach backend ([Errno 111] Connection " \
                                "refused)"

    def cut(request, **kw):
        raise ConnectionResetError()

    monkeypatch.setattr(client._opener, "open", cut)
    with pytest.raises(BackupError) as failed:
        client.open("download", "GET", "/x")
    assert str(failed.value) == "download: cannot reach backend (ConnectionResetError)"


@pytest.mark.parametrize("answer,result", [
    ({"status": "success", "value": {"_id": "e1", "state": "completed"}},
     {"_id": "e1", "state": "completed"}),
    ({"status": "success", "value": None}, None),
    ({"status": "success", "value": {"state": "completed"}}, None),
    ({"status": "success", "value": ["_id"]}, None),
    ({"status": "error", "errorMessage": "Server Error"},
     "export status: query failed (Server Error)"),
    ({"status": "error"}, "export status: query failed (no valid answer)"),
    ({}, "export status: query failed (no valid answer)"),
])
def test_latest_export_reads_the_query_answer(recorder, answer, result):
    server = recorder(lambda h: (200, {}, json.dumps(answer).encode()))
    client = Client(server.url, KEY)
    if isinstance(result, str):
        with pytest.raises(BackupError) as failed:
            client.latest_export()
        assert str(failed.value) == result
    else:
        assert client.latest_export() == result
    ((method, path, _, body),) = server.requests
    assert (method, path, json.loads(body)) == ("POST", "/api/query", {
        "path": "_system/cli/exports:getLatest", "args": {}, "format": "json"})


# ---- waiting for the export ----------------------------------------------------------------

class ScriptedClient:
    """latest_export answers in turn (the last repeats); request answers or raises."""

    def __init__(self, *latest, request_error=None):
        self.latest, self.request_error, self.calls = list(latest), request_error, []

    def latest_export(self):
        self.calls.append("latest")
        return self.latest.pop(0) if len(self.latest) > 1 else self.latest[0]

    def open(self, what, method, path):
        self.calls.append((what, method, path))
        if self.request_error:
            raise self.request_error
        return io.BytesIO()


class FakeTime:
    def __init__(self):
        self.now = 100.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


@pytest.fixture
def fake_time(monkeypatch):
    clock = FakeTime()
    monkeypatch.setattr(backup, "time", clock)
    return clock


def test_the_export_asked_for_is_waited_for(fake_time):
    old = {"_id": "old", "state": "completed"}
    client = ScriptedClient(old, old, {"_id": "new", "state": "in_progress"},
                            {"_id": "new", "state": "completed"})
    assert backup.wait_for_export(client, 60, 2) == {"_id": "new", "state": "completed"}
    assert client.calls[:2] == ["latest", (
        "request export", "POST", "/api/export/request/zip?includeStorage=true")]
    assert fake_time.now == 104.0


@pytest.mark.parametrize("state", ["failed", "canceled", "cancelled"])
def test_an_export_that_ends_badly_fails_the_run(fake_time, state):
    client = ScriptedClient(None, {"_id": "new", "state": state})
    with pytest.raises(BackupError) as failed:
        backup.wait_for_export(client, 60, 2)
    assert str(failed.value) == f"export new ended in state {state}"


@pytest.mark.parametrize("running", ["requested", "in_progress"])
def test_an_export_already_running_is_joined(fake_time, running):
    busy = BackupError("request export: HTTP 400 ExportInProgress", "ExportInProgress")
    client = ScriptedClient({"_id": "theirs", "state": running},
                            {"_id": "theirs", "state": "completed"}, request_error=busy)
    assert backup.wait_for_export(client, 60, 2)["_id"] == "theirs"


def test_a_completed_export_before_a_busy_request_is_not_taken(fake_time):
    busy = BackupError("request export: HTTP 400 ExportInProgress", "ExportInProgress")
    client = ScriptedClient({"_id": "old", "state": "completed"},
                            {"_id": "old", "state": "completed"},
                            {"_id": "next", "state": "completed"}, request_error=busy)
    assert backup.wait_for_export(client, 60, 2)["_id"] == "next"
    with pytest.raises(BackupError, match="HTTP 500"):
        backup.wait_for_export(ScriptedClient(None, request_error=BackupError(
            "request export: HTTP 500 error", "error")), 60, 2)


def test_the_wait_stops_before_the_next_poll_would_pass_the_deadline(fake_time):
    client = ScriptedClient(None)
    with pytest.raises(BackupError) as failed:
        backup.wait_for_export(client, 4, 2)
    assert str(failed.value) == "export not completed within 4s (state not started)"
    # Polls at 0, 2 and 4 s: a fourth at 6 s would be past the deadline.
    assert client.calls.count("latest") == 1 + 3 and fake_time.now == 104.0


# ---- download, retention, the run record -----------------------------------------------

def big_zip() -> bytes:
    """An export (README, one table of 1,500 documents) over 1 MiB, so the download takes
    several reads."""
    buffer = io.BytesIO()
    line = json.dumps({"_id": "d", "body": "x" * 1000}) + "\n"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(zipfile.ZipInfo("README.md", (2026, 1, 1, 0, 0, 0)), "# export\n")
        archive.writestr(zipfile.ZipInfo("t/documents.jsonl", (2026, 1, 1, 0, 0, 0)),
                         line * 1500)
    return buffer.getvalue()


def test_download_quotes_the_id_and_writes_only_into_dest(recorder, tmp_path, monkeypatch):
    data = big_zip()
    server = recorder(lambda h: (200, {}, data))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    dest = tmp_path / "dest"
    dest.mkdir()
    size = backup.download(Client(server.url, KEY), "kd7/1 2", str(dest), "snapshot-x.zip")
    assert size == len(data) > 1 << 20
    assert server.requests[0][1] == "/api/export/zip/kd7%2F1%202"
    assert (dest / "snapshot-x.zip").read_bytes() == data
    assert sorted(p.name for p in dest.iterdir()) == ["snapshot-x.zip"]
    assert list(elsewhere.iterdir()) == []


def test_a_download_that_breaks_off_is_named(monkeypatch, tmp_path):
    client = Client("http://backend:3210", KEY)

    def broken(what, method, path, **kw):
        raise ConnectionResetError()

    monkeypatch.setattr(client, "open", broken)
    with pytest.raises(BackupError) as failed:
        backup.download(client, "e", str(tmp_path), "s.zip")
    assert str(failed.value) == "download failed (ConnectionResetError)"
    assert list(tmp_path.iterdir()) == []


def snapshot_name(n: int) -> str:
    return f"snapshot-202601{n:02d}T030000Z.zip"


@pytest.mark.parametrize("count,keep,newest,left", [
    (6, 2, 6, [5, 6]),
    (6, 5, 6, [2, 3, 4, 5, 6]),
    (3, 1, 1, [1, 3]),  # the newest download is never deleted
    (2, 7, 2, [1, 2]),
])
def test_prune_keeps_the_newest(tmp_path, count, keep, newest, left):
    for n in range(1, count + 1):
        (tmp_path / snapshot_name(n)).write_bytes(b"z")
    (tmp_path / "other.zip").write_bytes(b"mine")
    assert backup.prune(str(tmp_path), keep, snapshot_name(newest)) == len(left)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [snapshot_name(n) for n in left] + ["other.zip"])


class Flushes(io.StringIO):
    def __init__(self):
        super().__init__()
        self.flushed_at = []

    def flush(self):
        self.flushed_at.append(len(self.getvalue()))


class Response(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def test_a_run_names_its_snapshot_in_utc_records_it_and_flushes_its_line(
        monkeypatch, tmp_path):
    data = big_zip()
    monkeypatch.setattr(backup, "wait_for_export",
                        lambda client, timeout, poll: {"_id": "e9", "start_ts": "12"})
    monkeypatch.setattr(backup.Client, "open",
                        lambda self, what, method, path, **kw: Response(data))
    monkeypatch.setattr(backup.Client, "environment_variables", lambda self: [])
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    out = Flushes()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / ".partial-snapshot-20260101T030000Z.zip").write_bytes(b"crashed")
    try:
        assert backup.run_once("http://b:3210", KEY, str(dest), 3, 60, 1) is True
    finally:
        monkeypatch.undo()
        time.tzset()
    (name,) = [p.name for p in dest.glob("snapshot-*.zip")]
    stamp = dt.datetime.strptime(name, "snapshot-%Y%m%dT%H%M%SZ.zip").replace(tzinfo=UTC)
    assert abs(dt.datetime.now(UTC) - stamp) < dt.timedelta(minutes=2)
    record = json.loads((dest / ".last-run.json").read_text())
    env_file = name.removesuffix(".zip") + ".env.json"
    assert {k: v for k, v in record.items() if k != "finished"} == {
        "ok": True, "file": name, "reason": None, "env_file": env_file, "env_vars": 0,
        "bytes": len(data), "export_id": "e9", "start_ts": 12, "tables": 1, "documents": 1500,
        "files": 0}
    assert sorted(p.name for p in dest.iterdir()) == [".last-run.json", env_file, name]
    assert (dest / env_file).read_text() == "[]\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]
    line = out.getvalue()
    assert line.startswith(f"convex-backup ok file={name} bytes={len(data)} tables=1 "
                           "documents=1500 files=0 kept=1 elapsed=")
    assert float(line.rsplit("=", 1)[1].rstrip("s\n")) < 60
    assert out.flushed_at == [len(line)]


def failing_run(monkeypatch, tmp_path, error, key=KEY):
    def fail(client, timeout, poll):
        raise error

    monkeypatch.setattr(backup, "wait_for_export", fail)
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    assert backup.run_once("http://b:3210", key, str(tmp_path), 3, 60, 1) is False
    return json.loads((tmp_path / ".last-run.json").read_text())["reason"], out.getvalue()


@pytest.mark.parametrize("error,reason", [
    (BackupError("x" * 200), "x" * 200),
    (BackupError("x" * 201), "x" * 197 + "..."),
    (BackupError(""), "error"),
    (KeyError("secret detail"), "KeyError"),
    (BackupError(f"refused {KEY}"), "refused ***"),
])
def test_a_failed_run_records_a_short_reason_without_the_key(monkeypatch, tmp_path, error,
                                                              reason):
    recorded, line = failing_run(monkeypatch, tmp_path, error)
    assert recorded == reason
    assert line.startswith(f"convex-backup failed reason={json.dumps(reason)} elapsed=")


def test_only_keys_longer_than_eight_characters_are_redacted(monkeypatch, tmp_path):
    assert failing_run(monkeypatch, tmp_path, BackupError("a 123456789 b"),
                       key="123456789")[0] == "a *** b"
    assert failing_run(monkeypatch, tmp_path, BackupError("a 12345678 b"),
                       key="12345678")[0] == "a 12345678 b"


def test_a_run_whose_record_cannot_be_written_still_logs_its_line(monkeypatch, tmp_path):
    (tmp_path / ".last-run.json").mkdir()  # the record cannot replace a directory
    monkeypatch.setattr(backup, "wait_for_export", lambda *a: (_ for _ in ()).throw(
        BackupError("boom")))
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    assert backup.run_once("http://b:3210", KEY, str(tmp_path), 3, 60, 1) is False
    assert out.getvalue().startswith('convex-backup failed reason="boom" elapsed=')


# ---- the command line ----------------------------------------------------------------------

def test_defaults_and_required_arguments():
    args = backup.build_parser().parse_args(["once", "--url", "u", "--dest", "d", "--keep", "2"])
    assert (args.timeout, args.poll_interval, args.keep) == (1800.0, 2.0, 2)
    assert backup.build_parser().prog == "convex-backup"
    full = ["--url", "u", "--dest", "d", "--keep", "2"]
    for command, extra in (("once", []), ("schedule", ["--cron", "* * * * *"])):
        for drop in range(0, len(full + extra), 2):
            argv = [command] + (full + extra)[:drop] + (full + extra)[drop + 2:]
            with pytest.raises(backup.UsageError, match="arguments are required"):
                backup.build_parser().parse_args(argv)
    with pytest.raises(backup.UsageError, match="arguments are required: command"):
        backup.build_parser().parse_args([])


def test_help_names_every_command_and_option(capsys):
    with pytest.raises(SystemExit):
        backup.build_parser().parse_args(["schedule", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: convex-backup schedule [-h] --url URL --dest DEST --keep KEEP "
                           "[--timeout TIMEOUT] [--poll-interval POLL_INTERVAL] [--max-bytes "
                           "MAX_BYTES] [--min-free MIN_FREE] --cron CRON")
    for fragment in ("backend URL, e.g. http://backend:3210", "backup directory (created 0700)",
                     "snapshots to keep", "seconds per run: export, download and all",
                     "largest snapshot to download", "free space to leave in --dest",
                     "5-field cron expression, UTC"):
        assert fragment in text
    with pytest.raises(SystemExit):
        backup.build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert backup.__doc__.splitlines()[0] in text
    for fragment in ("once back up once", "schedule back up on --cron",
                     "health is the last run ok?",
                     "restore replace ALL data with a snapshot zip, as `npx convex import "
                     "--replace-all` does"):
        assert fragment in text


def test_path_helpers_are_where_the_container_expects_them():
    assert (backup.LAST_RUN, backup.PARTIAL) == (".last-run.json", ".partial-")
    assert Path(backup.__file__).name == "backup.py"


def test_a_download_is_verified_in_dest_and_named_when_it_fails(recorder, tmp_path, monkeypatch):
    moves = []
    real_replace = backup.os.replace
    monkeypatch.setattr(backup.os, "replace", lambda a, b: (moves.append((a, b)),
                                                           real_replace(a, b)))
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    server = recorder(lambda h: (200, {}, big_zip()))
    backup.download(Client(server.url, KEY), "e1", str(dest), "s.zip")
    # the partial file sits beside its final name: a rename, never a copy across filesystems
    assert moves == [(str(dest / ".partial-s.zip"), str(dest / "s.zip"))]
    bad = recorder(lambda h: (200, {}, b"not a zip"))
    with pytest.raises(BackupError) as failed:
        backup.download(Client(bad.url, KEY), "e2", str(dest), "t.zip")
    assert str(failed.value) == "downloaded file is not a valid zip"
    short = recorder(lambda h: (200, {"Content-Length": "999999"}, b"abc"))
    with pytest.raises(BackupError) as failed:
        backup.download(Client(short.url, KEY), "e3", str(dest), "u.zip")
    assert str(failed.value).startswith("download ")
    refused = recorder(lambda h: (404, {}, b'{"code": "NotFound"}'))
    with pytest.raises(BackupError) as failed:
        backup.download(Client(refused.url, KEY), "e4", str(dest), "v.zip")
    assert str(failed.value) == "download: HTTP 404 NotFound"
    assert sorted(p.name for p in dest.iterdir()) == ["s.zip"]


def test_a_run_never_prunes_its_own_snapshot_and_writes_its_record_in_dest(
        monkeypatch, tmp_path):
    monkeypatch.setattr(backup, "wait_for_export", lambda client, timeout, poll: {"_id": "e9"})
    monkeypatch.setattr(backup.Client, "open",
                        lambda self, what, method, path, **kw: Response(big_zip()))
    monkeypatch.setattr(backup.Client, "environment_variables", lambda self: [])
    monkeypatch.setattr("sys.stdout", io.StringIO())
    opened = []
    real_open = backup.os.open
    monkeypatch.setattr(backup.os, "open", lambda path, *a: (opened.append(str(path)),
                                                             real_open(path, *a))[1])
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "snapshot-29991231T235959Z.zip").write_bytes(b"z")  # a name that sorts later
    assert backup.run_once("http://b:3210", KEY, str(dest), 1, 60, 1) is True
    record = json.loads((dest / ".last-run.json").read_text())
    assert sorted(p.name for p in dest.glob("snapshot-*.zip")) == sorted([
        "snapshot-29991231T235959Z.zip", record["file"]])
    assert record["start_ts"] is None
    env_file = record["env_file"]
    assert opened == [str(dest / f".partial-{env_file}"), str(dest / f".partial-{record['file']}"),
                      str(dest / ".last-run.json.tmp")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]


@pytest.mark.parametrize("value,number", [
    (None, None), ("12", 12), (7, 7), ({"$integer": "AQAAAAAAAAA="}, 1), ("x", None),
    ({"$integer": "A"}, None), ({}, None)])
def test_int64_values_are_read_in_every_form_and_never_fail(value, number):
    assert backup.decode_int64(value) == number


@pytest.mark.parametrize("url,message", [
    ("ftp://backend:3210", "--url must be an http(s) URL, not 'ftp://backend:3210'"),
    ("http://user@backend:3210", "--url must not hold credentials, a query or a fragment"),
    ("http://backend:3210?a", "--url must not hold credentials, a query or a fragment"),
])
def test_backend_urls_are_checked(monkeypatch, tmp_path, capsys, url, message):
    monkeypatch.setenv(backup.KEY_ENV, KEY)
    assert backup.main(["once", "--url", url, "--dest", str(tmp_path), "--keep", "1"]) == 2
    assert capsys.readouterr().err == f"convex-backup: error: {message}\n"


@pytest.mark.parametrize("option", ["--keep", "--timeout", "--poll-interval"])
@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan"])
def test_counts_and_durations_must_be_positive_and_finite(monkeypatch, tmp_path, capsys, option,
                                                          value):
    if option == "--keep" and value in ("inf", "nan"):
        return  # not an integer: argparse refuses it
    monkeypatch.setenv(backup.KEY_ENV, KEY)
    argv = ["once", "--url", "https://B.EXAMPLE.BOX/", "--dest", str(tmp_path), "--keep", "1"]
    assert backup.main(argv + [option, value]) == 2
    assert capsys.readouterr().err == f"convex-backup: error: {option} must be greater than 0\n"


def test_urls_lose_their_trailing_slashes_only(monkeypatch, tmp_path):
    runs = []
    monkeypatch.setattr(backup, "run_once", lambda *args: runs.append(args) or True)
    monkeypatch.setenv(backup.KEY_ENV, KEY)
    assert backup.main(["once", "--url", "https://B.EXAMPLE.BOX//", "--dest", str(tmp_path),
                        "--keep", "1"]) == 0
    assert runs[0][0] == "https://B.EXAMPLE.BOX"
    assert Client("http://X/", KEY).url == "http://X"


# The off-host options of once and schedule (ops/backup_offsite.add_offsite_arguments).
S3_USAGE = ("[--s3-bucket S3_BUCKET] [--s3-endpoint S3_ENDPOINT] [--s3-region S3_REGION] "
            "[--s3-prefix S3_PREFIX] [--s3-path-style] [--s3-lock-days S3_LOCK_DAYS] "
            "[--encrypt] [--no-local] ")
S3_HELP = (" --s3-bucket S3_BUCKET also copy each verified snapshot to this bucket (credentials: "
           "AWS_ACCESS_KEY_ID, ...) --s3-endpoint S3_ENDPOINT S3-compatible endpoint URL "
           "--s3-region S3_REGION --s3-prefix S3_PREFIX key prefix (per deployment) "
           "--s3-path-style --s3-lock-days S3_LOCK_DAYS object lock (compliance) "
           "retention of each copy, days --encrypt encrypt the copies with the key in "
           "CONVEX_BACKUP_ENCRYPTION_KEY (base64 of 32 bytes) --no-local remove the local "
           "copy once the bucket has it")
HELP = {
    "once": "usage: convex-backup once [-h] --url URL --dest DEST --keep KEEP [--timeout TIMEOUT] "
            "[--poll-interval POLL_INTERVAL] [--max-bytes MAX_BYTES] [--min-free MIN_FREE] "
            + S3_USAGE +
            "options: -h, --help show this help message and "
            "exit --url URL backend URL, e.g. http://backend:3210 --dest DEST backup directory "
            "(created 0700) --keep KEEP snapshots to keep --timeout TIMEOUT seconds per run: "
            "export, download and all --poll-interval POLL_INTERVAL seconds --max-bytes "
            "MAX_BYTES largest snapshot to download (bytes, or with K, M, G, T; 20G) --min-free "
            "MIN_FREE free space to leave in --dest (1G)"
            + S3_HELP,
    "schedule": "usage: convex-backup schedule [-h] --url URL --dest DEST --keep KEEP [--timeout "
                "TIMEOUT] [--poll-interval POLL_INTERVAL] [--max-bytes MAX_BYTES] [--min-free "
                "MIN_FREE] --cron CRON "
            + S3_USAGE +
                "options: -h, --help show "
                "this help message and exit --url URL backend URL, e.g. http://backend:3210 "
                "--dest DEST backup directory (created 0700) --keep KEEP snapshots to keep "
                "--timeout TIMEOUT seconds per run: export, download and all --poll-interval "
                "POLL_INTERVAL seconds --max-bytes MAX_BYTES largest snapshot to download "
                "(bytes, or with K, M, G, T; 20G) --min-free MIN_FREE free space to leave in "
                "--dest (1G) --cron CRON 5-field cron expression, UTC"
            + S3_HELP,
    "health": "usage: convex-backup health [-h] --dest DEST options: -h, --help show this help "
              "message and exit --dest DEST",
    "restore": "usage: convex-backup restore [-h] --url URL --file FILE [--yes] [--timeout "
               "TIMEOUT] [--poll-interval POLL_INTERVAL] [--no-env] options: -h, --help show "
               "this help message and exit --url URL backend URL, e.g. http://127.0.0.1:3210 "
               "--file FILE a snapshot zip --yes do not ask for confirmation --timeout TIMEOUT "
               "seconds for the whole import: upload, parse and write --poll-interval "
               "POLL_INTERVAL seconds --no-env do not set the environment variables saved "
               "beside the zip",
}


@pytest.mark.parametrize("command", sorted(HELP))
def test_help_of_each_command_word_for_word(capsys, command):
    with pytest.raises(SystemExit):
        backup.build_parser().parse_args([command, "--help"])
    assert " ".join(capsys.readouterr().out.split()) == HELP[command]


@pytest.mark.parametrize("argv,missing", [
    (["health"], "--dest"), (["restore", "--file", "x.zip"], "--url"),
    (["restore", "--url", "http://b:3210"], "--file")])
def test_required_options_of_health_and_restore(argv, missing):
    with pytest.raises(backup.UsageError) as refused:
        backup.build_parser().parse_args(argv)
    assert str(refused.value) == f"the following arguments are required: {missing}"


def test_a_snapshot_that_fails_verification_is_removed_and_fails_the_run(tmp_path):
    """A download that is not a usable export never counts toward --keep."""
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("README.md", "# export\n")
        archive.writestr("t/documents.jsonl", '{"_id": "a"}\nnot json\n')
    data = broken.getvalue()
    dest = tmp_path / "dest"
    older = dest / "snapshot-20260101T000000Z.zip"
    dest.mkdir()
    older.write_bytes(big_zip())
    path = dest / "snapshot-20260102T000000Z.zip"
    path.write_bytes(data)
    with pytest.raises(backup.BackupError) as failed:
        backup.checked(path)
    assert str(failed.value) == ("the snapshot failed verification: t/documents.jsonl: line 2 "
                                 "is not JSON")
    assert not path.exists() and older.exists()

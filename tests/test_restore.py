"""`backup.py restore` against a loopback fake of the backend's snapshot import API.

The fake answers as upstream does (crates/local_backend/src/snapshot_import.rs,
crates/model/src/snapshot_imports/types.rs, npm-packages/convex/src/cli/lib/convexImport.ts):
start_upload -> {"uploadToken"}, upload_part -> a JSON part token, finish_upload ->
{"importId"}, the query _system/cli/queryImport -> the import's document, whose state moves
one step per poll; perform_import -> 200 with an empty body. Each test scripts what it needs.
"""

import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from components.core.backups import client_files
from ops import backup

KEY = "convex-self-hosted|" + "5ec2e7" * 10
TOKEN = '{"objectKey":"6f1c 2b","filepath":"/convex/data/storage/imports/6f1c.blob"}'
IMPORT_ID = "kh7bdm1q8yfxm0dtm9t0pmgmv57dz9rn"
ENV = [{"name": "JWT_PRIVATE_KEY", "value": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END"},
       {"name": "OPENAI_API_KEY", "value": "sk-test"}]
SUMMARY = ("Import change summary:\ntable    | create | delete         |\n"
           "------------------------------------\n"
           "messages | 50     | 3 of 3 documents |\n"
           "Once the import has started, it will run in the background.\n"
           "Interrupting `npx convex import` will not cancel it.")
BEFORE = [{"state": "uploaded"},
          {"state": "waiting_for_confirmation", "message_to_confirm": SUMMARY,
           "require_manual_confirmation": True}]
AFTER = [{"state": "in_progress", "progress_message": "Importing", "checkpoint_messages": []},
         {"state": "in_progress", "progress_message": "Importing",
          "checkpoint_messages": ['Imported "messages" (50 documents)']},
         {"state": "completed", "timestamp": "1764126000000000000", "num_rows_written": "50"}]


def answer(status=200, body=None):
    payload = b"" if body is None else json.dumps(body).encode()
    return status, payload


class FakeImport:
    """The import API on loopback. `routes` maps a path to a function (request) -> (status,
    payload bytes), or None when it answered by itself; `before`/`after` are the states the
    import query walks through before and after perform_import (the last one stays)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.parts: list[bytes] = []
        self.before, self.after, self.performed = list(BEFORE), list(AFTER), False
        self.imports = [{"_id": "older", "state": {"state": "completed"}}]
        self.routes = {
            "/api/import/start_upload": lambda r: answer(body={"uploadToken": TOKEN}),
            "/api/import/upload_part": self.upload_part,
            "/api/import/finish_upload": lambda r: answer(body={"importId": IMPORT_ID}),
            "/api/perform_import": self.perform,
            "/api/query": self.query,
            "/api/update_environment_variables": lambda r: answer(),
        }
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                url = urllib.parse.urlsplit(self.path)
                request = {"method": self.command, "path": url.path, "query": url.query,
                           "headers": dict(self.headers),
                           "body": self.rfile.read(length) if length else b"", "handler": self}
                fake.requests.append(request)
                route = fake.routes.get(url.path)
                status, payload = (404, b'{"code": "NotFound", "message": "no route"}') \
                    if route is None else route(request) or (None, None)
                if status is None:
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def upload_part(self, request):
        self.parts.append(request["body"])
        return answer(body=f"etag-{len(self.parts)}")

    def perform(self, request):
        self.performed = True
        return answer()

    def query(self, request):
        body = json.loads(request["body"])
        if body["path"] == backup.IMPORT_LIST:
            return answer(body={"status": "success", "value": self.imports})
        assert body == {"path": backup.IMPORT_QUERY, "args": {"importId": IMPORT_ID},
                        "format": "json"}
        states = self.after if self.performed else self.before
        state = states.pop(0) if len(states) > 1 else states[0]
        return answer(body={"status": "success", "value": {
            "_id": IMPORT_ID, "_creationTime": 1764126000000.0, "state": state,
            "format": {"format": "zip"}, "mode": "ReplaceAll", "requestor": {
                "type": "snapshotImport"}}})

    def paths(self):
        return [r["path"] for r in self.requests]


@pytest.fixture
def fake():
    server = FakeImport()
    yield server
    server.close()


@pytest.fixture
def snapshot(tmp_path):
    """A snapshot zip of about 10 KB that does not compress (stored random bytes)."""
    path = tmp_path / "snapshot-20261126T030000Z.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("messages/documents.jsonl", "".join(
            json.dumps({"_id": f"m{i}", "body": os.urandom(90).hex()}) + "\n" for i in range(50)))
        archive.writestr("_storage/documents.jsonl", "")
    return path


def env_beside(snapshot: Path, variables=ENV) -> Path:
    env_file = snapshot.with_name(snapshot.name.replace(".zip", ".env.json"))
    env_file.write_text(json.dumps(variables))
    return env_file


@pytest.fixture
def restore(monkeypatch, capsys):
    """`restore` in this process, without a TTY (so: --yes, or a usage error)."""

    def run(url, file, *extra, tty_answers=None, key=KEY):
        argv = ["restore", "--url", url, "--file", str(file), "--poll-interval", "0.01", *extra]
        prompts = []
        with monkeypatch.context() as patched:
            patched.setenv(backup.KEY_ENV, key)
            if tty_answers is None:
                patched.setattr(sys, "stdin", io.StringIO())
            else:
                patched.setattr(sys, "stdin", type("Tty", (io.StringIO,),
                                                   {"isatty": lambda s: True})())
                patched.setattr("builtins.input",
                                lambda prompt: prompts.append(prompt) or tty_answers.pop(0))
            code = backup.main(argv)
        out, err = capsys.readouterr()
        result = subprocess.CompletedProcess(argv, code, out, err)
        result.prompts = prompts
        return result

    return run


def failed_line(snapshot, reason):
    return f"convex-backup restore failed file={snapshot} reason={json.dumps(reason)}"


# ---- the protocol ------------------------------------------------------------------------------

def test_a_restore_uploads_in_parts_confirms_then_sets_the_variables(fake, snapshot, restore,
                                                                     monkeypatch):
    monkeypatch.setattr(backup, "IMPORT_PART", 4096)
    env_file = env_beside(snapshot)
    result = restore(fake.url, snapshot, "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    data = snapshot.read_bytes()
    parts = -(-len(data) // 4096)
    assert parts >= 3
    assert fake.paths() == (["/api/query", "/api/import/start_upload"]
                            + ["/api/import/upload_part"] * parts
                            + ["/api/import/finish_upload", "/api/query", "/api/query",
                               "/api/perform_import", "/api/query", "/api/query", "/api/query",
                               "/api/update_environment_variables"])
    # One request at a time, in order; each part 5 MiB upstream (4096 bytes here) but the last.
    assert b"".join(fake.parts) == data
    assert [len(part) for part in fake.parts[:-1]] == [4096] * (parts - 1)
    uploads = [r for r in fake.requests if r["path"] == "/api/import/upload_part"]
    assert [r["query"] for r in uploads] == [
        f"uploadToken={urllib.parse.quote(TOKEN, safe='')}&partNumber={n}"
        for n in range(1, parts + 1)]
    assert {r["headers"]["Content-Type"] for r in uploads} == {"application/octet-stream"}
    assert all(r["headers"]["Authorization"] == f"Convex {KEY}" for r in fake.requests)
    bodies = {r["path"]: r["body"] for r in fake.requests}
    assert bodies["/api/import/start_upload"] == b""
    assert json.loads(bodies["/api/import/finish_upload"]) == {
        "import": {"mode": "replaceAll", "format": "zip"}, "uploadToken": TOKEN,
        "partTokens": [f"etag-{n}" for n in range(1, parts + 1)]}
    assert json.loads(bodies["/api/perform_import"]) == {"importId": IMPORT_ID}
    assert json.loads(bodies["/api/update_environment_variables"]) == {"changes": ENV}
    assert result.stdout == (
        f"convex-backup restore started file={snapshot} url={fake.url}\n"
        f"convex-backup restore uploaded bytes={len(data)} parts={parts} import={IMPORT_ID}\n"
        f"{SUMMARY}\n"
        'convex-backup restore: Imported "messages" (50 documents)\n'
        f"convex-backup restore ok file={snapshot} documents=50\n"
        f"convex-backup restore env ok file={env_file} variables=2\n")
    assert result.stderr == "" and "sk-test" not in result.stdout


def test_parts_grow_so_that_no_upload_needs_10000_of_them(fake, snapshot, restore, monkeypatch):
    monkeypatch.setattr(backup, "IMPORT_PART", 1000)
    monkeypatch.setattr(backup, "IMPORT_MAX_PARTS", 3)
    assert restore(fake.url, snapshot, "--yes").returncode == 0
    size = snapshot.stat().st_size
    assert len(fake.parts) == 3 and len(fake.parts[0]) == -(-size // 3)


def test_no_node_no_app_directory_and_any_working_directory(fake, snapshot, restore, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    monkeypatch.chdir(tmp_path)
    result = restore(fake.url, snapshot.name, "--yes", "--app-dir", str(tmp_path / "gone"))
    assert result.returncode == 0, result.stdout
    assert f"convex-backup restore ok file={snapshot} documents=50" in result.stdout


def test_a_restore_runs_as_a_lone_script(fake, snapshot, tmp_path):
    for name, text in client_files().items():  # as uploaded beside a deployment
        (tmp_path / name).write_text(text)
    lone = tmp_path / "convex_backup.py"
    done = subprocess.run([sys.executable, str(lone), "restore", "--url", fake.url, "--file",
                           str(snapshot), "--yes", "--no-env", "--poll-interval", "0.01"],
                          env={"PATH": "/usr/bin:/bin", backup.KEY_ENV: KEY},
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == f"convex-backup restore ok file={snapshot} documents=50"


def test_with_no_env_only_the_import_runs(fake, snapshot, restore):
    env_beside(snapshot)
    result = restore(fake.url, snapshot, "--yes", "--no-env")
    assert result.returncode == 0
    assert "/api/update_environment_variables" not in fake.paths()
    assert result.stdout.splitlines()[-1] == (
        f"convex-backup restore ok file={snapshot} documents=50")


def test_a_running_import_is_named_and_a_missing_list_query_only_noted(fake, snapshot, restore):
    fake.imports = [{"_id": "busy1", "state": {"state": "in_progress"}}]
    running = restore(fake.url, snapshot, "--yes")
    assert running.returncode == 0
    assert ("convex-backup restore: another import is in progress (import=busy1); it runs on "
            "beside this one") in running.stdout.splitlines()
    fake.routes["/api/query"] = lambda r: (answer(body={
        "status": "error", "errorMessage": "Could not find public function for "
                                           "'_system/cli/queryImport:list'"})
        if json.loads(r["body"])["path"] == backup.IMPORT_LIST else fake.query(r))
    fake.before, fake.after, fake.performed = list(BEFORE), list(AFTER), False
    old = restore(fake.url, snapshot, "--yes")
    assert old.returncode == 0
    assert ("convex-backup restore: cannot list running imports (list imports: query failed "
            "(Could not find public function for '_system/cli/queryImport:list'))"
            ) in old.stdout.splitlines()


def test_no_confirmation_needed_still_performs(fake, snapshot, restore):
    fake.before = [{"state": "waiting_for_confirmation", "message_to_confirm": "",
                    "require_manual_confirmation": False}]
    result = restore(fake.url, snapshot, "--yes")
    assert result.returncode == 0 and fake.performed


# ---- confirmation ------------------------------------------------------------------------------

def test_without_yes_and_without_a_tty_nothing_is_sent(fake, snapshot, restore):
    result = restore(fake.url, snapshot)
    assert (result.returncode, result.stderr) == (
        2, "convex-backup: error: restore replaces ALL data: pass --yes (no TTY to confirm on)\n")
    assert fake.requests == []


@pytest.mark.parametrize("answer_given, code", [("yes", 0), ("YES ", 0), ("no", 1), ("", 1)])
def test_on_a_tty_the_summary_comes_first_then_one_question(fake, snapshot, restore,
                                                            answer_given, code):
    env_beside(snapshot)
    result = restore(fake.url, snapshot, tty_answers=[answer_given])
    assert result.returncode == code
    assert result.prompts == [
        f"Replace ALL data in {fake.url} (every table and file) with {snapshot} and set 2 "
        "environment variable(s)? Type 'yes' to go on: "]
    assert SUMMARY in result.stdout
    assert fake.performed == (code == 0)
    assert ("/api/update_environment_variables" in fake.paths()) == (code == 0)
    assert result.stderr == ("" if code == 0 else
                             "convex-backup restore aborted: nothing was changed\n")


# ---- refusals and failures ---------------------------------------------------------------------

def test_a_refused_key_stops_before_anything_is_uploaded(fake, snapshot, restore):
    fake.routes["/api/query"] = lambda r: answer(401, {
        "code": "BadAdminKey", "message": "The provided admin key was invalid for this instance"})
    env_beside(snapshot)
    result = restore(fake.url, snapshot, "--yes")
    assert result.returncode == 1
    assert fake.paths() == ["/api/query"]
    assert result.stdout.splitlines()[-1] == failed_line(
        snapshot, "list imports: HTTP 401 BadAdminKey The provided admin key was invalid for "
                  "this instance")


def test_a_backend_without_replace_all_is_named(fake, snapshot, restore):
    fake.routes["/api/import/finish_upload"] = lambda r: answer(400, {
        "code": "BadJsonBody", "message": "Failed to deserialize the JSON body into the target "
        "type: import.mode: unknown variant `replaceAll`"})
    result = restore(fake.url, snapshot, "--yes")
    assert result.returncode == 1 and not fake.performed
    assert result.stdout.splitlines()[-1] == failed_line(
        snapshot, "finish upload: HTTP 400 BadJsonBody Failed to deserialize the JSON body into "
                  "the target type: import.mode: unknown variant `replaceAll`")


INVALID_ZIP = {"state": "failed",
               "error_message": "Hit an error while importing:\ninvalid zip file"}


@pytest.mark.parametrize("before, after", [
    ([{"state": "uploaded"}, INVALID_ZIP], None),
    (None, [{"state": "in_progress", "checkpoint_messages": []}, INVALID_ZIP]),
])
def test_a_failed_import_fails_the_restore_and_sets_no_variables(fake, snapshot, restore,
                                                                 before, after):
    fake.before, fake.after = before or fake.before, after or fake.after
    env_beside(snapshot)
    result = restore(fake.url, snapshot, "--yes")
    assert result.returncode == 1 and fake.performed == (after is not None)
    assert "/api/update_environment_variables" not in fake.paths()
    assert result.stdout.splitlines()[-1] == failed_line(
        snapshot, f"import {IMPORT_ID} failed: Hit an error while importing:\ninvalid zip file")


@pytest.mark.parametrize("value, reason", [
    (None, f"import status: the backend has no import {IMPORT_ID}"),
    ({"_id": IMPORT_ID}, "import status: no import state in the answer"),
    ({"state": {"state": "exploded"}}, f"import {IMPORT_ID} is in an unknown state 'exploded'"),
])
def test_an_import_the_backend_cannot_show_is_named(fake, snapshot, restore, value, reason):
    fake.routes["/api/query"] = lambda r: (
        fake.query(r) if json.loads(r["body"])["path"] == backup.IMPORT_LIST
        else answer(body={"status": "success", "value": value}))
    result = restore(fake.url, snapshot, "--yes")
    assert result.returncode == 1 and not fake.performed
    assert result.stdout.splitlines()[-1] == failed_line(snapshot, reason)


@pytest.mark.parametrize("route, reason", [
    ("/api/import/start_upload", "start upload: no upload token in the answer"),
    ("/api/import/finish_upload", "finish upload: no import id in the answer"),
])
def test_answers_without_what_the_next_step_needs(fake, snapshot, restore, route, reason):
    fake.routes[route] = lambda r: answer(body={"something": "else"})
    result = restore(fake.url, snapshot, "--yes")
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == failed_line(snapshot, reason)


def test_variables_the_target_refuses_are_reported(fake, snapshot, restore):
    env_file = env_beside(snapshot)
    fake.routes["/api/update_environment_variables"] = lambda r: answer(400, {
        "code": "EnvironmentVariableNameInvalid", "message": "The environment variable name ..."})
    result = restore(fake.url, snapshot, "--yes")
    assert result.returncode == 1
    assert result.stdout.splitlines()[-2:] == [
        f"convex-backup restore ok file={snapshot} documents=50",
        f"convex-backup restore env failed file={env_file} reason=\"set environment variables: "
        "HTTP 400 EnvironmentVariableNameInvalid The environment variable name ...\""]


def test_an_unusable_environment_file_is_refused_before_anything_is_sent(fake, snapshot,
                                                                         restore):
    env_file = env_beside(snapshot, [{"name": "A"}])
    result = restore(fake.url, snapshot, "--yes")
    assert result.returncode == 2 and fake.requests == []
    assert result.stderr == (f"convex-backup: error: {env_file} is not a list of environment "
                             "variables (name and value)\n")


def test_a_broken_zip_and_bad_numbers_are_usage_errors(fake, snapshot, restore):
    snapshot.write_bytes(snapshot.read_bytes()[:-40])
    broken = restore(fake.url, snapshot, "--yes")
    assert (broken.returncode, broken.stderr) == (
        2, f"convex-backup: error: --file {snapshot} is not a readable, valid zip\n")
    for flag in ("--timeout", "--poll-interval"):
        bad = restore(fake.url, snapshot, "--yes", flag, "0")
        assert (bad.returncode, bad.stderr) == (
            2, f"convex-backup: error: {flag} must be greater than 0\n")
    assert fake.requests == []


def test_redirects_are_not_followed(fake, snapshot, restore):
    elsewhere = FakeImport()
    try:
        def redirect(request):
            handler = request["handler"]
            handler.send_response(307)
            handler.send_header("Location", elsewhere.url + "/api/import/start_upload")
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        fake.routes["/api/import/start_upload"] = redirect
        result = restore(fake.url, snapshot, "--yes")
    finally:
        elsewhere.close()
    assert result.returncode == 1 and elsewhere.requests == []
    assert result.stdout.splitlines()[-1] == failed_line(snapshot,
                                                         "start upload: HTTP 307 error")


# ---- deadlines and bounds ----------------------------------------------------------------------

def trickle(request):
    """Headers, then one byte of a JSON answer every 0.2 s, for a long time."""
    handler = request["handler"]
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    try:
        for _ in range(200):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.2)
    except OSError:
        pass


@pytest.mark.parametrize("route, what", [("/api/import/start_upload", "start upload"),
                                         ("/api/import/upload_part", "upload part 1"),
                                         ("/api/perform_import", "perform import")])
def test_a_trickling_answer_is_cut_at_the_deadline(fake, snapshot, restore, route, what):
    fake.routes[route] = trickle
    started = time.monotonic()
    result = restore(fake.url, snapshot, "--yes", "--timeout", "1")
    assert time.monotonic() - started < 5
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == failed_line(
        snapshot, f"{what}: timed out, the run took longer than --timeout 1s")


def test_an_import_that_never_ends_is_left_running_with_a_note(fake, snapshot, restore):
    env_beside(snapshot)
    fake.after = [{"state": "in_progress", "progress_message": "Importing",
                   "checkpoint_messages": []}]
    result = restore(fake.url, snapshot, "--yes", "--timeout", "1", "--poll-interval", "0.2")
    assert result.returncode == 1 and fake.performed
    assert "/api/update_environment_variables" not in fake.paths()
    assert result.stdout.splitlines()[-1] == failed_line(
        snapshot, f"import {IMPORT_ID} not done within --timeout 1s (state in_progress); it may "
                  "still run on the backend (interrupting does not cancel it)")


@pytest.mark.parametrize("route, what", [("/api/query", "list imports"),
                                         ("/api/import/upload_part", "upload part 1")])
def test_an_oversized_answer_is_refused(fake, snapshot, restore, route, what):
    fake.routes[route] = lambda r: (200, b'"' + b"x" * (backup.JSON_LIMIT + 10) + b'"')
    result = restore(fake.url, snapshot, "--yes")
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == failed_line(
        snapshot, f"{what}: answer larger than 4MiB")


def test_an_answer_that_is_not_json_is_named(fake, snapshot, restore):
    fake.routes["/api/import/start_upload"] = lambda r: (200, b"<html>proxy</html>")
    result = restore(fake.url, snapshot, "--yes")
    assert result.stdout.splitlines()[-1] == failed_line(
        snapshot, "start upload: the answer is not JSON")


# ---- the key -----------------------------------------------------------------------------------

def echo_key(request):
    """A careless backend (or proxy) that quotes the Authorization header it was sent."""
    return answer(401, {"code": "BadAdminKey",
                        "message": f"refused {request['headers']['Authorization']}"})


def test_the_key_is_never_printed(fake, snapshot, restore):
    fake.routes["/api/import/finish_upload"] = echo_key
    refused = restore(fake.url, snapshot, "--yes")
    assert refused.returncode == 1
    assert refused.stdout.splitlines()[-1] == failed_line(
        snapshot, "finish upload: HTTP 401 BadAdminKey refused Convex ***")
    fake.routes["/api/import/finish_upload"] = lambda r: answer(body={"importId": IMPORT_ID})
    fake.before = [{"state": "waiting_for_confirmation",
                    "message_to_confirm": f"summary for {KEY} and {KEY.upper()}",
                    "require_manual_confirmation": True}]
    fake.after = [{"state": "failed", "error_message": f"no: {urllib.parse.quote(KEY)}"}]
    failed = restore(fake.url, snapshot, tty_answers=["yes"])
    assert failed.returncode == 1
    output = refused.stdout + refused.stderr + failed.stdout + failed.stderr
    output += "".join(failed.prompts)
    assert KEY.lower() not in output.lower() and KEY.rpartition("|")[2] not in output
    assert "summary for *** and ***" in failed.stdout

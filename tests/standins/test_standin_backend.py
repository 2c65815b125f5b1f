"""The backend stand-in's admin-key check (tests/standins/backend/server.py).

Keys are minted here with this file's own encoder (an independent protobuf writer and
AES-GCM-SIV sealing), not with the project's components, and checked both through the
server's check function and over HTTP against an in-process server on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import io
import json
import os
import secrets
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest

try:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

    AESGCMSIV(bytes(16))  # the OpenSSL backend may lack it
except Exception:  # noqa: BLE001 - any failure means "cannot run these tests"
    pytestmark = pytest.mark.skip(reason="cryptography with AES-GCM-SIV (>= 42) is not available")
    AESGCMSIV = None  # type: ignore[assignment,misc]

SERVER = Path(__file__).resolve().parent / "backend" / "server.py"
INSTANCE = "convex-dev"


def load_server():
    spec = importlib.util.spec_from_file_location("convex_standin_backend_server", SERVER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


server = load_server()


# ----------------------------------------------------------------- a key minter of our own


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def admin_key_proto(issued_s: int, member_id: int | None = 1, system: bool = False,
                    read_only: bool = False, instance_name: str | None = None) -> bytes:
    out = b""
    if instance_name is not None:
        name = instance_name.encode()
        out += b"\x0a" + varint(len(name)) + name
    if issued_s:
        out += b"\x10" + varint(issued_s)
    if system:
        out += b"\x22\x00"
    elif member_id is not None:
        out += b"\x18" + varint(member_id)
    if read_only:
        out += b"\x28\x01"
    return out


def mint(secret_hex: str, plaintext: bytes, prefix: str | None = INSTANCE) -> str:
    derived = hmac.new(bytes.fromhex(secret_hex), b"\x00\x00\x00\x01admin key",
                       hashlib.sha256).digest()[:16]
    nonce = os.urandom(12)
    sealed = AESGCMSIV(derived).encrypt(nonce, plaintext, b"\x01")
    encrypted = (b"\x01" + nonce + sealed).hex()
    return encrypted if prefix is None else f"{prefix}|{encrypted}"


def member_key(secret_hex: str, **kwargs) -> str:
    prefix = kwargs.pop("prefix", INSTANCE)
    return mint(secret_hex, admin_key_proto(int(time.time()), **kwargs), prefix)


@pytest.fixture
def secret_hex() -> str:
    return secrets.token_hex(32)


def check(secret_hex: str, authorization: str | None, query_key: str | None = None,
          legacy: bool = False) -> tuple[int, dict]:
    return server.check_admin_key_request(authorization, query_key, INSTANCE,
                                          bytes.fromhex(secret_hex), legacy)


# ----------------------------------------------------------------- the check function


def test_kdf_is_one_counter_mode_block(secret_hex):
    secret = bytes.fromhex(secret_hex)
    expected = hmac.new(secret, (1).to_bytes(4, "big") + b"admin key", hashlib.sha256).digest()
    assert server.derive_admin_key_key(secret) == expected[:16]


def test_valid_member_key_round_trips(secret_hex):
    key = member_key(secret_hex, member_id=300)
    claims = server.check_admin_key(key, INSTANCE, bytes.fromhex(secret_hex))
    assert claims.member_id == 300 and not claims.system and not claims.is_read_only
    assert check(secret_hex, f"Convex {key}") == (
        200, {"success": True, "allowedOps": [], "isReadOnly": False})


@pytest.mark.parametrize("prefix", ["prod:convex-dev", "dev:convex-dev"])
def test_type_prefix_is_ignored(secret_hex, prefix):
    assert check(secret_hex, f"Convex {member_key(secret_hex, prefix=prefix)}")[0] == 200


def test_header_scheme_is_case_insensitive_and_query_param_works(secret_hex):
    key = member_key(secret_hex)
    assert check(secret_hex, f"CONVEX {key}")[0] == 200
    assert check(secret_hex, None, query_key=key)[0] == 200


def test_instance_name_inside_the_key_is_used_without_prefix(secret_hex):
    proto = admin_key_proto(int(time.time()), instance_name=INSTANCE)
    assert check(secret_hex, f"Convex {mint(secret_hex, proto, prefix=None)}")[0] == 200
    other = admin_key_proto(int(time.time()), instance_name="someone-else")
    assert check(secret_hex, f"Convex {mint(secret_hex, other, prefix=None)}")[0] == 401


def test_read_only_key_is_accepted_and_reported(secret_hex):
    status, body = check(secret_hex, f"Convex {member_key(secret_hex, read_only=True)}")
    assert status == 200 and body["isReadOnly"] is True and "ViewData" in body["allowedOps"]
    legacy = check(secret_hex, f"Convex {member_key(secret_hex, read_only=True)}", legacy=True)
    assert legacy[0] == 403 and legacy[1]["code"] == "ReadOnlyAdminKey"


def test_acting_as_user_suffix_is_accepted(secret_hex):
    user = base64.b64encode(json.dumps({"subject": "u1"}).encode()).decode()
    assert check(secret_hex, f"Convex {member_key(secret_hex)}:{user}")[0] == 200
    assert check(secret_hex, f"Convex {member_key(secret_hex)}:%%%")[1]["code"] == \
        "HeaderParseFailure"


def tampered(key: str) -> str:
    name, _, encrypted = key.partition("|")
    flipped = "%02x" % (int(encrypted[-2:], 16) ^ 0x01)
    return f"{name}|{encrypted[:-2]}{flipped}"


@pytest.mark.parametrize("make_bad", [
    pytest.param(lambda s: tampered(member_key(s)), id="tampered"),
    pytest.param(lambda s: member_key(secrets.token_hex(32)), id="other-secret"),
    pytest.param(lambda s: member_key(s, prefix="other-instance"), id="other-instance"),
    pytest.param(lambda s: mint(s, admin_key_proto(0)), id="no-issued-time"),
    pytest.param(lambda s: mint(s, admin_key_proto(int(time.time()), member_id=None)),
                 id="no-identity"),
    pytest.param(lambda s: "convex-dev|not-hex", id="garbage"),
    pytest.param(lambda s: "convex-dev|02" + "00" * 40, id="wrong-version"),
])
def test_invalid_keys_get_401_bad_admin_key(secret_hex, make_bad):
    status, body = check(secret_hex, f"Convex {make_bad(secret_hex)}")
    assert (status, body["code"]) == (401, "BadAdminKey")
    assert body["message"] == "The provided admin key was invalid for this instance"


def test_system_key_and_missing_key_are_not_admins(secret_hex):
    system_key = mint(secret_hex, admin_key_proto(int(time.time()), system=True))
    assert check(secret_hex, f"Convex {system_key}")[1]["code"] == "BadDeployKey"
    status, body = check(secret_hex, None)
    assert (status, body["code"]) == (403, "BadDeployKey")


def test_other_authorization_headers(secret_hex):
    assert check(secret_hex, "Bearer some.jwt.token")[0] == 403
    assert check(secret_hex, "Basic abcdefgh")[1]["code"] == "InvalidAdminKey"
    assert check(secret_hex, "short")[1]["code"] == "InvalidHeaderFailure"


def test_config_refuses_bad_environment(capsys):
    with pytest.raises(SystemExit) as missing_name:
        server.config_from_env({"INSTANCE_SECRET": "ab" * 32})
    assert missing_name.value.code == 1
    for secret in ("", "ab" * 31, "zz" * 32):
        with pytest.raises(SystemExit):
            server.config_from_env({"INSTANCE_NAME": INSTANCE, "INSTANCE_SECRET": secret})
    assert "refusing to start" in capsys.readouterr().out


def test_data_dir_marker_fresh_then_existing(tmp_path, secret_hex, capsys):
    config = server.config_from_env({"INSTANCE_NAME": INSTANCE, "INSTANCE_SECRET": secret_hex,
                                     "STANDIN_DATA_DIR": str(tmp_path / "data")})
    assert server.prepare_data_dir(config) is True
    assert server.prepare_data_dir(config) is False
    out = capsys.readouterr().out
    assert "is FRESH" in out and "is EXISTING" in out


# ----------------------------------------------------------------- over HTTP


@pytest.fixture
def api(secret_hex, tmp_path):
    config = server.config_from_env({
        "INSTANCE_NAME": INSTANCE, "INSTANCE_SECRET": secret_hex, "STANDIN_VERSION": "v-test",
        "STANDIN_DATA_DIR": str(tmp_path)})
    httpd = server.make_server(config, "api", 0, host="127.0.0.1")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def get(url: str, authorization: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_http_version_and_check_admin_key(api, secret_hex):
    assert get(f"{api}/version") == (200, b"v-test")
    key = member_key(secret_hex)
    status, body = get(f"{api}/api/check_admin_key", f"Convex {key}")
    assert status == 200 and json.loads(body)["success"] is True
    status, body = get(f"{api}/api/check_admin_key", f"Convex {tampered(key)}")
    assert status == 401 and json.loads(body)["code"] == "BadAdminKey"


# ----------------------------------------------------------------- what backups and restores use


class Backend:
    """An in-process stand-in on loopback over a data directory; restart() keeps the directory."""

    def __init__(self, data_dir, secret_hex: str):
        self.data_dir, self.secret_hex = str(data_dir), secret_hex
        self.key = member_key(secret_hex)
        self.httpd = None
        self.start()

    def start(self) -> None:
        config = server.config_from_env({
            "INSTANCE_NAME": INSTANCE, "INSTANCE_SECRET": self.secret_hex,
            "STANDIN_DATA_DIR": self.data_dir, "STANDIN_IMPORT_DELAY": "0.01"})
        server.prepare_data_dir(config)
        self.httpd = server.make_server(config, "api", 0, host="127.0.0.1")
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def post(self, path: str, body=None, *, data: bytes | None = None, key: str | None = "",
             content_type: str = "application/json") -> tuple[int, object]:
        request = urllib.request.Request(
            self.url + path, data if data is not None else
            json.dumps(body).encode() if body is not None else b"", method="POST")
        request.add_header("Content-Type", content_type)
        if key is not None:
            request.add_header("Authorization", f"Convex {key or self.key}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        return status, (json.loads(raw) if raw else None)

    def query(self, path: str, args=None):
        status, answer = self.post("/api/query", {"path": path, "args": args or {},
                                                  "format": "json"})
        assert status == 200 and answer["status"] == "success", answer
        return answer["value"]

    def upload(self, data: bytes, mode: str = "replaceAll", part: int = 1 << 20) -> str:
        status, started = self.post("/api/import/start_upload")
        assert status == 200, started
        token, parts = started["uploadToken"], []
        for number, offset in enumerate(range(0, len(data), part), 1):
            query = urllib.parse.urlencode({"uploadToken": token, "partNumber": number})
            status, part_token = self.post(f"/api/import/upload_part?{query}",
                                           data=data[offset:offset + part],
                                           content_type="application/octet-stream")
            assert status == 200, part_token
            parts.append(part_token)
        status, finished = self.post("/api/import/finish_upload", {
            "import": {"mode": mode, "format": "zip"}, "uploadToken": token,
            "partTokens": parts})
        assert status == 200, finished
        return finished["importId"]

    def wait(self, import_id: str, *states: str) -> dict:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            state = self.query("_system/cli/queryImport", {"importId": import_id})["state"]
            if state["state"] in states:
                return state
            time.sleep(0.01)
        raise AssertionError(f"import {import_id} never reached {states}: {state}")

    def restore(self, data: bytes, mode: str = "replaceAll") -> dict:
        import_id = self.upload(data, mode)
        state = self.wait(import_id, "waiting_for_confirmation", "failed")
        if state["state"] == "failed":
            return state
        assert self.post("/api/perform_import", {"importId": import_id}) == (200, None)
        return self.wait(import_id, "completed", "failed")

    def export(self) -> dict[str, bytes]:
        assert self.post("/api/export/request/zip?includeStorage=true") == (200, None)
        latest = self.query("_system/cli/exports:getLatest")
        request = urllib.request.Request(f"{self.url}/api/export/zip/{latest['_id']}")
        request.add_header("Authorization", f"Convex {self.key}")
        with urllib.request.urlopen(request, timeout=10) as response:
            with zipfile.ZipFile(io.BytesIO(response.read())) as archive:
                return {name: archive.read(name) for name in archive.namelist()}


@pytest.fixture
def backend(tmp_path, secret_hex):
    started = []

    def start(name: str = "data") -> Backend:
        started.append(Backend(tmp_path / name, secret_hex))
        return started[-1]

    yield start
    for each in started:
        each.stop()


def snapshot(tables: dict[str, list[dict]], extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.md", "a snapshot\n")
        archive.writestr("_tables/documents.jsonl", "".join(
            json.dumps({"name": name, "id": 10001 + i}) + "\n" for i, name in enumerate(tables)))
        for name, docs in tables.items():
            archive.writestr(f"{name}/documents.jsonl",
                             "".join(json.dumps(doc) + "\n" for doc in docs))
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


MESSAGES = [{"_id": "m1", "body": "hi"}, {"_id": "m2", "body": "yo\nthere"}]
USERS = [{"_id": "u1", "name": "Ada"}]


def test_environment_variables_are_set_listed_unset_and_kept_in_the_volume(backend):
    api = backend()
    assert api.query("_system/cli/queryEnvironmentVariables") == []
    changes = [{"name": "ZED", "value": "last"}, {"name": "GREETING", "value": "hello\nworld"}]
    assert api.post("/api/update_environment_variables", {"changes": changes}) == (200, None)
    docs = api.query("_system/cli/queryEnvironmentVariables")
    assert [(d["name"], d["value"]) for d in docs] == [("GREETING", "hello\nworld"),
                                                       ("ZED", "last")]
    assert all(set(d) == {"_id", "_creationTime", "name", "value"} for d in docs)
    api.restart()  # a new container on the same volume
    assert api.query("_system/cli/queryEnvironmentVariables") == docs
    assert api.post("/api/update_environment_variables", {"changes": [
        {"name": "ZED"}, {"name": "GREETING", "value": "hi"}]}) == (200, None)
    assert [(d["name"], d["value"]) for d in api.query(
        "_system/cli/queryEnvironmentVariables")] == [("GREETING", "hi")]
    assert stat_mode(os.path.join(api.data_dir, server.ENV_FILE)) == 0o600


def stat_mode(path: str) -> int:
    return os.stat(path).st_mode & 0o777


@pytest.mark.parametrize("changes, status, code", [
    ([{"name": "1_BAD", "value": "x"}], 400, "EnvironmentVariableNameInvalid"),
    ([{"name": "bad-name", "value": "x"}], 400, "EnvironmentVariableNameInvalid"),
    ([{"name": "A" * 41, "value": "x"}], 400, "EnvironmentVariableNameTooLong"),
    ([{"name": "BIG", "value": "x" * 8193}], 400, "EnvironmentVariableValueTooLarge"),
    ([{"name": f"V{i}", "value": "x"} for i in range(101)], 400, "EnvVarLimitMet"),
    ("nope", 400, "BadJsonBody"),
])
def test_environment_variables_are_checked_as_upstream_does(backend, changes, status, code):
    api = backend()
    answer = api.post("/api/update_environment_variables", {"changes": changes})
    assert (answer[0], answer[1]["code"]) == (status, code)
    assert api.query("_system/cli/queryEnvironmentVariables") == []  # all or nothing


def test_writes_need_an_admin_key_with_write_access(backend, secret_hex):
    api = backend()
    read_only = member_key(secret_hex, read_only=True)
    for path in ("/api/update_environment_variables", "/api/import/start_upload",
                 "/api/perform_import"):
        status, answer = api.post(path, {"changes": []}, key=read_only)
        assert (status, answer["code"]) == (403, "ReadOnlyAdminKey")
        status, answer = api.post(path, {"changes": []}, key=None)
        assert (status, answer["code"]) == (403, "BadDeployKey")
    assert api.post("/api/query", {"path": "_system/cli/queryEnvironmentVariables",
                                   "args": {}}, key=read_only)[0] == 200


def test_an_import_goes_through_upstreams_states_and_the_export_shows_it(backend):
    api = backend()
    data = snapshot({"messages": MESSAGES, "users": USERS, "empty": []})
    import_id = api.upload(data, part=100)  # many parts, appended in order
    assert api.query("_system/cli/queryImport:list")[0]["_id"] == import_id
    state = api.wait(import_id, "waiting_for_confirmation")
    assert state == {"state": "waiting_for_confirmation", "require_manual_confirmation": False,
                     "message_to_confirm": (
                         "Import change summary:\n"
                         "table    | create | delete |\n"
                         "----------------------------\n"
                         "empty    | 0      | 0 of 0 |\n"
                         "messages | 2      | 0 of 0 |\n"
                         "users    | 1      | 0 of 0 |\n"
                         "Once the import has started, it will run in the background.\n"
                         "Interrupting `npx convex import` will not cancel it.")}
    assert api.post("/api/perform_import", {"importId": import_id}) == (200, None)
    done = api.wait(import_id, "completed")
    assert done["num_rows_written"] == "3" and done["timestamp"].isdigit()
    doc = api.query("_system/cli/queryImport", {"importId": import_id})
    assert (doc["mode"], doc["format"], doc["requestor"]) == (
        "ReplaceAll", {"format": "zip"}, {"type": "snapshotImport"})
    exported = api.export()
    assert [json.loads(line) for line in exported["messages/documents.jsonl"].splitlines()] \
        == MESSAGES
    assert exported["empty/documents.jsonl"] == b""
    assert sorted(json.loads(line)["name"] for line in
                  exported["_tables/documents.jsonl"].splitlines()) == ["empty", "messages",
                                                                       "users"]
    record = json.loads(Path(api.data_dir, server.IMPORTS_FILE).read_text())
    assert [(r["importId"], r["tables"], r["numRowsWritten"]) for r in record] == [
        (import_id, {"empty": 0, "messages": 2, "users": 1}, 3)]
    api.restart()  # the tables are in the volume
    assert api.export()["users/documents.jsonl"] == exported["users/documents.jsonl"]


@pytest.mark.parametrize("mode, tables, require_confirmation", [
    ("replaceAll", {"messages": 1}, True),             # users deleted
    ("replace", {"messages": 1, "users": 1}, True),    # users untouched
    ("append", {"messages": 3, "users": 1}, False),
])
def test_import_modes(backend, mode, tables, require_confirmation):
    api = backend()
    assert api.restore(snapshot({"messages": MESSAGES, "users": USERS}))["state"] == "completed"
    import_id = api.upload(snapshot({"messages": [{"_id": "m9"}]}), mode)
    state = api.wait(import_id, "waiting_for_confirmation")
    assert state["require_manual_confirmation"] is require_confirmation
    api.post("/api/perform_import", {"importId": import_id})
    assert api.wait(import_id, "completed")["num_rows_written"] == "1"
    exported = api.export()
    assert {name.split("/")[0]: len(data.splitlines()) for name, data in exported.items()
            if name.endswith("/documents.jsonl") and not name.startswith("_")} == tables


def test_require_empty_refuses_an_existing_table(backend):
    api = backend()
    api.restore(snapshot({"messages": MESSAGES}))
    state = api.restore(snapshot({"messages": MESSAGES}), "requireEmpty")
    assert state == {"state": "failed", "error_message": (
        "Hit an error while importing:\nTable messages already exists. Please choose a new "
        "table name or use replace/append modes.")}


@pytest.mark.parametrize("data, message", [
    (b"not a zip at all", "invalid zip file"),
    (snapshot({}, {"bad/documents.jsonl": b"{\"_id\": 1}\nnope\n"}), "Row 2 wasn't valid JSON"),
    (snapshot({}, {"bad/documents.jsonl": b"[1]\n"}), "Row 1 wasn't an object"),
    (snapshot({}, {"9bad/documents.jsonl": b""}), "table name '9bad' invalid"),
])
def test_an_unusable_upload_fails_the_import_and_changes_nothing(backend, data, message):
    api = backend()
    api.restore(snapshot({"messages": MESSAGES}))
    state = api.restore(data)
    assert state["state"] == "failed"
    assert state["error_message"].startswith(f"Hit an error while importing:\n{message}")
    assert api.export()["messages/documents.jsonl"].count(b"\n") == 2


def test_refused_import_requests(backend):
    api = backend()
    _, started = api.post("/api/import/start_upload")
    token = started["uploadToken"]

    def finish(spec, upload_token=token):
        status, answer = api.post("/api/import/finish_upload", {
            "import": spec, "uploadToken": upload_token, "partTokens": []})
        return status, answer["code"]

    assert finish({"format": "zip", "tableName": "t"}) == (400, "InvalidName")
    assert finish({"format": "csv", "tableName": "t"}) == (400, "StandinUnsupported")
    assert finish({"format": "zip", "mode": "everything"}) == (400, "BadJsonBody")
    assert finish({"format": "zip"}, json.dumps({"objectKey": "../../etc/passwd"})) == (
        500, "InternalServerError")
    status, answer = api.post("/api/import/upload_part?partNumber=1", data=b"x",
                              content_type="application/octet-stream")
    assert (status, answer["code"]) == (400, "BadQueryArgs")
    assert api.post("/api/perform_import", {"importId": "nope"})[1]["code"] == "InvalidImport"
    import_id = api.upload(snapshot({"messages": MESSAGES}))
    api.wait(import_id, "waiting_for_confirmation")
    assert api.post("/api/cancel_import", {"importId": import_id}) == (200, None)
    assert api.wait(import_id, "failed")["error_message"].endswith("Import canceled")
    assert api.post("/api/perform_import", {"importId": import_id})[0] == 500
    assert api.query("_system/cli/queryImport", {"importId": "nope"}) is None


def test_a_body_far_larger_than_a_part_is_refused(backend, monkeypatch):
    api = backend()
    monkeypatch.setattr(server, "MAX_BODY", 1000)
    status, answer = api.post("/api/import/start_upload", data=b"x" * 5000,
                              content_type="application/octet-stream")
    assert (status, answer["code"]) == (413, "PayloadTooLarge")

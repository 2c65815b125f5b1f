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
import json
import os
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
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

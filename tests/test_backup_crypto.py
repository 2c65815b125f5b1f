"""ops/backup_crypto.py: the documented layout, both AES-GCM implementations against each
other, and every way a sealed file can be wrong."""

import base64
import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ops import backup_crypto as bc

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
BACKENDS = ["cryptography", "libcrypto"]


@pytest.fixture(params=[0, 1, 100, 4096, 4096 * 3, 4096 * 3 + 7])
def plain(tmp_path, request):
    path = tmp_path / "plain.zip"
    path.write_bytes(os.urandom(request.param))
    return path


@pytest.mark.parametrize("seal_with", BACKENDS)
@pytest.mark.parametrize("open_with", BACKENDS)
def test_round_trips_across_implementations(tmp_path, plain, seal_with, open_with):
    sealed, back = tmp_path / "s.enc", tmp_path / "back.zip"
    bc.encrypt(str(plain), str(sealed), KEY, seal_with, chunk=4096)
    assert sealed.stat().st_mode & 0o777 == 0o600
    bc.decrypt(str(sealed), str(back), KEY, open_with)
    assert back.read_bytes() == plain.read_bytes()


def test_the_layout_is_the_documented_one(tmp_path):
    """Decrypted here with nothing but the layout in the module docstring and AESGCM."""
    data = os.urandom(10000)
    (tmp_path / "p").write_bytes(data)
    bc.encrypt(str(tmp_path / "p"), str(tmp_path / "s"), KEY, "libcrypto", chunk=4096)
    sealed = (tmp_path / "s").read_bytes()
    header = sealed[:28]
    magic, chunk, prefix, kid = struct.unpack(">8sI8s8s", header)
    assert (magic, chunk) == (b"CVXBKUP1", 4096) and kid == bc.key_id(KEY)
    out, body, number = b"", sealed[28:], 0
    while body:
        piece, body = body[:chunk + 16], body[chunk + 16:]
        aad = header + (b"\x01" if not body else b"\x00")
        out += AESGCM(KEY).decrypt(prefix + struct.pack(">I", number), piece, aad)
        number += 1
    assert out == data and number == 3


def sealed_file(tmp_path, size=4096 * 3 + 5):
    (tmp_path / "p").write_bytes(os.urandom(size))
    bc.encrypt(str(tmp_path / "p"), str(tmp_path / "s"), KEY, chunk=4096)
    return (tmp_path / "s").read_bytes()


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:28 + 4112] + b[28 + 2 * 4112:], "does not authenticate"),  # a chunk dropped
    (lambda b: b[:28] + b[28 + 4112:28 + 2 * 4112] + b[28:28 + 4112] + b[28 + 2 * 4112:],
     "does not authenticate"),  # two chunks swapped
    (lambda b: b[:28 + 3 * 4112], "does not authenticate"),  # cut at a chunk boundary
    (lambda b: b[:-1], "does not authenticate"),  # cut inside the last chunk
    (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], "does not authenticate"),
    (lambda b: b[:12] + b"\xff" + b[13:], "does not authenticate"),  # the nonce prefix
    (lambda b: b"PK\x03\x04" + b[4:], "no CVXBKUP1 header"),
    (lambda b: b[:5], "no CVXBKUP1 header"),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_damaged_file_fails_and_leaves_nothing(tmp_path, damage, message, backend):
    (tmp_path / "bad").write_bytes(damage(sealed_file(tmp_path)))
    with pytest.raises(bc.CryptoError, match=message):
        bc.decrypt(str(tmp_path / "bad"), str(tmp_path / "out"), KEY, backend)
    assert not (tmp_path / "out").exists()


def test_another_key_is_named_as_such(tmp_path):
    sealed_file(tmp_path)
    with pytest.raises(bc.CryptoError, match="encrypted with another key"):
        bc.decrypt(str(tmp_path / "s"), str(tmp_path / "out"), OTHER)
    assert not (tmp_path / "out").exists()


def test_keys_are_32_bytes_of_base64_and_never_echoed():
    assert bc.parse_key(base64.b64encode(KEY).decode() + "\n") == KEY
    for bad in ("", "hunter2", base64.b64encode(b"short").decode(), "!" * 44):
        with pytest.raises(bc.CryptoError) as refused:
            bc.parse_key(bad)
        assert "openssl rand -base64 32" in str(refused.value)
        assert not bad or bad not in str(refused.value)

"""Tests for components.admin_key: known answers, wire format, refusals, CLI."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import nacl.secret
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

from components.admin_key import (
    DEFAULT_ISSUED_S,
    INSTANCE_NAME_PATTERN,
    AdminKeyError,
    AdminKeyInfo,
    AdminKeyProto,
    check_admin_key,
    decode_admin_key_proto,
    derive_admin_key_encryption_key,
    encode_admin_key_proto,
    issue_admin_key,
    kbkdf_hmac_sha256,
    parse_instance_secret,
)
from ops import admin_key_cli

REPO_ROOT = Path(__file__).resolve().parents[1]
NAME = "convex-dev"
SECRET = bytes(range(32)).hex()
OTHER_SECRET = bytes(range(100, 132)).hex()


def hand_derived_key(secret_hex: str) -> bytes:
    # SP 800-108 counter mode with a single block: HMAC(secret, be32(1) || purpose).
    digest = hmac.new(bytes.fromhex(secret_hex), b"\x00\x00\x00\x01admin key", hashlib.sha256)
    return digest.digest()[:16]


def hand_current_key(plaintext: bytes, secret_hex: str = SECRET, prefix: str = f"{NAME}|") -> str:
    nonce = os.urandom(12)  # random, like upstream's RandomEncryptor
    sealed = AESGCMSIV(hand_derived_key(secret_hex)).encrypt(nonce, plaintext, b"\x01")
    return prefix + (b"\x01" + nonce + sealed).hex()


def legacy_key(plaintext: bytes, secret_hex: str = SECRET, prefix: str = "") -> str:
    box = nacl.secret.SecretBox(bytes.fromhex(secret_hex))
    boxed = box.encrypt(plaintext, os.urandom(24))  # nonce || mac || ciphertext
    return prefix + (b"\x01" + bytes(boxed)).hex()


def flip_hex_digit(key: str, index: int) -> str:
    name, _, blob = key.partition("|")
    flipped = "0" if blob[index] != "0" else "1"
    return f"{name}|{blob[:index]}{flipped}{blob[index + 1 :]}"


# --- known answers ---------------------------------------------------------------


def test_kbkdf_known_answer() -> None:
    key = bytes.fromhex("0185fb7661f6dd408d982f810fcd5004")
    info = bytes.fromhex("c3f1712a82613643e0f763a7a0a31588b6aed95056dfc512550cf2d00d68a32d")
    assert kbkdf_hmac_sha256(key, info).hex() == "c63f747b67be71f57ba4562117dd2904"


def test_admin_key_encryption_key_is_kbkdf_of_purpose() -> None:
    assert derive_admin_key_encryption_key(bytes.fromhex(SECRET)) == hand_derived_key(SECRET)


# RFC 8452 Appendix C.1 (AEAD_AES_128_GCM_SIV): key, nonce, aad, plaintext, result.
RFC8452_C1 = [
    (
        "01000000000000000000000000000000",
        "030000000000000000000000",
        "",
        "",
        "dc20e2d83f25705bb49e439eca56de25",
    ),
    (
        "01000000000000000000000000000000",
        "030000000000000000000000",
        "01",
        "0200000000000000",
        "1e6daba35669f4273b0a1a2560969cdf790d99759abd1508",
    ),
    (
        "01000000000000000000000000000000",
        "030000000000000000000000",
        "010000000000000000000000",
        "02000000",
        "a8fe3e8707eb1f84fb28f8cb73de8e99e2f48a14",
    ),
    (
        "36864200e0eaf5284d884a0e77d31646",
        "bae8e37fc83441b16034566b",
        "46bb91c3c5",
        "7a806c",
        "af60eb711bd85bc1e4d3e0a462e074eea428a8",
    ),
]


@pytest.mark.parametrize("key, nonce, aad, plaintext, result", RFC8452_C1)
def test_aes_gcm_siv_rfc8452_vectors(
    key: str, nonce: str, aad: str, plaintext: str, result: str
) -> None:
    aead = AESGCMSIV(bytes.fromhex(key))
    sealed = aead.encrypt(bytes.fromhex(nonce), bytes.fromhex(plaintext), bytes.fromhex(aad))
    assert sealed.hex() == result
    assert aead.decrypt(bytes.fromhex(nonce), sealed, bytes.fromhex(aad)).hex() == plaintext


# --- protobuf --------------------------------------------------------------------

PROTO_CASES = [
    (AdminKeyProto(issued_s=1, member_id=0), "10011800"),
    (AdminKeyProto(issued_s=1, member_id=300), "100118ac02"),
    (AdminKeyProto(issued_s=1, system=True), "10012200"),
    (AdminKeyProto(issued_s=1, member_id=0, read_only=True), "100118002801"),
    (AdminKeyProto(issued_s=1, member_id=7, read_only=True), "100118072801"),
    (
        AdminKeyProto(issued_s=1, member_id=0, instance_name=NAME),
        "0a0a" + NAME.encode().hex() + "10011800",
    ),
    (AdminKeyProto(issued_s=1_700_000_000, system=True), "1080e2cfaa062200"),
    (
        AdminKeyProto(issued_s=2**64 - 1, member_id=2**64 - 1),
        "10ffffffffffffffffff0118ffffffffffffffffff01",
    ),
    # What upstream must refuse, still encodable for tests: no issue time, no identity.
    (AdminKeyProto(issued_s=0, member_id=0), "1800"),
    (AdminKeyProto(issued_s=1), "1001"),
]


@pytest.mark.parametrize("proto, wire", PROTO_CASES)
def test_proto_encoding(proto: AdminKeyProto, wire: str) -> None:
    fields = dict(proto.__dict__)
    assert encode_admin_key_proto(**fields).hex() == wire
    assert decode_admin_key_proto(bytes.fromhex(wire)) == proto


def test_proto_refuses_member_and_system_together() -> None:
    with pytest.raises(AdminKeyError):
        encode_admin_key_proto(issued_s=1, member_id=0, system=True)


def test_proto_skips_unknown_fields() -> None:
    unknown = (
        "3096"
        "01"  # field 6 varint 150
        "39"
        + "11" * 8  # field 7 fixed64
        + "4203abcdef"  # field 8 length-delimited
        + "4d"
        + "22" * 4  # field 9 fixed32
        + "53"
        "0801"
        "54"  # field 10 group holding field 1 varint
         + "a2060100"  # field 100 length-delimited
    )
    decoded = decode_admin_key_proto(bytes.fromhex("1001" + unknown + "1805" + unknown + "2801"))
    assert decoded == AdminKeyProto(issued_s=1, member_id=5, read_only=True)


def test_proto_empty_message_may_carry_unknown_fields() -> None:
    assert decode_admin_key_proto(bytes.fromhex("100122020801")).system


def test_proto_bool_is_any_nonzero_varint() -> None:
    assert decode_admin_key_proto(bytes.fromhex("100118002802")).read_only is True
    assert decode_admin_key_proto(bytes.fromhex("100118002800")).read_only is False


def test_proto_last_oneof_member_wins() -> None:
    assert decode_admin_key_proto(bytes.fromhex("100118052200")) == AdminKeyProto(
        issued_s=1, system=True
    )
    assert decode_admin_key_proto(bytes.fromhex("100122001805")) == AdminKeyProto(
        issued_s=1, member_id=5
    )


TRUNCATED = "admin key payload is truncated"
OVERLONG = "admin key payload has an over-long varint"
BAD_TAG = "admin key payload has an invalid field tag"


def wrong_type(field: int) -> str:
    return f"admin key payload field {field} has the wrong wire type"


def groups(depth: int) -> str:
    """`depth` nested groups of field 10, each opened and closed (tags 0x53 / 0x54)."""
    return "53" * depth + "54" * depth


@pytest.mark.parametrize(
    "wire, message",
    [
        ("10", TRUNCATED),  # truncated varint
        ("1080", TRUNCATED),  # varint with continuation bit and no next byte
        ("10" + "ff" * 9 + "02", OVERLONG),  # varint beyond 64 bits
        ("10" + "ff" * 10 + "01", OVERLONG),  # eleven-byte varint
        ("10" + "80" * 10 + "00", OVERLONG),  # eleven bytes even when the value is small
        ("0a05616263", TRUNCATED),  # length runs past the end
        ("0001", BAD_TAG),  # field number 0
        ("0e", BAD_TAG),  # wire type 6
        ("0f", BAD_TAG),  # wire type 7
        ("8080808010", BAD_TAG),  # tag 2**32: past the 32-bit tag range
        ("1200", wrong_type(2)),  # issued_s as length-delimited
        ("30011a00", wrong_type(3)),  # member_id as length-delimited (after unknown field 6)
        ("0801", wrong_type(1)),  # instance name as a varint
        ("2000", wrong_type(4)),  # system as varint
        ("2a00", wrong_type(5)),  # is_read_only as length-delimited
        ("0d00000000", wrong_type(1)),  # instance name as fixed32
        ("0a02c328", "admin key payload has a non-UTF-8 instance name"),
        ("10015c", "admin key payload has a stray end-group tag"),
        ("53080164", "admin key payload has a mismatched group"),  # closed by another field
        ("530801", TRUNCATED),  # unterminated group
        ("22030801", TRUNCATED),  # Empty whose length overruns
        ("2201ff", TRUNCATED),  # Empty holding a malformed field
        (groups(101), "admin key payload nests groups too deeply"),
    ],
)
def test_proto_rejects_malformed(wire: str, message: str) -> None:
    with pytest.raises(AdminKeyError) as refused:
        decode_admin_key_proto(bytes.fromhex(wire))
    assert str(refused.value) == message


def test_proto_skips_groups_nested_as_deep_as_prost_allows() -> None:
    assert decode_admin_key_proto(bytes.fromhex("1001" + groups(100) + "1805")) == AdminKeyProto(
        issued_s=1, member_id=5
    )
    assert decode_admin_key_proto(bytes.fromhex("10" + "80" * 9 + "00")).issued_s == 0


SYSTEM_KEY = ("a system key has no member id and is never read-only; drop "
              "--member-id/--read-only or --system")
SECRET_FORMAT = ("instance secret must be 64 hex characters (32 bytes); generate one with "
                 "`openssl rand -hex 32`")


def test_a_secret_that_is_not_text_is_refused_cleanly() -> None:
    for value in (None, 42, bytes(32)):
        with pytest.raises(AdminKeyError) as refused:
            parse_instance_secret(value)  # type: ignore[arg-type]
        assert str(refused.value) == SECRET_FORMAT


# --- issuing and checking ----------------------------------------------------------


def test_issue_and_check_default_key() -> None:
    key = issue_admin_key(NAME, SECRET)
    assert key.startswith(f"{NAME}|01")
    info = check_admin_key(key, NAME, SECRET)
    assert info == AdminKeyInfo(
        instance_name=NAME,
        issued_s=DEFAULT_ISSUED_S,
        member_id=0,
        system=False,
        read_only=False,
        legacy=False,
    )
    assert info.describe() == (
        "valid admin key for instance 'convex-dev': member 0, read-write, "
        "issued 1970-01-01T00:00:01Z, current format"
    )


@pytest.mark.parametrize(
    "options, member_id, system, read_only",
    [
        ({"member_id": 42}, 42, False, False),
        ({"read_only": True}, 0, False, True),
        ({"member_id": 2**64 - 1, "read_only": True}, 2**64 - 1, False, True),
        ({"system": True}, None, True, False),
    ],
)
def test_issue_and_check_variants(
    options: dict, member_id: int, system: bool, read_only: bool
) -> None:
    info = check_admin_key(issue_admin_key(NAME, SECRET, **options), NAME, SECRET)
    assert (info.member_id, info.system, info.read_only) == (member_id, system, read_only)


def test_describe_system_read_only_and_legacy() -> None:
    system = check_admin_key(
        issue_admin_key(NAME, SECRET, system=True, issued_s=1_700_000_000), NAME, SECRET
    )
    assert system.describe() == (
        "valid admin key for instance 'convex-dev': system key, read-write, "
        "issued 2023-11-14T22:13:20Z, current format"
    )
    legacy = check_admin_key(
        legacy_key(
            encode_admin_key_proto(issued_s=1, member_id=3, read_only=True), prefix=f"{NAME}|"
        ),
        NAME,
        SECRET,
    )
    assert legacy.describe().endswith(
        "member 3, read-only, issued 1970-01-01T00:00:01Z, legacy format"
    )


def test_issue_is_deterministic() -> None:
    assert issue_admin_key(NAME, SECRET) == issue_admin_key(NAME, SECRET)
    assert issue_admin_key(NAME, SECRET, read_only=True) == issue_admin_key(
        NAME, SECRET, read_only=True
    )


def test_issue_distinguishes_every_encrypted_input() -> None:
    encrypted_parts = {
        issue_admin_key(NAME, SECRET).split("|")[1],
        issue_admin_key(NAME, SECRET, member_id=1).split("|")[1],
        issue_admin_key(NAME, SECRET, read_only=True).split("|")[1],
        issue_admin_key(NAME, SECRET, system=True).split("|")[1],
        issue_admin_key(NAME, SECRET, issued_s=2).split("|")[1],
        issue_admin_key(NAME, OTHER_SECRET).split("|")[1],
    }
    assert len(encrypted_parts) == 6
    # The nonce follows the plaintext, so it differs too, not just the ciphertext.
    assert len({part[2:26] for part in encrypted_parts}) == 6


def test_instance_name_lives_only_in_the_prefix() -> None:
    # As upstream: new keys leave proto field 1 unset, so the name is not encrypted.
    dev, prod = issue_admin_key(NAME, SECRET), issue_admin_key("convex-prod", SECRET)
    assert dev.split("|")[1] == prod.split("|")[1]
    assert dev.split("|")[0] == NAME and prod.split("|")[0] == "convex-prod"


def test_issued_key_decrypts_by_hand_to_expected_proto() -> None:
    key = issue_admin_key(NAME, SECRET, member_id=9, read_only=True, issued_s=1_700_000_000)
    name, _, blob_hex = key.partition("|")
    blob = bytes.fromhex(blob_hex)
    assert name == NAME and blob[0] == 1
    plaintext = AESGCMSIV(hand_derived_key(SECRET)).decrypt(blob[1:13], blob[13:], b"\x01")
    assert plaintext == bytes.fromhex("1080e2cfaa0618092801")
    nonce = hmac.new(
        hand_derived_key(SECRET), b"convex-selfhost admin key nonce" + plaintext, hashlib.sha256
    )
    assert blob[1:13] == nonce.digest()[:12]


def test_accepts_key_built_by_hand_from_the_spec() -> None:
    member = hand_current_key(bytes.fromhex("10011800"))
    assert check_admin_key(member, NAME, SECRET).member_id == 0
    system = hand_current_key(bytes.fromhex("10b1a1a1a1062200"))
    assert check_admin_key(system, NAME, SECRET).system


@pytest.mark.parametrize("type_prefix", ["", "prod:", "dev:"])
def test_accepts_type_prefixed_names(type_prefix: str) -> None:
    key = issue_admin_key(NAME, SECRET)
    assert check_admin_key(type_prefix + key, NAME, SECRET).instance_name == NAME
    legacy = legacy_key(bytes.fromhex("10011800"), prefix=f"{type_prefix}{NAME}|")
    assert check_admin_key(legacy, NAME, SECRET).legacy


def test_accepts_key_with_surrounding_whitespace() -> None:
    assert check_admin_key(f"  {issue_admin_key(NAME, SECRET)}\n", NAME, SECRET).member_id == 0


def test_accepts_legacy_key_with_name_in_proto() -> None:
    plaintext = encode_admin_key_proto(issued_s=1_638_000_000, member_id=0, instance_name=NAME)
    info = check_admin_key(legacy_key(plaintext), NAME, SECRET)
    assert info == AdminKeyInfo(NAME, 1_638_000_000, 0, False, False, legacy=True)


def test_accepts_legacy_system_key_with_prefix() -> None:
    info = check_admin_key(legacy_key(bytes.fromhex("10012200"), prefix=f"{NAME}|"), NAME, SECRET)
    assert info.system and info.member_id is None and info.legacy


def test_accepts_legacy_key_spanning_several_salsa20_blocks() -> None:
    long_name = "-".join(["abcdefghijklmno"] * 4)[:63]
    plaintext = encode_admin_key_proto(issued_s=1, member_id=2**63, instance_name=long_name)
    assert len(plaintext) > 64
    assert check_admin_key(legacy_key(plaintext), long_name, SECRET).member_id == 2**63


def test_prefix_name_takes_precedence_over_proto_name() -> None:
    plaintext = encode_admin_key_proto(issued_s=1, member_id=0, instance_name="elsewhere")
    assert (
        check_admin_key(legacy_key(plaintext, prefix=f"{NAME}|"), NAME, SECRET).instance_name
        == NAME
    )
    with pytest.raises(AdminKeyError, match="key is for instance 'elsewhere', not 'convex-dev'"):
        check_admin_key(legacy_key(plaintext), NAME, SECRET)


def test_system_key_read_only_flag_is_ignored_like_upstream() -> None:
    key = hand_current_key(bytes.fromhex("100122002801"))
    assert check_admin_key(key, NAME, SECRET).read_only is False


# --- refusals ------------------------------------------------------------------------

TAMPERED = (
    "key does not decrypt under this instance secret: "
    "it was issued for another secret or was altered"
)


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
def test_refuses_tampered_current_key(where: str) -> None:
    key = issue_admin_key(NAME, SECRET)
    # hex layout after the version byte: nonce 24 digits, 4-byte proto 8 digits, tag 32.
    index = {"nonce": 2 + 5, "ciphertext": 26 + 3, "tag": 34 + 20}[where]
    with pytest.raises(AdminKeyError, match=TAMPERED):
        check_admin_key(flip_hex_digit(key, index), NAME, SECRET)


@pytest.mark.parametrize("index", [5, 60, 85])  # nonce, mac, ciphertext
def test_refuses_tampered_legacy_key(index: int) -> None:
    key = legacy_key(bytes.fromhex("10011800"), prefix=f"{NAME}|")
    with pytest.raises(AdminKeyError, match=TAMPERED):
        check_admin_key(flip_hex_digit(key, index), NAME, SECRET)


def test_refuses_key_under_another_secret() -> None:
    with pytest.raises(AdminKeyError, match=TAMPERED):
        check_admin_key(issue_admin_key(NAME, OTHER_SECRET), NAME, SECRET)
    with pytest.raises(AdminKeyError, match=TAMPERED):
        check_admin_key(
            legacy_key(bytes.fromhex("10011800"), OTHER_SECRET, f"{NAME}|"), NAME, SECRET
        )


def test_refuses_key_for_another_instance() -> None:
    with pytest.raises(
        AdminKeyError, match="^key is for instance 'convex-prod', not 'convex-dev'$"
    ):
        check_admin_key(issue_admin_key("convex-prod", SECRET), NAME, SECRET)
    with pytest.raises(AdminKeyError, match="key is for instance '', not 'convex-dev'"):
        check_admin_key("|" + issue_admin_key(NAME, SECRET).split("|")[1], NAME, SECRET)


HEX_DIGITS = ("admin key is malformed: the part after '|' must be an even number of hex "
              "digits; copy the whole key again")


@pytest.mark.parametrize(
    "encrypted, message",
    [
        ("", HEX_DIGITS),
        ("01zz", HEX_DIGITS),
        ("010", HEX_DIGITS),
        ("01 02", HEX_DIGITS),
        ("01ab|cd", HEX_DIGITS),  # only the first '|' separates the name
        ("01" + "00" * 27, "admin key is too short (28 bytes) to be a Convex admin key; copy "
                           "the whole key again"),
        ("02" + "00" * 40, "admin key has version byte 0x02, but only 0x01 exists; this is not "
                           "a Convex admin key"),
        ("00" + "00" * 40, "admin key has version byte 0x00, but only 0x01 exists; this is not "
                           "a Convex admin key"),
    ],
)
def test_refuses_malformed_key(encrypted: str, message: str) -> None:
    with pytest.raises(AdminKeyError) as refused:
        check_admin_key(f"{NAME}|{encrypted}", NAME, SECRET)
    assert str(refused.value) == message


def test_the_shortest_well_formed_key_is_decrypted_not_refused_as_short() -> None:
    # version + nonce + tag and nothing else: long enough, so it fails authentication.
    with pytest.raises(AdminKeyError) as refused:
        check_admin_key(f"{NAME}|01" + "00" * 28, NAME, SECRET)
    assert "too short" not in str(refused.value)


def test_only_the_first_colon_separates_a_type_prefix() -> None:
    key = issue_admin_key(NAME, SECRET).split("|", 1)[1]
    with pytest.raises(AdminKeyError) as refused:
        check_admin_key(f"prod:other:{NAME}|{key}", NAME, SECRET)
    assert str(refused.value) == f"key is for instance 'other:{NAME}', not '{NAME}'"


def test_refuses_wrong_version_byte_on_valid_ciphertext() -> None:
    key = issue_admin_key(NAME, SECRET)
    with pytest.raises(AdminKeyError, match="version byte 0x02"):
        check_admin_key(key.replace("|01", "|02", 1), NAME, SECRET)


def test_refuses_legacy_key_naming_no_instance() -> None:
    with pytest.raises(AdminKeyError) as refused:
        check_admin_key(legacy_key(bytes.fromhex("10011800")), NAME, SECRET)
    assert str(refused.value) == ("invalid admin key format: the key names no instance; prefix "
                                  f"it with '{NAME}|'")


def test_refuses_current_key_without_prefix() -> None:
    with pytest.raises(AdminKeyError, match="invalid admin key format"):
        check_admin_key(issue_admin_key(NAME, SECRET).split("|")[1], NAME, SECRET)


def test_refuses_zero_issue_time() -> None:
    key = hand_current_key(encode_admin_key_proto(issued_s=0, member_id=0))
    with pytest.raises(AdminKeyError) as refused:
        check_admin_key(key, NAME, SECRET)
    assert str(refused.value) == ("key has no issue time (issued_s is 0), which Convex rejects; "
                                  "issue a new key")


def test_refuses_missing_identity() -> None:
    key = legacy_key(encode_admin_key_proto(issued_s=1), prefix=f"{NAME}|")
    with pytest.raises(AdminKeyError) as refused:
        check_admin_key(key, NAME, SECRET)
    assert str(refused.value) == ("key has no identity (neither member nor system), which "
                                  "Convex rejects; issue a new key")


def test_refuses_payload_that_is_not_a_protobuf() -> None:
    with pytest.raises(AdminKeyError, match="decrypts but is not an admin key"):
        check_admin_key(hand_current_key(b"\xff"), NAME, SECRET)


def test_error_messages_are_one_line() -> None:
    with pytest.raises(AdminKeyError) as caught:
        check_admin_key(legacy_key(bytes.fromhex("10011800")), NAME, SECRET)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"system": True, "member_id": 1}, SYSTEM_KEY),
        ({"system": True, "read_only": True}, SYSTEM_KEY),
        ({"issued_s": 0}, "issued_s must be an integer in 1..2**64-1 (Convex rejects 0), got 0"),
        ({"issued_s": -1}, "issued_s must be an integer in 1..2**64-1 (Convex rejects 0), got -1"),
        ({"issued_s": 2**64}, "issued_s must be an integer in 1..2**64-1 (Convex rejects 0), "
                              f"got {2**64}"),
        ({"member_id": -1}, "member id must be an integer in 0..2**64-1, got -1"),
        ({"member_id": 2**64}, f"member id must be an integer in 0..2**64-1, got {2**64}"),
        ({"member_id": True}, "member id must be an integer in 0..2**64-1, got True"),
    ],
)
def test_issue_refuses_bad_options(options: dict, message: str) -> None:
    with pytest.raises(AdminKeyError) as refused:
        issue_admin_key(NAME, SECRET, **options)
    assert str(refused.value) == message


@pytest.mark.parametrize("options, message", [
    ({"issued_s": -1}, "issued_s and member_id must be integers in 0..2**64-1"),
    ({"issued_s": 1, "member_id": -1}, "issued_s and member_id must be integers in 0..2**64-1"),
    ({"issued_s": 1, "member_id": 0, "system": True},
     "a key is either a system key or a member key, not both"),
])
def test_encode_refuses_what_the_proto_cannot_hold(options: dict, message: str) -> None:
    with pytest.raises(AdminKeyError) as refused:
        encode_admin_key_proto(**options)
    assert str(refused.value) == message


def test_varints_of_127_and_128_are_canonical() -> None:
    assert encode_admin_key_proto(issued_s=127, member_id=128) == bytes.fromhex("107f188001")
    assert decode_admin_key_proto(bytes.fromhex("107f188001")) == AdminKeyProto(
        issued_s=127, member_id=128)


@pytest.mark.parametrize(
    "name",
    ["", "Convex-Dev", "convex_dev", "-dev", "dev-", "a--b", "a|b", "a:b", "a" * 64, "dev\n"],
)
def test_issue_refuses_bad_instance_name(name: str) -> None:
    with pytest.raises(AdminKeyError) as refused:
        issue_admin_key(name, SECRET)
    assert str(refused.value) == (
        f"instance name {name!r} is invalid: use 1-63 lowercase letters, digits and single "
        "dashes, not starting or ending with a dash")


def test_instance_name_pattern() -> None:
    assert INSTANCE_NAME_PATTERN.fullmatch("convex-self-hosted-2")
    assert not INSTANCE_NAME_PATTERN.fullmatch("convex--dev")
    assert issue_admin_key("a" * 63, SECRET)


def test_parse_instance_secret() -> None:
    assert parse_instance_secret(SECRET) == bytes(range(32))
    assert parse_instance_secret(f"  {SECRET.upper()}\n") == bytes(range(32))


@pytest.mark.parametrize(
    "secret",
    [
        "",
        SECRET[:-1],
        SECRET + "0",
        SECRET[:-2],
        SECRET + "00",
        "g" + SECRET[1:],
        "0x" + SECRET[2:],
        SECRET[:30] + " " + SECRET[31:],
    ],
)
def test_parse_instance_secret_refuses(secret: str) -> None:
    with pytest.raises(AdminKeyError) as refused:
        parse_instance_secret(secret)
    assert str(refused.value) == SECRET_FORMAT
    with pytest.raises(AdminKeyError, match="64 hex characters"):
        check_admin_key(issue_admin_key(NAME, SECRET), NAME, secret)


# --- CLI -------------------------------------------------------------------------------


def run_cli(
    *args: str, secret: str | None = SECRET, in_process: bool = True
) -> subprocess.CompletedProcess[str]:
    """The CLI's exit code and output: `main()` in this process, or `python -m` in another."""
    env = {key: value for key, value in os.environ.items() if key != "INSTANCE_SECRET"}
    if secret is not None:
        env["INSTANCE_SECRET"] = secret
    if not in_process:
        return subprocess.run(
            [sys.executable, "-m", "components.admin_key", *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env, clear=True), redirect_stdout(out), redirect_stderr(err):
        try:
            code = admin_key_cli.main(list(args))
        except SystemExit as exit_:
            code = exit_.code
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("in_process", [True, False])
def test_cli_generate_and_verify(in_process: bool) -> None:
    generated = run_cli("generate", "--instance-name", NAME, in_process=in_process)
    assert generated.returncode == 0, generated.stderr
    assert generated.stdout == issue_admin_key(NAME, SECRET) + "\n"
    verified = run_cli(
        "verify", "--instance-name", NAME, generated.stdout.strip(), in_process=in_process
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout == check_admin_key(generated.stdout, NAME, SECRET).describe() + "\n"


def test_cli_generate_read_only_member() -> None:
    generated = run_cli(
        "generate", "--instance-name", NAME, "--read-only", "--member-id", "5", "--issued-s", "77"
    )
    assert (
        generated.stdout
        == issue_admin_key(NAME, SECRET, member_id=5, read_only=True, issued_s=77) + "\n"
    )
    verified = run_cli("verify", "--instance-name", NAME, generated.stdout.strip())
    assert "member 5, read-only" in verified.stdout


def test_cli_generate_system() -> None:
    generated = run_cli("generate", "--instance-name", NAME, "--system")
    assert generated.stdout == issue_admin_key(NAME, SECRET, system=True) + "\n"


def test_cli_verify_wrong_instance_exits_1() -> None:
    result = run_cli("verify", "--instance-name", "convex-prod", issue_admin_key(NAME, SECRET))
    assert_one_line_error(result, 1)
    assert "key is for instance 'convex-dev', not 'convex-prod'" in result.stderr


def test_cli_verify_tampered_key_exits_1() -> None:
    result = run_cli(
        "verify", "--instance-name", NAME, flip_hex_digit(issue_admin_key(NAME, SECRET), 30)
    )
    assert_one_line_error(result, 1)


@pytest.mark.parametrize(
    "command", [["generate", "--instance-name", NAME], ["verify", "--instance-name", NAME, "x|01"]]
)
def test_cli_missing_secret_exits_2(command: list[str]) -> None:
    result = run_cli(*command, secret=None)
    assert_one_line_error(result, 2)
    assert result.stderr == ("error: INSTANCE_SECRET is not set; export the instance secret "
                             "(64 hex characters) in that environment variable\n")


@pytest.mark.parametrize("secret", ["", "abc", SECRET + "ff"])
def test_cli_malformed_secret_exits_2(secret: str) -> None:
    assert_one_line_error(run_cli("generate", "--instance-name", NAME, secret=secret), 2)


def test_cli_bad_instance_name_exits_2() -> None:
    result = run_cli("generate", "--instance-name", "Convex_Dev")
    assert_one_line_error(result, 2)
    with pytest.raises(AdminKeyError) as refused:
        issue_admin_key("Convex_Dev", SECRET)
    assert result.stderr == f"error: {refused.value}\n"


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "--instance-name", NAME, "--instance-secret", OTHER_SECRET],
        ["generate", "--instance-name", NAME, OTHER_SECRET],
        ["verify", "--instance-name", NAME, "key", OTHER_SECRET],
    ],
)
def test_cli_never_takes_the_secret_as_an_argument(args: list[str]) -> None:
    result = run_cli(*args, secret=None)
    assert_one_line_error(result, 2)
    assert OTHER_SECRET not in result.stderr


def test_module_imports_without_pulumi() -> None:
    code = "import sys; sys.modules['pulumi'] = None; import components.admin_key"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_a_legacy_key_with_an_empty_payload_decrypts_and_is_refused_for_its_content() -> None:
    with pytest.raises(AdminKeyError) as refused:
        check_admin_key(legacy_key(b""), NAME, SECRET)
    assert "does not decrypt" not in str(refused.value)


def test_issue_times_are_shown_in_utc(monkeypatch) -> None:
    from components.admin_key import _format_issued

    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    try:
        shown = _format_issued(0), _format_issued(10**20)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert shown == ("1970-01-01T00:00:00Z", "at unix time 100000000000000000000")


@pytest.mark.parametrize("args, error", [
    ((), "the following arguments are required: command"),
    (("generate",), "the following arguments are required: --instance-name"),
    (("verify", "--instance-name", NAME), "the following arguments are required: key"),
    (("verify", "KEY"), "the following arguments are required: --instance-name"),
    (("generate", "--instance-name", NAME, "extra"), "unrecognized arguments (the instance "
     "secret is read only from the INSTANCE_SECRET environment variable)"),
])
def test_cli_usage_errors_word_for_word(args: tuple, error: str) -> None:
    result = run_cli(*args)
    assert (result.returncode, result.stdout, result.stderr) == (
        2, "", f"error: {error}; see --help\n")


def test_cli_help_names_its_commands_and_where_the_secret_comes_from() -> None:
    text = " ".join(run_cli("--help").stdout.split())
    assert text.startswith("usage: python -m components.admin_key [-h] {generate,verify} ... "
                           "Issue or verify Convex admin keys. The instance secret (64 hex "
                           "characters) is read from the INSTANCE_SECRET environment variable.")
    assert "generate print a deterministic admin key" in text
    assert "verify check an admin key against the secret" in text


@pytest.mark.parametrize("length", [29, 30, 40, 41, 64])
def test_keys_too_short_for_the_legacy_format_fail_to_decrypt_cleanly(length: int) -> None:
    with pytest.raises(AdminKeyError) as refused:
        check_admin_key(f"{NAME}|01" + "00" * (length - 1), NAME, SECRET)
    with pytest.raises(AdminKeyError) as tampered:
        check_admin_key(flip_hex_digit(issue_admin_key(NAME, SECRET), 30), NAME, SECRET)
    assert str(refused.value) == str(tampered.value)

"""Convex admin keys, issued and checked exactly as Convex's keybroker does.

An admin key is ``NAME|HEX`` where HEX encodes ``0x01 || nonce(12) ||
AES-128-GCM-SIV(ciphertext || tag)`` of a ``convex_keys.AdminKey`` protobuf.
The AES key is derived from the instance secret with KBKDF (SP 800-108,
counter mode, HMAC-SHA256) for the purpose string ``"admin key"``, and the
version byte is the associated data. The backend also still accepts legacy
keys, ``0x01 || nonce(24) || XSalsa20-Poly1305 secretbox`` under the raw
secret, so :func:`check_admin_key` accepts those too; this module never
issues them.

About ``issued_s``: the stack derives admin keys deterministically from the
instance secret so that they never churn between deployments (a fresh key on
every ``pulumi up`` would needlessly replace every resource that holds one).
A real issue time would break that, so by default keys carry
``DEFAULT_ISSUED_S = 1`` (1970-01-01T00:00:01Z), a sentinel meaning "derived
by convex-selfhost from the instance secret, not issued at a moment". The
backend only logs ``issued_s`` and never expires keys; it merely rejects 0,
which is why the sentinel is 1 rather than 0.

The instance secret is the only thing that makes keys unforgeable: anyone
holding it can mint keys for the instance, and rotating it revokes them all.

CLI (the secret is read only from the ``INSTANCE_SECRET`` environment variable,
never from an argument, which would show in process lists)::

    python -m components.admin_key generate --instance-name NAME [--read-only]
        [--member-id N] [--system] [--issued-s N]
    python -m components.admin_key verify --instance-name NAME KEY
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import os
import re
import sys
from dataclasses import dataclass
from typing import Iterator, NoReturn, Optional, Sequence, Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.kbkdf import (
    KBKDFHMAC,
    CounterLocation,
    Mode,
)
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

DEFAULT_ISSUED_S = 1
ADMIN_KEY_VERSION = 1
INSTANCE_NAME_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
INSTANCE_NAME_MAX_LEN = 63

_UINT64_MAX = 2**64 - 1
_SECRET_LEN = 32
_ADMIN_KEY_PURPOSE = b"admin key"
_DERIVED_KEY_LEN = 16
_NONCE_LEN = 12
_TAG_LEN = 16
_LEGACY_NONCE_LEN = 24
_LEGACY_MAC_LEN = 16
_NONCE_DOMAIN = b"convex-selfhost admin key nonce"
_HEX_PATTERN = re.compile(r"[0-9a-fA-F]*")
_DECRYPT_FAILED = (
    "key does not decrypt under this instance secret: it was issued for "
    "another secret or was altered"
)


class AdminKeyError(ValueError):
    """Any problem with an instance secret or an admin key; str() is one line."""


# --- instance secret and name -------------------------------------------------


def parse_instance_secret(secret_hex: str) -> bytes:
    text = secret_hex.strip() if isinstance(secret_hex, str) else ""
    if len(text) != 2 * _SECRET_LEN or not _HEX_PATTERN.fullmatch(text):
        raise AdminKeyError(
            "instance secret must be 64 hex characters (32 bytes); "
            "generate one with `openssl rand -hex 32`"
        )
    return bytes.fromhex(text)


def validate_instance_name(instance_name: str) -> str:
    # fullmatch, not match: `$` would also accept a trailing newline.
    if (
        not isinstance(instance_name, str)
        or len(instance_name) > INSTANCE_NAME_MAX_LEN
        or not INSTANCE_NAME_PATTERN.fullmatch(instance_name)
    ):
        raise AdminKeyError(
            f"instance name {instance_name!r} is invalid: use 1-"
            f"{INSTANCE_NAME_MAX_LEN} lowercase letters, digits and single "
            "dashes, not starting or ending with a dash"
        )
    return instance_name


# --- protobuf: convex_keys.AdminKey ---------------------------------------------

_VARINT, _FIXED64, _LEN, _START_GROUP, _END_GROUP, _FIXED32 = range(6)
_MAX_GROUP_DEPTH = 100  # prost's recursion limit

_FIELD_INSTANCE_NAME = 1
_FIELD_ISSUED_S = 2
_FIELD_MEMBER_ID = 3
_FIELD_SYSTEM = 4
_FIELD_IS_READ_ONLY = 5


@dataclass(frozen=True)
class AdminKeyProto:
    """Decoded ``convex_keys.AdminKey``; identity is member_id xor system."""

    issued_s: int
    member_id: Optional[int] = None
    system: bool = False
    read_only: bool = False
    instance_name: Optional[str] = None


def _is_uint64(value: object) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value <= _UINT64_MAX
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def encode_admin_key_proto(
    *,
    issued_s: int,
    member_id: Optional[int] = None,
    system: bool = False,
    read_only: bool = False,
    instance_name: Optional[str] = None,
) -> bytes:
    """Encode like prost: canonical field order, proto3 defaults omitted.

    Deliberately permissive about content (issued_s=0, no identity) so that
    tests can build keys upstream refuses; issue_admin_key does the policing.
    """
    if not _is_uint64(issued_s) or (member_id is not None and not _is_uint64(member_id)):
        raise AdminKeyError("issued_s and member_id must be integers in 0..2**64-1")
    if system and member_id is not None:
        raise AdminKeyError("a key is either a system key or a member key, not both")
    out = bytearray()
    if instance_name is not None:
        name = instance_name.encode("utf-8")
        out += _key(_FIELD_INSTANCE_NAME, _LEN) + _varint(len(name)) + name
    if issued_s:
        out += _key(_FIELD_ISSUED_S, _VARINT) + _varint(issued_s)
    # Oneof members are always encoded, even when they hold the default value:
    # member 0 (the generic admin) must stay distinguishable from "no identity".
    if member_id is not None:
        out += _key(_FIELD_MEMBER_ID, _VARINT) + _varint(member_id)
    if system:
        out += _key(_FIELD_SYSTEM, _LEN) + _varint(0)
    if read_only:
        out += _key(_FIELD_IS_READ_ONLY, _VARINT) + _varint(1)
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise AdminKeyError("admin key payload is truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self) -> int:
        value = 0
        for i in range(10):
            byte = self.take(1)[0]
            # The tenth byte may only carry the 64th bit.
            if i == 9 and byte > 1:
                break
            value |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                return value
        raise AdminKeyError("admin key payload has an over-long varint")

    def field(self, depth: int = 0) -> tuple[int, int, Union[int, bytes, None]]:
        key = self.varint()
        field, wire_type = key >> 3, key & 7
        if key > 0xFFFFFFFF or field == 0 or wire_type > _FIXED32:
            raise AdminKeyError("admin key payload has an invalid field tag")
        if wire_type == _VARINT:
            return field, wire_type, self.varint()
        if wire_type == _FIXED64:
            return field, wire_type, self.take(8)
        if wire_type == _FIXED32:
            return field, wire_type, self.take(4)
        if wire_type == _LEN:
            return field, wire_type, self.take(self.varint())
        if wire_type == _START_GROUP:
            self._skip_group(field, depth + 1)
        return field, wire_type, None

    def _skip_group(self, group_field: int, depth: int) -> None:
        if depth > _MAX_GROUP_DEPTH:
            raise AdminKeyError("admin key payload nests groups too deeply")
        while True:
            field, wire_type, _ = self.field(depth)
            if wire_type == _END_GROUP:
                if field != group_field:
                    raise AdminKeyError("admin key payload has a mismatched group")
                return


def _fields(data: bytes) -> Iterator[tuple[int, int, Union[int, bytes, None]]]:
    reader = _Reader(data)
    while not reader.at_end():
        field, wire_type, value = reader.field()
        if wire_type == _END_GROUP:
            raise AdminKeyError("admin key payload has a stray end-group tag")
        yield field, wire_type, value


def _expect(wire_type: int, expected: int, field: int) -> None:
    if wire_type != expected:
        raise AdminKeyError(f"admin key payload field {field} has the wrong wire type")


def decode_admin_key_proto(data: bytes) -> AdminKeyProto:
    """Decode like prost: unknown fields skipped, last oneof member wins."""
    fields: dict[str, object] = {}
    for field, wire_type, value in _fields(data):
        if field == _FIELD_INSTANCE_NAME:
            _expect(wire_type, _LEN, field)
            try:
                fields["instance_name"] = value.decode("utf-8")  # type: ignore[union-attr]
            except UnicodeDecodeError:
                raise AdminKeyError("admin key payload has a non-UTF-8 instance name") from None
        elif field == _FIELD_ISSUED_S:
            _expect(wire_type, _VARINT, field)
            fields["issued_s"] = value
        elif field == _FIELD_MEMBER_ID:
            _expect(wire_type, _VARINT, field)
            fields.update(member_id=value, system=False)
        elif field == _FIELD_SYSTEM:
            _expect(wire_type, _LEN, field)
            # google.protobuf.Empty: any content must still be well-formed.
            for _ in _fields(value):  # type: ignore[arg-type]
                pass
            fields.update(member_id=None, system=True)
        elif field == _FIELD_IS_READ_ONLY:
            _expect(wire_type, _VARINT, field)
            fields["read_only"] = value != 0
    fields.setdefault("issued_s", 0)
    return AdminKeyProto(**fields)  # type: ignore[arg-type]


# --- current format: KBKDF + AES-128-GCM-SIV -----------------------------------


def kbkdf_hmac_sha256(key: bytes, info: bytes, length: int = _DERIVED_KEY_LEN) -> bytes:
    """SP 800-108 counter-mode KDF as aws-lc's kbkdf_ctr_hmac: be32(i) || info."""
    kdf = KBKDFHMAC(
        algorithm=hashes.SHA256(),
        mode=Mode.CounterMode,
        length=length,
        rlen=4,
        llen=None,
        location=CounterLocation.BeforeFixed,
        label=None,
        context=None,
        fixed=info,
    )
    return kdf.derive(key)


def derive_admin_key_encryption_key(secret: bytes) -> bytes:
    return kbkdf_hmac_sha256(secret, _ADMIN_KEY_PURPOSE)


def _deterministic_nonce(derived_key: bytes, plaintext: bytes) -> bytes:
    # Safe although deterministic: AES-GCM-SIV is nonce-misuse resistant
    # (RFC 8452), so a repeated nonce only reveals whether two plaintexts are
    # equal. Here the nonce is itself a function of the plaintext, so equal
    # nonces imply equal plaintexts, and that leaks nothing beyond the
    # determinism we want. Upstream uses a constant nonce for the same purpose
    # (DeterministicEncryptor); a keyed hash keeps keys distinct-looking anyway.
    mac = hmac.new(derived_key, _NONCE_DOMAIN + plaintext, hashlib.sha256)
    return mac.digest()[:_NONCE_LEN]


def _version_aad() -> bytes:
    return bytes([ADMIN_KEY_VERSION])


def _seal(secret: bytes, plaintext: bytes) -> bytes:
    derived_key = derive_admin_key_encryption_key(secret)
    nonce = _deterministic_nonce(derived_key, plaintext)
    sealed = AESGCMSIV(derived_key).encrypt(nonce, plaintext, _version_aad())
    return _version_aad() + nonce + sealed


def _open_current(secret: bytes, blob: bytes) -> Optional[bytes]:
    nonce, sealed = blob[1 : 1 + _NONCE_LEN], blob[1 + _NONCE_LEN :]
    aead = AESGCMSIV(derive_admin_key_encryption_key(secret))
    try:
        return aead.decrypt(nonce, sealed, _version_aad())
    except InvalidTag:
        return None


# --- legacy format: XSalsa20-Poly1305 (NaCl secretbox) -------------------------


def _open_legacy(secret: bytes, blob: bytes) -> Optional[bytes]:
    nonce = blob[1 : 1 + _LEGACY_NONCE_LEN]
    boxed = blob[1 + _LEGACY_NONCE_LEN :]
    if len(nonce) != _LEGACY_NONCE_LEN or len(boxed) < _LEGACY_MAC_LEN:
        return None
    try:
        return SecretBox(secret).decrypt(boxed, nonce)
    except CryptoError:
        return None


# --- issuing and checking --------------------------------------------------------


@dataclass(frozen=True)
class AdminKeyInfo:
    instance_name: str
    issued_s: int
    member_id: Optional[int]
    system: bool
    read_only: bool
    legacy: bool

    def describe(self) -> str:
        who = "system key" if self.system else f"member {self.member_id}"
        access = "read-only" if self.read_only else "read-write"
        fmt = "legacy format" if self.legacy else "current format"
        return (
            f"valid admin key for instance '{self.instance_name}': {who}, "
            f"{access}, issued {_format_issued(self.issued_s)}, {fmt}"
        )


def _format_issued(issued_s: int) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(issued_s, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"at unix time {issued_s}"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def issue_admin_key(
    instance_name: str,
    instance_secret: str,
    *,
    member_id: int = 0,
    read_only: bool = False,
    system: bool = False,
    issued_s: int = DEFAULT_ISSUED_S,
) -> str:
    """Deterministic: the same arguments always give the same key."""
    validate_instance_name(instance_name)
    secret = parse_instance_secret(instance_secret)
    if system and (member_id != 0 or read_only):
        raise AdminKeyError(
            "a system key has no member id and is never read-only; "
            "drop --member-id/--read-only or --system"
        )
    if not _is_uint64(member_id):
        raise AdminKeyError(f"member id must be an integer in 0..2**64-1, got {member_id!r}")
    if not _is_uint64(issued_s) or issued_s == 0:
        raise AdminKeyError(
            f"issued_s must be an integer in 1..2**64-1 (Convex rejects 0), got {issued_s!r}"
        )
    plaintext = encode_admin_key_proto(
        issued_s=issued_s,
        member_id=None if system else member_id,
        system=system,
        read_only=read_only,
    )
    return f"{instance_name}|{_seal(secret, plaintext).hex()}"


def _split_key(key: str) -> tuple[Optional[str], str]:
    name, sep, encrypted = key.partition("|")
    if not sep:
        return None, key
    # The dashboard and CLI show names as `prod:NAME` / `dev:NAME`; upstream
    # drops everything up to the first colon.
    _, colon, rest = name.partition(":")
    return (rest if colon else name), encrypted


def _decode_hex_blob(encrypted: str) -> bytes:
    if not encrypted or len(encrypted) % 2 or not _HEX_PATTERN.fullmatch(encrypted):
        raise AdminKeyError(
            "admin key is malformed: the part after '|' must be an even number "
            "of hex digits; copy the whole key again"
        )
    blob = bytes.fromhex(encrypted)
    if blob[0] != ADMIN_KEY_VERSION:
        raise AdminKeyError(
            f"admin key has version byte 0x{blob[0]:02x}, but only "
            f"0x{ADMIN_KEY_VERSION:02x} exists; this is not a Convex admin key"
        )
    if len(blob) < 1 + _NONCE_LEN + _TAG_LEN:
        raise AdminKeyError(
            f"admin key is too short ({len(blob)} bytes) to be a Convex admin key; "
            "copy the whole key again"
        )
    return blob


def _decrypt(secret: bytes, blob: bytes) -> tuple[AdminKeyProto, bool]:
    """Try the current format, then legacy, as the backend does."""
    payload_error: Optional[AdminKeyError] = None
    for opener, legacy in ((_open_current, False), (_open_legacy, True)):
        plaintext = opener(secret, blob)
        if plaintext is None:
            continue
        try:
            return decode_admin_key_proto(plaintext), legacy
        except AdminKeyError as error:
            payload_error = error
    if payload_error is not None:
        raise AdminKeyError(f"key decrypts but is not an admin key: {payload_error}")
    raise AdminKeyError(_DECRYPT_FAILED)


def check_admin_key(key: str, instance_name: str, instance_secret: str) -> AdminKeyInfo:
    """Accept a key exactly when the backend for `instance_name` would."""
    secret = parse_instance_secret(instance_secret)
    prefix_name, encrypted = _split_key(key.strip())
    proto, legacy = _decrypt(secret, _decode_hex_blob(encrypted))
    name = prefix_name if prefix_name is not None else proto.instance_name
    if name is None:
        raise AdminKeyError(
            "invalid admin key format: the key names no instance; "
            f"prefix it with '{instance_name}|'"
        )
    if name != instance_name:
        raise AdminKeyError(f"key is for instance '{name}', not '{instance_name}'")
    if proto.issued_s == 0:
        raise AdminKeyError(
            "key has no issue time (issued_s is 0), which Convex rejects; issue a new key"
        )
    if proto.member_id is None and not proto.system:
        raise AdminKeyError(
            "key has no identity (neither member nor system), which Convex rejects; "
            "issue a new key"
        )
    return AdminKeyInfo(
        instance_name=name,
        issued_s=proto.issued_s,
        member_id=proto.member_id,
        system=proto.system,
        # The backend ignores the read-only flag of a system key.
        read_only=proto.read_only and not proto.system,
        legacy=legacy,
    )


# --- CLI -----------------------------------------------------------------------


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Never echo stray arguments: a secret pasted onto the command line
        # must not be copied into logs as well.
        if message.startswith("unrecognized arguments"):
            message = (
                "unrecognized arguments (the instance secret is read only from "
                "the INSTANCE_SECRET environment variable)"
            )
        self.exit(2, f"error: {message}; see --help\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="python -m components.admin_key",
        description="Issue or verify Convex admin keys. The instance secret "
        "(64 hex characters) is read from the INSTANCE_SECRET environment variable.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)
    generate = commands.add_parser("generate", help="print a deterministic admin key")
    generate.add_argument("--instance-name", required=True)
    generate.add_argument("--read-only", action="store_true")
    generate.add_argument("--member-id", type=int, default=0)
    generate.add_argument("--system", action="store_true")
    generate.add_argument("--issued-s", type=int, default=DEFAULT_ISSUED_S)
    verify = commands.add_parser("verify", help="check an admin key against the secret")
    verify.add_argument("--instance-name", required=True)
    verify.add_argument("key")
    return parser


def _secret_from_environment() -> str:
    secret = os.environ.get("INSTANCE_SECRET")
    if not secret:
        raise AdminKeyError(
            "INSTANCE_SECRET is not set; export the instance secret "
            "(64 hex characters) in that environment variable"
        )
    parse_instance_secret(secret)
    return secret


def _fail(error: AdminKeyError, exit_code: int) -> int:
    print(f"error: {error}", file=sys.stderr)
    return exit_code


def _generate(args: argparse.Namespace, secret: str) -> int:
    try:
        key = issue_admin_key(
            args.instance_name,
            secret,
            member_id=args.member_id,
            read_only=args.read_only,
            system=args.system,
            issued_s=args.issued_s,
        )
    except AdminKeyError as error:
        return _fail(error, 2)
    print(key)
    return 0


def _verify(args: argparse.Namespace, secret: str) -> int:
    try:
        info = check_admin_key(args.key, args.instance_name, secret)
    except AdminKeyError as error:
        return _fail(error, 1)
    print(info.describe())
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        secret = _secret_from_environment()
    except AdminKeyError as error:
        return _fail(error, 2)
    if args.command == "generate":
        return _generate(args, secret)
    return _verify(args, secret)


if __name__ == "__main__":
    sys.exit(main())

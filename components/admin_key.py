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

The protobuf codec is `components.key_proto`; the command line (`python -m
components.admin_key generate|verify ...`) is `ops.admin_key_cli`.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import sys
from dataclasses import dataclass
from typing import Optional

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.kbkdf import (
    KBKDFHMAC,
    CounterLocation,
    Mode,
)

from components.key_proto import (  # noqa: F401  (re-exported: the module's public API)
    AdminKeyError,
    AdminKeyProto,
    decode_admin_key_proto,
    encode_admin_key_proto,
    is_uint64,
)
from components.rules import INSTANCE_NAME_MAX_LEN, INSTANCE_NAME_PATTERN

DEFAULT_ISSUED_S = 1
ADMIN_KEY_VERSION = 1

_UINT64_MAX = 2**64 - 1
_SECRET_LEN = 32
_ADMIN_KEY_PURPOSE = b"admin key"
_DERIVED_KEY_LEN = 16
_NONCE_LEN = 12
_TAG_LEN = 16
_LEGACY_NONCE_LEN = 24
_NONCE_DOMAIN = b"convex-selfhost admin key nonce"
_HEX_PATTERN = re.compile(r"[0-9a-fA-F]*")
_DECRYPT_FAILED = (
    "key does not decrypt under this instance secret: it was issued for "
    "another secret or was altered"
)


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
    """The payload after the version byte and the nonce; None unless it authenticates."""
    # Imported here: only checking a legacy key needs libsodium, never a deployment.
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox

    nonce, boxed = blob[1 : 1 + _LEGACY_NONCE_LEN], blob[1 + _LEGACY_NONCE_LEN :]
    try:  # a short nonce or a box shorter than its MAC is a CryptoError too
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
    if not is_uint64(member_id):
        raise AdminKeyError(f"member id must be an integer in 0..2**64-1, got {member_id!r}")
    if not is_uint64(issued_s) or issued_s == 0:
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


if __name__ == "__main__":
    from ops.admin_key_cli import main

    sys.exit(main())

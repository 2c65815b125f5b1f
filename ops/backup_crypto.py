"""Client-side encryption of snapshots (standard library only at run time).

AES-256-GCM comes from a well-kept implementation, never from this file: the
`cryptography` package when it is installed (the operator's machine: requirements.txt),
else OpenSSL's libcrypto through ctypes (every Python image links it for `ssl`).

File layout (version 1), all integers big-endian:
    header  b"CVXBKUP1" | chunk size (4 bytes) | nonce prefix (8 random bytes)
            | key id (8 bytes: SHA-256("convex-selfhost backup key id" + key)[:8])
    chunks  AES-256-GCM(key, nonce = nonce prefix | chunk number (4 bytes),
                        aad = header | final (1 byte: 1 for the last chunk, else 0))
            = ciphertext | 16-byte tag; every chunk but the last holds chunk-size bytes
            of plaintext, the last fewer (possibly none).
Reordered, dropped, truncated or altered chunks, another file's chunks and a wrong key all
fail authentication; decrypt() then removes what it wrote.

The key is 32 random bytes, base64 (`openssl rand -base64 32`), handed over in the
environment (KEY_ENV), never on a command line.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import hashlib
import os
import struct

KEY_ENV = "CONVEX_BACKUP_ENCRYPTION_KEY"
MAGIC = b"CVXBKUP1"
CHUNK = 1 << 20
TAG = 16
HEADER = struct.Struct(">8sI8s8s")
SUFFIX = ".enc"


class CryptoError(Exception):
    """Not a valid key, or a file that does not decrypt; str() says which."""


def parse_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise CryptoError("the encryption key must be 32 bytes in base64 (make one with "
                          "`openssl rand -base64 32`)")
    return key


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"convex-selfhost backup key id" + key).digest()[:8]


class _Cryptography:
    def __init__(self, key: bytes):
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead, self._invalid = AESGCM(key), InvalidTag

    def seal(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        return self._aead.encrypt(nonce, data, aad)

    def open(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(nonce, data, aad)
        except self._invalid:
            raise CryptoError("authentication failed") from None


class _LibCrypto:
    """The same through OpenSSL's EVP interface (libcrypto, as linked by Python's ssl)."""

    GET_TAG, SET_TAG = 0x10, 0x11  # EVP_CTRL_GCM_GET_TAG / _SET_TAG

    def __init__(self, key: bytes):
        self._key = key
        lib = None
        for name in (ctypes.util.find_library("crypto"), "libcrypto.so.3", "libcrypto.so.1.1"):
            try:
                lib = ctypes.CDLL(name) if name else None
            except OSError:
                continue
            if lib is not None:
                break
        if lib is None:
            raise CryptoError("neither the cryptography package nor OpenSSL's libcrypto is "
                              "available for AES-GCM")
        for name in ("EVP_CIPHER_CTX_new", "EVP_aes_256_gcm"):
            getattr(lib, name).restype = ctypes.c_void_p
        lib.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
        for name in ("EVP_EncryptInit_ex", "EVP_DecryptInit_ex"):
            getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                           ctypes.c_char_p, ctypes.c_char_p]
        for name in ("EVP_EncryptUpdate", "EVP_DecryptUpdate"):
            getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                           ctypes.POINTER(ctypes.c_int), ctypes.c_char_p,
                                           ctypes.c_int]
        for name in ("EVP_EncryptFinal_ex", "EVP_DecryptFinal_ex"):
            getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                           ctypes.POINTER(ctypes.c_int)]
        lib.EVP_CIPHER_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                            ctypes.c_void_p]
        self._lib = lib

    def _run(self, encrypt: bool, nonce: bytes, data: bytes, aad: bytes,
             tag: bytes = b"") -> bytes:
        lib, mode = self._lib, "Encrypt" if encrypt else "Decrypt"
        ctx = lib.EVP_CIPHER_CTX_new()
        if not ctx:
            raise CryptoError("libcrypto could not allocate a cipher context")
        try:
            length = ctypes.c_int(0)
            out = ctypes.create_string_buffer(len(data) + TAG)
            ok = getattr(lib, f"EVP_{mode}Init_ex")(ctx, lib.EVP_aes_256_gcm(), None,
                                                    self._key, nonce) == 1
            ok = ok and getattr(lib, f"EVP_{mode}Update")(ctx, None, ctypes.byref(length),
                                                          aad, len(aad)) == 1
            ok = ok and getattr(lib, f"EVP_{mode}Update")(ctx, out, ctypes.byref(length),
                                                          data, len(data)) == 1
            written = length.value
            if ok and not encrypt:
                tag_buffer = ctypes.create_string_buffer(tag, TAG)
                ok = lib.EVP_CIPHER_CTX_ctrl(ctx, self.SET_TAG, TAG, tag_buffer) == 1
            final = ctypes.create_string_buffer(TAG)
            ok = ok and getattr(lib, f"EVP_{mode}Final_ex")(ctx, final,
                                                            ctypes.byref(length)) == 1
            if not ok:
                raise CryptoError("authentication failed" if not encrypt else
                                  "libcrypto refused to encrypt")
            result = out.raw[:written]
            if encrypt:
                tag_buffer = ctypes.create_string_buffer(TAG)
                if lib.EVP_CIPHER_CTX_ctrl(ctx, self.GET_TAG, TAG, tag_buffer) != 1:
                    raise CryptoError("libcrypto gave no tag")
                result += tag_buffer.raw
            return result
        finally:
            lib.EVP_CIPHER_CTX_free(ctx)

    def seal(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        return self._run(True, nonce, data, aad)

    def open(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        if len(data) < TAG:
            raise CryptoError("authentication failed")
        return self._run(False, nonce, data[:-TAG], aad, data[-TAG:])


def cipher(key: bytes, backend: str = ""):
    """AES-256-GCM with KEY: `cryptography`'s if importable (or BACKEND "libcrypto")."""
    if backend != "libcrypto":
        try:
            return _Cryptography(key)
        except ImportError:
            if backend:
                raise
    return _LibCrypto(key)


def _nonce(prefix: bytes, number: int) -> bytes:
    if number >= 1 << 32:
        raise CryptoError("the file is too large for one nonce prefix")
    return prefix + struct.pack(">I", number)


def encrypt(source: str, target: str, key: bytes, backend: str = "",
            chunk: int = CHUNK) -> None:
    """SOURCE encrypted into TARGET (created 0600)."""
    aead = cipher(key, backend)
    header = HEADER.pack(MAGIC, chunk, os.urandom(8), key_id(key))
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with open(source, "rb") as plain, os.fdopen(fd, "wb") as out:
        out.write(header)
        number, current = 0, plain.read(chunk)
        while True:
            following = plain.read(chunk) if len(current) == chunk else b""
            last = not following
            out.write(aead.seal(_nonce(header[12:20], number), current,
                                header + (b"\x01" if last else b"\x00")))
            if last:
                break
            number, current = number + 1, following


def decrypt(source: str, target: str, key: bytes, backend: str = "") -> None:
    """SOURCE (written by encrypt) decrypted into TARGET; CryptoError, and no TARGET left,
    when it does not authenticate."""
    try:
        _decrypt(source, target, key, backend)
    except BaseException:
        if os.path.lexists(target):  # nothing half-decrypted stays
            os.unlink(target)
        raise


def _decrypt(source: str, target: str, key: bytes, backend: str) -> None:
    with open(source, "rb") as sealed:
        header = sealed.read(HEADER.size)
        if len(header) != HEADER.size or not header.startswith(MAGIC):
            raise CryptoError("not a file encrypted by convex-selfhost (no CVXBKUP1 header)")
        _, chunk, prefix, kid = HEADER.unpack(header)
        if kid != key_id(key):
            raise CryptoError("encrypted with another key")
        if not 0 < chunk <= 64 << 20:
            raise CryptoError("a damaged header")
        aead = cipher(key, backend)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            number, current = 0, sealed.read(chunk + TAG)
            while True:
                following = sealed.read(chunk + TAG) if len(current) == chunk + TAG else b""
                last = not following
                try:
                    out.write(aead.open(_nonce(prefix, number), current,
                                        header + (b"\x01" if last else b"\x00")))
                except CryptoError:
                    raise CryptoError(f"chunk {number} does not authenticate: the file is "
                                      "damaged, truncated or reordered") from None
                if last:
                    return
                number, current = number + 1, following

"""Off-host copies of verified snapshots: encrypted (backup_crypto) if asked, uploaded
to an S3-compatible bucket (backup_s3) under a per-deployment prefix, and the bucket kept to
the newest --keep snapshots (standard library only)."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__:
    from ops import backup_crypto, backup_s3
else:  # beside convex_backup.py (see there)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import backup_crypto
    import backup_s3

KEY_ENV = backup_crypto.KEY_ENV
PARTIAL = ".partial-"  # as backup.PARTIAL: a crashed run's leftovers, removed by the next
# The names a run uploads: its snapshot's, ".enc" when encrypted. Only these are deleted.
REMOTE_NAME = re.compile(r"snapshot-([0-9]{8}T[0-9]{6}Z)\.(zip|env\.json)(\.enc)?")


class OffsiteError(Exception):
    """Bad --s3-*/--encrypt arguments, or a copy that failed; str() says why."""


@dataclass(frozen=True)
class Offsite:
    """Where verified snapshots are copied (--s3-*), encrypted with `key` if it is set;
    `local`: whether the local copy stays once the bucket has it."""

    bucket: "backup_s3.Bucket"
    key: bytes = b""
    local: bool = True


def ship(offsite: Offsite, dest: str, names: list, keep: int) -> str:
    """Upload NAMES (the snapshot first) from DEST, encrypted if asked, then keep the newest
    KEEP snapshots in the bucket (only names this client writes are ever deleted); the
    snapshot's key. A failure raises OffsiteError and leaves the local files."""
    try:
        client = backup_s3.Client(offsite.bucket)
        keys = []
        for name in names:
            path, remote = os.path.join(dest, name), name
            if offsite.key:
                remote = name + backup_crypto.SUFFIX
                sealed = os.path.join(dest, PARTIAL + remote)
                backup_crypto.encrypt(path, sealed, offsite.key)
                path = sealed
            try:
                keys.append(client.put(path, remote))
            finally:
                if path != os.path.join(dest, name):
                    os.unlink(path)
        prune_bucket(client, keep, bool(offsite.bucket.lock_days))
    except (backup_s3.S3Error, backup_crypto.CryptoError, OSError) as error:
        reason = str(error) if not isinstance(error, OSError) else error.__class__.__name__
        raise OffsiteError(reason) from None
    if not offsite.local:
        for name in names:
            Path(dest, name).unlink(missing_ok=True)
    return keys[0]


def prune_bucket(client, keep: int, locked: bool) -> None:
    """Keep the newest KEEP snapshots under the prefix (only names this client writes).
    Under object lock every version is deleted by its id: a delete by name would only add
    a delete marker over a version the bucket keeps; a version still retained is refused,
    stays listed, and a later run deletes it."""
    entries = client.versions() if locked else [(name, "") for name in client.names()]
    ours = [(m[1], name, version) for name, version in entries
            if (m := REMOTE_NAME.fullmatch(name))]
    old = set(sorted({stamp for stamp, _, _ in ours}, reverse=True)[keep:])
    for stamp, name, version in ours:
        if stamp in old:
            try:
                client.delete(name, version)
            except backup_s3.S3Error:
                if not locked:
                    raise


def offsite_of(args) -> Offsite | None:
    if not args.s3_bucket:
        if args.encrypt or args.no_local or args.s3_lock_days:
            raise OffsiteError("--encrypt, --no-local and --s3-lock-days need --s3-bucket")
        return None
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", args.s3_bucket):
        raise OffsiteError("--s3-bucket is not a bucket name")
    if not 0 <= args.s3_lock_days <= 36500:
        raise OffsiteError("--s3-lock-days must be from 0 to 36500")
    try:
        key = backup_crypto.parse_key(os.environ.get(backup_crypto.KEY_ENV, "")) \
            if args.encrypt else b""
        backup_s3.credentials()
    except (backup_crypto.CryptoError, backup_s3.S3Error) as err:
        raise OffsiteError(str(err)) from None
    bucket = backup_s3.Bucket(args.s3_bucket, args.s3_region, args.s3_endpoint,
                              args.s3_path_style, args.s3_prefix, args.s3_lock_days)
    return Offsite(bucket, key, not args.no_local)


def add_offsite_arguments(command) -> None:
    command.add_argument("--s3-bucket", help="also copy each verified snapshot to this bucket "
                                             "(credentials: AWS_ACCESS_KEY_ID, ...)")
    command.add_argument("--s3-endpoint", default="", help="S3-compatible endpoint URL")
    command.add_argument("--s3-region", default="us-east-1")
    command.add_argument("--s3-prefix", default="", help="key prefix (per deployment)")
    command.add_argument("--s3-path-style", action="store_true")
    command.add_argument("--s3-lock-days", type=int, default=0,
                         help="object lock (compliance) retention of each copy, days")
    command.add_argument("--encrypt", action="store_true", help="encrypt the copies with the "
                         f"key in {KEY_ENV} (base64 of 32 bytes)")
    command.add_argument("--no-local", action="store_true",
                         help="remove the local copy once the bucket has it")


def fetch(offsite: Offsite, dest: str) -> str:
    """The newest snapshot under the prefix and its environment file, downloaded into DEST
    and decrypted (with --encrypt's key) under their local names; the zip's path."""
    try:
        client = backup_s3.Client(offsite.bucket)
        ours = [(m[1], n) for n in client.names() if (m := REMOTE_NAME.fullmatch(n))]
        if not ours:
            raise OffsiteError("the bucket holds no snapshot under this prefix")
        newest = max(stamp for stamp, _ in ours)
        for _, name in sorted(item for item in ours if item[0] == newest):
            local = name.removesuffix(backup_crypto.SUFFIX)
            partial = os.path.join(dest, PARTIAL + name)
            client.get(name, partial)
            if name != local:
                if not offsite.key:
                    raise OffsiteError(f"{name} is encrypted: pass --encrypt with its key in "
                                       f"{KEY_ENV}")
                backup_crypto.decrypt(partial, os.path.join(dest, local), offsite.key)
                os.unlink(partial)
            else:
                os.replace(partial, os.path.join(dest, local))
    except (backup_s3.S3Error, backup_crypto.CryptoError) as error:
        raise OffsiteError(f"fetch: {error}") from None
    finally:
        for leftover in Path(dest).glob(PARTIAL + "snapshot-*"):
            leftover.unlink(missing_ok=True)
    return os.path.join(dest, f"snapshot-{newest}.zip")

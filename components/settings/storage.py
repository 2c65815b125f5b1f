"""File storage: local disk in the data volume, or S3 (all five buckets, or none).

Upstream silently falls back to local disk when some S3 variables are missing; a
partial configuration is refused here instead.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Optional

from components import releases
from components.settings.model import S3Settings
from components.settings.network import parse_http_url
from components.settings.reader import Reader

S3_BUCKET_KEYS = {
    "exports": "s3ExportsBucket",
    "snapshot-imports": "s3SnapshotImportsBucket",
    "modules": "s3ModulesBucket",
    "files": "s3FilesBucket",
    "search": "s3SearchBucket",
}
S3_BUCKET_KINDS = tuple(S3_BUCKET_KEYS)
# The longest kind suffix ("-snapshot-imports", 17 characters) must still fit in 63.
MAX_PREFIX_LEN = 63 - len("-snapshot-imports")
_BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION_PATTERN = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_ACCESS_KEY_PATTERN = re.compile(r"[A-Za-z0-9]{3,128}")


def bucket_name_problem(name: str) -> Optional[str]:
    """Why S3 would refuse this bucket name (general purpose buckets), or None."""
    if not _BUCKET_PATTERN.fullmatch(name):
        return ("must be 3 to 63 lowercase letters, digits, dots and dashes, starting and "
                "ending with a letter or digit")
    if ".." in name or ".-" in name or "-." in name:
        return "must not have two dots, or a dot next to a dash, in a row"
    try:
        ipaddress.IPv4Address(name)
        return "must not look like an IP address"
    except ValueError:
        pass
    if name.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or name.endswith(
            ("-s3alias", "--ol-s3", "--x-s3", ".mrap", "--table-s3")):
        return "uses a prefix or suffix S3 reserves"
    return None


def read_s3(reader: Reader, version: str) -> Optional[S3Settings]:
    region = reader.string("s3Region")
    prefix = reader.string("s3BucketPrefix")
    explicit = {kind: reader.string(S3_BUCKET_KEYS[kind]) for kind in S3_BUCKET_KINDS}
    endpoint = reader.string("s3Endpoint").rstrip("/")
    flags = [reader.boolean(k) for k in ("s3ForcePathStyle", "s3DisableSse", "s3DisableChecksums")]
    access_key, secret_key, token = (reader.secret(k) for k in (
        "awsAccessKeyId", "awsSecretAccessKey", "awsSessionToken"))
    any_bucket = bool(prefix) or any(explicit.values())
    if not (region or any_bucket or endpoint or any(flags) or access_key or secret_key or token):
        return None

    if endpoint and parse_http_url(reader, "s3Endpoint", endpoint) is None:
        endpoint = ""
    if region and (len(region) > 32 or not _REGION_PATTERN.fullmatch(region)):
        reader.problem("s3Region", f"{reader.shown('s3Region')} is not a region name; write it "
                                   "like us-east-1 (or auto for R2).")
    buckets = _buckets(reader, prefix, explicit)
    missing = [] if region else ["s3Region"]
    if not prefix:
        missing += [S3_BUCKET_KEYS[k] for k, v in explicit.items() if not v]
    if missing:
        reader.problem("s3Region" if not region else "s3BucketPrefix",
                       "S3 storage is partly configured; missing " + ", ".join(missing)
                       + ". Set s3Region and either s3BucketPrefix or all five bucket keys "
                       "(upstream would silently fall back to local disk).")
    _check_credentials(reader, version, access_key, secret_key, token)
    return S3Settings(region, buckets, endpoint, *flags, access_key, secret_key, token)


def _buckets(reader: Reader, prefix: str, explicit: dict[str, str]) -> dict[str, str]:
    if prefix and any(explicit.values()):
        reader.problem("s3BucketPrefix", "is set together with explicit bucket keys ("
                       + ", ".join(S3_BUCKET_KEYS[k] for k, v in explicit.items() if v)
                       + "); use the prefix alone or all five bucket keys.")
    if prefix:
        derived = {kind: f"{prefix}-{kind}" for kind in S3_BUCKET_KINDS}
        if len(prefix) > MAX_PREFIX_LEN or any(
                bucket_name_problem(name) for name in derived.values()):
            reader.problem("s3BucketPrefix", f"{reader.shown('s3BucketPrefix')} cannot start "
                                             "valid bucket names; use lowercase letters, "
                                             "digits, dots and dashes, at most "
                                             f"{MAX_PREFIX_LEN} characters.")
        return derived
    for kind, name in explicit.items():
        problem = bucket_name_problem(name) if name else None
        if problem:
            key = S3_BUCKET_KEYS[kind]
            reader.problem(key, f"{reader.shown(key)} is not a valid S3 bucket name: it {problem}.")
    if len({v for v in explicit.values() if v}) < len([v for v in explicit.values() if v]):
        reader.problem("s3FilesBucket", "the five buckets must be distinct; upstream keeps "
                                        "each kind of object in a bucket of its own.")
    return explicit


def _check_credentials(reader: Reader, version: str, access_key, secret_key, token) -> None:
    if (access_key is None) != (secret_key is None):
        reader.problem("awsSecretAccessKey" if secret_key is None else "awsAccessKeyId",
                       "awsAccessKeyId and awsSecretAccessKey go together; set both, or "
                       "neither to use the host's IAM role.")
    if token is not None and access_key is None:
        reader.problem("awsSessionToken", "is a temporary credential's third part; set "
                                          "awsAccessKeyId and awsSecretAccessKey with it.")
    if access_key is not None and not _ACCESS_KEY_PATTERN.fullmatch(access_key.reveal()):
        reader.problem("awsAccessKeyId", "is not an access key id (letters and digits only).")
    if access_key is None and secret_key is None and releases.s3_needs_keys(version):
        reader.problem("awsAccessKeyId", "is required by this version: releases before "
                                         f"{releases.S3_WITHOUT_KEYS_SINCE[:7]} use S3 only "
                                         "when both AWS keys are set, and otherwise store "
                                         "files on local disk. Set awsAccessKeyId and "
                                         "awsSecretAccessKey, or upgrade `version`.")

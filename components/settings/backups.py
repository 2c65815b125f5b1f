"""Scheduled backups: a cron expression, how many snapshots to keep, the runner's image, and
the off-host copies (bucket, credentials, object lock, client-side encryption)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import urllib.parse
from typing import Optional

from components.settings.model import BackupSettings
from components.settings.reader import Reader
from ops.backup_cron import CronError, parse_cron

MAX_KEEP = 1000
OFFSITE_KEYS = ("backupS3Bucket", "backupS3Endpoint", "backupS3Region", "backupS3Prefix",
                "backupS3ForcePathStyle", "backupS3AccessKeyId", "backupS3SecretAccessKey",
                "backupS3LockDays", "backupEncryptionKey", "backupLocal")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[a-z0-9-]{1,32}")
_PREFIX = re.compile(r"[A-Za-z0-9!_.*'()/-]{0,200}")


def read_backups(reader: Reader) -> Optional[BackupSettings]:
    schedule = " ".join(reader.string("backupSchedule").split())
    keep = reader.integer("backupKeep", 1, MAX_KEEP)
    if not schedule:
        for name in ("backupKeep", "backupImage") + OFFSITE_KEYS:
            if reader.differs_from_default(name):
                reader.problem(name, "is set but backupSchedule is empty; set a schedule "
                                     "(e.g. \"0 3 * * *\" for 03:00 UTC daily) or remove it.")
        return None
    try:
        parse_cron(schedule)
    except CronError as error:
        # The parser's detail quotes the offending field: not for a secret schedule.
        detail = "" if reader.is_secret("backupSchedule") else f": {error}"
        reader.problem("backupSchedule", f"{reader.shown('backupSchedule')} is not a 5-field "
                                         f"cron expression{detail}. Write it like "
                                         "\"0 3 * * *\" (03:00 UTC daily).")
    image = reader.image("backupImage")
    return _read_offsite(reader, BackupSettings(schedule, keep or 7, image))


def _read_offsite(reader: Reader, backups: BackupSettings) -> BackupSettings:
    bucket = reader.string("backupS3Bucket")
    if not bucket:
        for name in OFFSITE_KEYS[1:]:
            if reader.differs_from_default(name):
                reader.problem(name, "is set but backupS3Bucket is empty; set the bucket the "
                                     "copies go to, or remove it.")
        return backups
    if not _BUCKET.fullmatch(bucket):
        reader.problem("backupS3Bucket", f"{reader.shown('backupS3Bucket')} is not a bucket "
                                         "name (3-63 lowercase letters, digits, dots, dashes).")
    endpoint = reader.string("backupS3Endpoint").rstrip("/")
    parts = urllib.parse.urlsplit(endpoint)
    if endpoint and (parts.scheme not in ("http", "https") or not parts.hostname
                     or parts.username or parts.query or parts.path):
        reader.problem("backupS3Endpoint", f"{reader.shown('backupS3Endpoint')} is not an "
                                           "http(s) URL without a path or credentials, e.g. "
                                           "https://<account>.r2.cloudflarestorage.com.")
    region = reader.string("backupS3Region")
    if not _REGION.fullmatch(region):
        reader.problem("backupS3Region", f"{reader.shown('backupS3Region')} is not a region "
                                         "name such as eu-central-1 (R2: auto).")
    prefix = reader.string("backupS3Prefix").strip("/")
    if not _PREFIX.fullmatch(prefix) or "//" in prefix or ".." in prefix.split("/"):
        reader.problem("backupS3Prefix", f"{reader.shown('backupS3Prefix')} is not a key "
                                         "prefix (letters, digits, /!_.*'()- and no empty or "
                                         ".. parts).")
    access = reader.secret("backupS3AccessKeyId")
    secret = reader.secret("backupS3SecretAccessKey")
    if (access is None) != (secret is None):
        reader.problem("backupS3AccessKeyId", "and backupS3SecretAccessKey go together: set "
                                              "both with --secret, or neither (the backup "
                                              "client then uses the machine's role: a "
                                              "container role, or the instance's via IMDSv2).")
    lock_days = reader.integer("backupS3LockDays", 0, 36500, "days")
    key = reader.secret("backupEncryptionKey")
    if key is not None:
        try:
            valid = len(base64.b64decode(key.reveal(), validate=True)) == 32
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            reader.problem("backupEncryptionKey", "is not 32 bytes in base64; make one with "
                                                  "`openssl rand -base64 32` and keep a copy "
                                                  "outside this stack.")
    return dataclasses.replace(
        backups, s3_bucket=bucket, s3_endpoint=endpoint, s3_region=region, s3_prefix=prefix,
        s3_path_style=reader.boolean("backupS3ForcePathStyle"), s3_access_key_id=access,
        s3_secret_access_key=secret, lock_days=lock_days or 0, encryption_key=key,
        local=reader.boolean("backupLocal"))

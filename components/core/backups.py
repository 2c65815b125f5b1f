"""The backup client as every target installs it: ops/backup.py under the name it runs as
(convex_backup.py), with the modules it imports beside it (standard library only)."""

from __future__ import annotations

from pathlib import Path

from components.settings.model import BackupSettings
from ops.backup_crypto import KEY_ENV as ENCRYPTION_KEY_ENV

OPS = Path(__file__).resolve().parents[2] / "ops"
ENTRY = "convex_backup.py"
MODULES = ("backup_cron.py", "backup_verify.py", "backup_offsite.py", "backup_crypto.py",
           "backup_s3.py", "backup_drill.py", "backup_credentials.py")


def client_files() -> dict[str, str]:
    """File name -> text, for one directory: the entry point first."""
    return {ENTRY: (OPS / "backup.py").read_text(),
            **{name: (OPS / name).read_text() for name in MODULES}}


def offsite_arguments(backups: BackupSettings, instance: str) -> list[str]:
    """The backup client's flags for off-host copies (none without a bucket): every
    deployment writes under <backupS3Prefix>/<instance>/."""
    if not backups.s3_bucket:
        return []
    prefix = "/".join(part for part in (backups.s3_prefix, instance) if part)
    flags = ["--s3-bucket", backups.s3_bucket, "--s3-region", backups.s3_region,
             "--s3-prefix", prefix]
    if backups.s3_endpoint:
        flags += ["--s3-endpoint", backups.s3_endpoint]
    if backups.s3_path_style:
        flags.append("--s3-path-style")
    if backups.lock_days:
        flags += ["--s3-lock-days", str(backups.lock_days)]
    if backups.encryption_key is not None:
        flags.append("--encrypt")
    if not backups.local:
        flags.append("--no-local")
    return flags


def offsite_secrets(backups: BackupSettings) -> dict[str, str]:
    """The environment the client reads its credentials and key from (all secret): never
    on its command line."""
    found = {"AWS_ACCESS_KEY_ID": backups.s3_access_key_id,
             "AWS_SECRET_ACCESS_KEY": backups.s3_secret_access_key,
             ENCRYPTION_KEY_ENV: backups.encryption_key}
    return {name: value.reveal() for name, value in found.items()
            if value is not None and backups.s3_bucket}

"""The backup client as every target installs it: ops/backup.py under the name it runs as
(convex_backup.py), with the modules it imports beside it (standard library only)."""

from __future__ import annotations

from pathlib import Path

OPS = Path(__file__).resolve().parents[2] / "ops"
ENTRY = "convex_backup.py"
MODULES = ("backup_cron.py", "backup_verify.py")


def client_files() -> dict[str, str]:
    """File name -> text, for one directory: the entry point first."""
    return {ENTRY: (OPS / "backup.py").read_text(),
            **{name: (OPS / name).read_text() for name in MODULES}}

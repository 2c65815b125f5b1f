"""Scheduled backups: a cron expression, how many snapshots to keep, the runner's image."""

from __future__ import annotations

from typing import Optional

from components.settings.model import BackupSettings
from components.settings.reader import Reader
from ops.backup import CronError, parse_cron

MAX_KEEP = 1000


def read_backups(reader: Reader) -> Optional[BackupSettings]:
    schedule = " ".join(reader.string("backupSchedule").split())
    keep = reader.integer("backupKeep", 1, MAX_KEEP)
    if not schedule:
        for name in ("backupKeep", "backupImage"):
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
    return BackupSettings(schedule, keep or 7, image)

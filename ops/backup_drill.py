"""The restore drill's client half (standard library only): `convex_backup.py drill`.

Given a throwaway backend that nothing else uses (its URL, and its admin key in the
environment as for `restore`), it picks a snapshot (--file; else the newest verified one in
--dest; else the newest off-host copy, fetched and decrypted), checks it and its run record,
imports it as `restore` does, exports it again and compares the tables, documents and
stored files. Every target starts the throwaway backend its own way (ops/drill.py) and runs
this beside it: on the operator's machine (Docker), on the host (systemd), in a Job's pod
(Kubernetes). One line tells the result:
  convex-backup drill ok file=... tables=N documents=N files=N
  convex-backup drill failed file=... reason="..."
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

if __package__:
    from ops.backup_offsite import OffsiteError, fetch
    from ops.backup_verify import VerifyError, verify
else:  # beside convex_backup.py (see there)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from backup_offsite import OffsiteError, fetch
    from backup_verify import VerifyError, verify

LAST_RUN = ".last-run.json"  # as backup.LAST_RUN: the record a run writes beside its snapshot
SNAPSHOT_NAME = re.compile(r"snapshot-([0-9]{8}T[0-9]{6}Z)\.zip")  # as backup.SNAPSHOT_NAME
RESULT = "convex-backup drill"  # the start of the line that tells the result
COUNTS = ("tables", "documents", "files")


class DrillFailed(Exception):
    """The drill failed; str() says where (never a key)."""


def add_drill_parser(sub, add_offsite_arguments: Callable) -> None:
    drill = sub.add_parser("drill", help="import a snapshot into a throwaway backend, export "
                           "it again and compare the counts")
    drill.add_argument("--url", required=True,
                       help="the THROWAWAY backend's URL: the drill replaces all its data")
    drill.add_argument("--file", help="the snapshot zip (default: the newest in --dest)")
    drill.add_argument("--dest", help="a backup directory: its newest verified snapshot")
    drill.add_argument("--wait", type=float, default=300.0,
                       help="seconds to wait for the backend to answer /version")
    drill.add_argument("--timeout", type=float, default=3600.0,
                       help="seconds for the import and for the export")
    add_offsite_arguments(drill)


def newest_snapshot(dest: str) -> Path:
    """The newest snapshot a run wrote in DEST (only names a run writes; no symlinks)."""
    try:
        with os.scandir(dest) as entries:
            names = sorted(entry.name for entry in entries
                           if SNAPSHOT_NAME.fullmatch(entry.name)
                           and entry.is_file(follow_symlinks=False))
    except OSError as error:
        raise DrillFailed(f"cannot read --dest {dest} ({error.__class__.__name__})") from None
    if not names:
        raise DrillFailed(f"--dest {dest} holds no snapshot")
    return Path(dest, names[-1])


def expected_counts(snapshot: Path) -> dict:
    """What the snapshot holds (verified), checked against the run record beside it when
    that record names it."""
    try:
        counts = verify(str(snapshot)).record()
    except VerifyError as error:
        raise DrillFailed(f"the snapshot failed verification: {error}") from None
    counts = {name: counts[name] for name in COUNTS}
    record_path = snapshot.parent / LAST_RUN
    try:
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    except (OSError, ValueError):
        record = {}
    if isinstance(record, dict) and record.get("file") == snapshot.name:
        recorded = {name: record.get(name) for name in COUNTS}
        if recorded != counts:
            raise DrillFailed(f"the snapshot holds {counts}, its run record says {recorded}")
    return counts


def wait_until_up(url: str, timeout: float, sleep=time.sleep) -> None:
    """Until URL/version answers 200, at most TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while True:
        try:
            with opener.open(f"{url}/version", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise DrillFailed(f"the drill backend did not answer {url}/version within "
                              f"{timeout:g}s")
        sleep(1)


def run_drill(snapshot: Path, import_snapshot: Callable[[Path], int],
              export_counts: Callable[[], dict], say: Callable[[str], None],
              ready: Callable[[], None] = lambda: None, expected: dict | None = None) -> dict:
    """Check SNAPSHOT (unless its EXPECTED counts are known), wait until the backend is
    READY, import, export again, compare; the counts."""
    expected = expected or expected_counts(snapshot)
    ready()
    written = import_snapshot(snapshot)
    say(f"drill: imported {written} document(s) from {snapshot.name}; exporting again "
        "to compare")
    exported = export_counts()
    got = {name: exported.get(name) for name in COUNTS}
    if got != expected:
        raise DrillFailed(f"the drill backend holds {got} after the import, the snapshot "
                          f"{expected}")
    return expected


def result_line(snapshot, counts: dict | None, reason: str = "") -> str:
    if counts is None:
        return f"{RESULT} failed file={snapshot} reason={json.dumps(reason)}"
    return (f"{RESULT} ok file={snapshot} "
            + " ".join(f"{name}={counts[name]}" for name in COUNTS))


def parse_result(text: str) -> tuple[bool, str] | None:
    """The last result line in TEXT (a log): (ok, the line); None when there is none."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(RESULT)]
    if not lines:
        return None
    return lines[-1].startswith(f"{RESULT} ok "), lines[-1]


def result_counts(status: int, output: str, where: str) -> dict:
    """The counts of the result line in OUTPUT (a drill's log, ending with exit STATUS),
    or DrillFailed naming WHERE it ran."""
    found = parse_result(output)
    if found is None:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        raise DrillFailed(f"{where} ended (status {status}) without a result line: "
                          f"{lines[-1][:300] if lines else 'no output'}")
    ok, line = found
    if not ok or status != 0:
        raise DrillFailed(f"{where}: {line}")
    counts = dict(part.split("=", 1) for part in line.split() if "=" in part)
    return {name: int(counts[name]) if counts.get(name, "").isdigit() else -1
            for name in COUNTS}


# The two functions below take the client's entry module B (ops.backup, or convex_backup.py
# run as a script, which is __main__ there and cannot be imported by name): its Client,
# Restore and run_once do the import and the export.

def drill_backend(b, url: str, key: str, snapshot: Path, timeout: float, say=print,
                  wait: float = 0.0, expected: dict | None = None) -> dict:
    """The drill against a throwaway backend at URL, up within WAIT seconds."""
    def import_snapshot(path: Path) -> int:
        client = b.Client(url, key, run_timeout=timeout)
        try:
            return b.Restore(client, str(path), 1.0, say, lambda _summary: True).run() or 0
        finally:
            client.close()

    def export_counts() -> dict:
        with tempfile.TemporaryDirectory(prefix="convex-drill-") as again:
            if not b.run_once(url, key, again, 1, timeout, 1.0):
                raise DrillFailed("the export of the drill backend failed (the line above)")
            return json.loads(Path(again, LAST_RUN).read_text())
    try:
        return run_drill(snapshot, import_snapshot, export_counts, say,
                         lambda: wait_until_up(url, wait) if wait else None, expected)
    except b.BackupError as error:
        raise DrillFailed(f"the import failed: {b.redact(str(error), key)}") from None
    except OSError as error:
        raise DrillFailed(f"cannot read the snapshot ({error.__class__.__name__})") from None


def cmd_drill(args, key: str, b) -> int:
    """`drill`: the snapshot (--file, the newest in --dest, or fetched) into --url."""
    snapshot = args.file or ""
    try:
        with tempfile.TemporaryDirectory(prefix="convex-drill-") as fetched:
            if not snapshot:
                snapshot = str(newest_snapshot(args.dest) if args.dest else
                               fetch(args.offsite, fetched))
            counts = drill_backend(b, args.url, key, Path(snapshot), args.timeout,
                                   wait=args.wait)
    except (DrillFailed, OffsiteError) as error:
        print(result_line(snapshot, None, b.redact(str(error), key)), flush=True)
        return 1
    print(result_line(snapshot, counts), flush=True)
    return 0

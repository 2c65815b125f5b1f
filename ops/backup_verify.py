"""Check a snapshot zip before it counts as a backup (standard library only).

The layout is upstream's export (crates/exports/src/lib.rs, zip_uploader.rs,
export_storage.rs): README.md at the top; per table `<prefix><table>/documents.jsonl` (one
JSON object per line) and `<prefix><table>/generated_schema.jsonl`; file storage as
`<prefix>_storage/documents.jsonl` (one entry per file: `_id`, `sha256` (base64 of the
SHA-256), `size`, `contentType`, ...) beside the files themselves, `<prefix>_storage/<_id>`
plus an extension guessed from the content type. `<prefix>` is empty for the app and
`_components/<name>/` (repeated for nested components) for a component.

verify() reads every entry once (CRC checked), parses every document line, and checks
every stored file against its entry (present, size, SHA-256) and every file against an
entry. It returns the counts a run records; VerifyError names the first problem.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from dataclasses import dataclass, field

CHUNK = 1 << 20
DOCUMENTS, SCHEMA, STORAGE = "documents.jsonl", "generated_schema.jsonl", "_storage"
MAX_LINE = 64 << 20  # one document line; upstream's documents are at most 1 MiB


class VerifyError(Exception):
    """The snapshot is not a usable export; str() says where and why."""


@dataclass
class Counts:
    """The app's tables (system tables such as _tables are checked, not counted), their
    documents, and the stored files."""

    tables: int = 0
    documents: int = 0
    files: int = 0
    per_table: dict = field(default_factory=dict)  # "<prefix><table>" -> documents

    def record(self) -> dict:
        return {"tables": self.tables, "documents": self.documents, "files": self.files}


def _lines(archive: zipfile.ZipFile, name: str):
    with archive.open(name) as entry:
        for number, line in enumerate(iter(lambda: entry.readline(MAX_LINE + 1), b""), 1):
            if len(line) > MAX_LINE:
                raise VerifyError(f"{name}: line {number} is longer than {MAX_LINE} bytes")
            if line.strip():
                yield number, line


def _documents(archive: zipfile.ZipFile, name: str, keep: bool) -> tuple[int, list[dict]]:
    """How many documents NAME holds, each a JSON object; the documents themselves if KEEP
    (the _storage entries: the app's tables can be large)."""
    count, kept = 0, []
    for number, line in _lines(archive, name):
        try:
            value = json.loads(line)
        except ValueError:
            raise VerifyError(f"{name}: line {number} is not JSON") from None
        if not isinstance(value, dict):
            raise VerifyError(f"{name}: line {number} is not a JSON object")
        count += 1
        if keep:
            kept.append(value)
    return count, kept


def _digest(archive: zipfile.ZipFile, name: str) -> tuple[int, str]:
    sha, size = hashlib.sha256(), 0
    with archive.open(name) as entry:  # reading to the end checks the CRC
        while chunk := entry.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, base64.b64encode(sha.digest()).decode()


def _check_storage(archive: zipfile.ZipFile, prefix: str, entries: list[dict],
                   names: set[str]) -> int:
    """The files of one _storage directory against its entries; how many there are."""
    directory = f"{prefix}{STORAGE}/"
    blobs = {n[len(directory):]: n for n in names if n.startswith(directory)
             and "/" not in n[len(directory):] and n != directory + DOCUMENTS}
    matched = set()
    for entry in entries:
        file_id = entry.get("_id")
        if not isinstance(file_id, str) or not file_id:
            raise VerifyError(f"{directory}{DOCUMENTS}: an entry has no _id")
        candidates = [b for b in blobs if b == file_id or b.startswith(file_id + ".")]
        if len(candidates) != 1:
            raise VerifyError(f"{directory}: file {file_id} is "
                              f"{'missing' if not candidates else 'there more than once'}")
        size, sha = _digest(archive, blobs[candidates[0]])
        if isinstance(entry.get("size"), int) and entry["size"] != size:
            raise VerifyError(f"{directory}{candidates[0]}: {size} bytes, its entry says "
                              f"{entry['size']}")
        if isinstance(entry.get("sha256"), str) and entry["sha256"] != sha:
            raise VerifyError(f"{directory}{candidates[0]}: its SHA-256 does not match its "
                              "entry")
        matched.add(candidates[0])
    stray = sorted(set(blobs) - matched)
    if stray:
        raise VerifyError(f"{directory}{stray[0]}: a stored file without an entry in "
                          f"{DOCUMENTS}")
    return len(entries)


def verify(path: str) -> Counts:
    """Check the snapshot at PATH (see the module docstring); its counts."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise VerifyError(f"not a readable zip ({error.__class__.__name__})") from None
    counts = Counts()
    with archive:
        names = {info.filename for info in archive.infolist()}
        if "README.md" not in names:
            raise VerifyError("no README.md: not a Convex export")
        try:
            for name in sorted(names):
                if not name.endswith("/" + DOCUMENTS):
                    continue
                table = name[:-len("/" + DOCUMENTS)]
                storage = table.rsplit("/", 1)[-1] == STORAGE
                count, entries = _documents(archive, name, keep=storage)
                if storage:
                    counts.files += _check_storage(archive, table[:-len(STORAGE)], entries,
                                                   names)
                else:
                    counts.per_table[table] = count
                    if not table.rsplit("/", 1)[-1].startswith("_"):  # not _tables & co.
                        counts.tables += 1
                        counts.documents += count
            for name in sorted(names):  # the CRC of everything else too
                if not name.endswith("/") and f"{STORAGE}/" not in name:
                    _digest(archive, name)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            raise VerifyError(f"a damaged entry ({error.__class__.__name__}: "
                              f"{str(error)[:120]})") from None
    return counts

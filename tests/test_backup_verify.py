"""ops/backup_verify.py: snapshot zips as upstream's export writes them, and damaged ones."""

import base64
import hashlib
import io
import json
import zipfile

import pytest

from ops.backup_verify import VerifyError, verify

BLOB = b"\x89PNG not really"


def storage_entry(file_id="kg2abc", data=BLOB, **extra):
    return {"_id": file_id, "_creationTime": 1.7e12, "size": len(data),
            "sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
            "contentType": "image/png", **extra}


def snapshot(tmp_path, files=None, drop=(), name="s.zip"):
    """An export like upstream's: two tables, file storage, a component."""
    content = {
        "README.md": b"# Welcome to your Convex snapshot export!\n",
        "messages/documents.jsonl": b'{"_id":"a","body":"hi"}\n{"_id":"b","body":"yo"}\n',
        "messages/generated_schema.jsonl": b'"uniform"\n',
        "users/documents.jsonl": b'{"_id":"u"}\n',
        "_tables/documents.jsonl": b'{"name":"messages","id":10001}\n{"name":"users","id":1}\n',
        "_storage/documents.jsonl": (json.dumps(storage_entry()) + "\n").encode(),
        "_storage/kg2abc.png": BLOB,
        "_components/waitlist/entries/documents.jsonl": b'{"_id":"w"}\n',
    }
    content.update(files or {})
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry, data in content.items():
            if entry not in drop:
                archive.writestr(entry, data)
    return path


def test_an_export_is_counted(tmp_path):
    counts = verify(str(snapshot(tmp_path)))
    assert counts.record() == {"tables": 3, "documents": 4, "files": 1}
    assert counts.per_table == {"messages": 2, "users": 1, "_components/waitlist/entries": 1,
                                "_tables": 2}


def test_an_empty_deployment_is_a_valid_snapshot(tmp_path):
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README.md", "# Welcome")
    assert verify(str(path)).record() == {"tables": 0, "documents": 0, "files": 0}


@pytest.mark.parametrize("files, drop, problem", [
    ({"messages/documents.jsonl": b'{"_id":"a"}\nnot json\n'}, (),
     "messages/documents.jsonl: line 2 is not JSON"),
    ({"users/documents.jsonl": b'[1, 2]\n'}, (), "users/documents.jsonl: line 1 is not a JSON "
                                                  "object"),
    ({}, ("_storage/kg2abc.png",), "_storage/: file kg2abc is missing"),
    ({"_storage/kg2abc.png": b"other bytes"}, (), "_storage/kg2abc.png: 11 bytes, its entry "
                                                  "says 15"),
    ({"_storage/kg2abc.png": b"\x89PNG not REALLY"}, (), "_storage/kg2abc.png: its SHA-256 "
                                                         "does not match its entry"),
    ({"_storage/stray.bin": b"x"}, (), "_storage/stray.bin: a stored file without an entry"),
    ({"_storage/documents.jsonl": b'{"size": 1}\n'}, (), "_storage/documents.jsonl: an entry "
                                                         "has no _id"),
    ({}, ("README.md",), "no README.md: not a Convex export"),
])
def test_a_damaged_snapshot_names_its_problem(tmp_path, files, drop, problem):
    with pytest.raises(VerifyError) as failed:
        verify(str(snapshot(tmp_path, files, drop)))
    assert str(failed.value).startswith(problem)


def test_a_corrupted_or_truncated_zip_is_refused(tmp_path):
    path = snapshot(tmp_path)
    data = bytearray(path.read_bytes())
    start = data.index(b"PK\x03\x04", 10)  # the second entry's compressed bytes
    data[start + 60] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(VerifyError, match="damaged entry|not JSON|not a readable zip"):
        verify(str(path))
    path.write_bytes(snapshot(tmp_path, name="t.zip").read_bytes()[:200])
    with pytest.raises(VerifyError, match="not a readable zip"):
        verify(str(path))
    (tmp_path / "x.zip").write_bytes(io.BytesIO(b"plain text").getvalue())
    with pytest.raises(VerifyError, match="not a readable zip"):
        verify(str(tmp_path / "x.zip"))

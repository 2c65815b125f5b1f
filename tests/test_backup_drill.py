"""The client's `drill` (ops/backup_drill.py with ops/backup.py): run as the lone script the
targets install, against in-process backend stand-ins on loopback, one the deployment
backed up and one throwaway backend the drill imports into."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from fake_convex_export import snapshot_zip
from test_restore_standin import Deployment, seed_zip

from components.core.backups import client_files
from ops import backup, backup_drill


@pytest.fixture
def lone(tmp_path):
    where = tmp_path / "client"
    where.mkdir()
    for name, text in client_files().items():  # as uploaded beside a deployment
        (where / name).write_text(text)
    return where / "convex_backup.py"


@pytest.fixture
def started(tmp_path):
    made = []

    def start(name):
        made.append(Deployment(name, tmp_path / name))
        return made[-1]
    yield start
    for each in made:
        each.close()


def client(lone: Path, key: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(lone), *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", backup.KEY_ENV: key}, timeout=120,
                          cwd=lone.parent)


def backed_up(started, lone, tmp_path) -> Path:
    """A deployment seeded with 32 documents in 2 tables, backed up twice into backups/."""
    prod = started("convex-prod")
    seeded = client(lone, prod.key, "restore", "--url", prod.url, "--file",
                    str(seed_zip(tmp_path / "seed.zip")), "--yes", "--poll-interval", "0.05")
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    for _ in range(2):
        done = client(lone, prod.key, "once", "--url", prod.url, "--dest",
                      str(tmp_path / "backups"), "--keep", "3", "--poll-interval", "0.05")
        assert done.returncode == 0, done.stdout + done.stderr
    return tmp_path / "backups"


def test_the_newest_snapshot_of_a_backup_directory_is_imported_and_compared(
        started, lone, tmp_path):
    dest = backed_up(started, lone, tmp_path)
    newest = sorted(dest.glob("snapshot-*.zip"))[-1]
    (dest / "snapshot-99991231T235959Z.zip").symlink_to(newest)  # not a run's file: skipped
    throwaway = started("convex-drill-1a2b")
    done = client(lone, throwaway.key, "drill", "--url", throwaway.url, "--dest", str(dest),
                  "--wait", "10")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == (
        f"convex-backup drill ok file={newest} tables=2 documents=32 files=0")
    assert throwaway.key not in done.stdout + done.stderr
    assert set(throwaway.tables()) == {"messages", "users"}
    assert backup_drill.parse_result(done.stdout)[0] is True


def test_a_snapshot_whose_run_record_disagrees_fails_before_anything_is_sent(
        started, lone, tmp_path):
    dest = backed_up(started, lone, tmp_path)
    record = json.loads((dest / ".last-run.json").read_text())
    record["documents"] += 1
    (dest / ".last-run.json").write_text(json.dumps(record))
    throwaway = started("convex-drill-1a2b")
    done = client(lone, throwaway.key, "drill", "--url", throwaway.url, "--dest", str(dest))
    assert done.returncode == 1
    assert "its run record says" in done.stdout.splitlines()[-1]
    assert throwaway.tables() == {}


def test_a_deployment_that_loses_data_on_import_fails_the_drill(started, lone, tmp_path):
    """The stand-in keeps tables, not stored files: the comparison catches the loss."""
    path = tmp_path / "snapshot-20261201T030000Z.zip"
    path.write_bytes(snapshot_zip())
    throwaway = started("convex-drill-1a2b")
    done = client(lone, throwaway.key, "drill", "--url", throwaway.url, "--file", str(path))
    assert done.returncode == 1
    ok, line = backup_drill.parse_result(done.stdout)
    assert not ok and "'files': 0} after the import, the snapshot" in line


def test_a_wrong_key_is_a_failed_drill_that_never_prints_it(started, lone, tmp_path):
    dest = backed_up(started, lone, tmp_path)
    throwaway = started("convex-drill-1a2b")
    wrong = started("convex-other").key
    done = client(lone, wrong, "drill", "--url", throwaway.url, "--dest", str(dest))
    assert done.returncode == 1 and "drill failed" in done.stdout
    assert wrong not in done.stdout + done.stderr


def test_usage_errors_and_an_empty_directory(lone, tmp_path):
    assert client(lone, "k", "drill", "--url", "http://127.0.0.1:9").returncode == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    done = client(lone, "k", "drill", "--url", "http://127.0.0.1:9", "--dest", str(empty),
                  "--wait", "1")
    assert done.returncode == 1 and "holds no snapshot" in done.stdout
    assert client(lone, "k", "drill", "--url", "ftp://x", "--dest", str(empty)).returncode == 2
    assert client(lone, "k", "drill", "--url", "http://127.0.0.1:9", "--dest", str(empty),
                  "--wait", "0").returncode == 2


def test_a_backend_that_never_answers_is_a_bounded_wait(lone, tmp_path):
    path = tmp_path / "snapshot-20261201T030000Z.zip"
    path.write_bytes(snapshot_zip())
    done = client(lone, "k", "drill", "--url", "http://127.0.0.1:9", "--file", str(path),
                  "--wait", "1")
    assert done.returncode == 1 and "did not answer http://127.0.0.1:9/version within 1s" \
        in done.stdout


def test_result_lines_parse_back():
    line = backup_drill.result_line("s.zip", {"tables": 1, "documents": 2, "files": 3})
    assert backup_drill.parse_result(f"noise\n{line}\n") == (True, line)
    failed = backup_drill.result_line("s.zip", None, 'a "quoted" reason')
    assert backup_drill.parse_result(f"{line}\n{failed}") == (False, failed)
    assert backup_drill.parse_result("nothing here") is None


def test_counts_come_from_the_snapshot(tmp_path):
    path = tmp_path / "snapshot-20261201T030000Z.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README.md", "# export\n")
        archive.writestr("t/documents.jsonl", '{"_id": "a"}\n' * 3)
    assert backup_drill.expected_counts(path) == {"tables": 1, "documents": 3, "files": 0}
    (tmp_path / "bad.zip").write_text("not a zip")
    with pytest.raises(backup_drill.DrillFailed, match="failed verification"):
        backup_drill.expected_counts(tmp_path / "bad.zip")

"""components/backup.py against hostile backends and a hostile --dest (audit "Hardening II"):
each test reproduces one finding on loopback or with planted files."""

import json
import zipfile
from pathlib import Path

import pytest
from fake_convex_export import FakeConvex

from components import backup

KEY = "convex-self-hosted|" + "5ec2e7" * 10


@pytest.fixture(autouse=True)
def admin_key(monkeypatch):
    monkeypatch.setenv(backup.KEY_ENV, KEY)


def once(url, dest, *extra, keep=1, timeout=5.0):
    return backup.main(["once", "--url", url, "--dest", str(dest), "--keep", str(keep),
                        "--timeout", str(timeout), "--poll-interval", "0.01", *extra])


def old_snapshot(dest: Path, day: int) -> str:
    name = f"snapshot-202001{day:02d}T030000Z.zip"
    with zipfile.ZipFile(dest / name, "w") as archive:
        archive.writestr("README.md", name)
    return name


def record(dest: Path) -> dict:
    return json.loads((dest / ".last-run.json").read_text())


# ---- prune touches only what it wrote --------------------------------------------------------

def test_prune_leaves_files_it_did_not_write_and_does_not_count_them(tmp_path, capsys):
    mine = [old_snapshot(tmp_path, day) for day in (1, 2, 3)]
    foreign = ["snapshot-before-migration.zip", "snapshot-2020.zip",
               "snapshot-20200101T030000Z.zip.bak", "Snapshot-20200104T030000Z.zip",
               "snapshot-20200105T030000Z.ZIP"]
    for name in foreign:
        (tmp_path / name).write_bytes(b"kept by hand")
    with FakeConvex(KEY) as fake:
        assert once(fake.url, tmp_path, keep=2) == 0
    assert "kept=2 " in capsys.readouterr().out
    left = sorted(p.name for p in tmp_path.iterdir())
    assert set(foreign) <= set(left) and mine[-1] in left
    assert not {mine[0], mine[1]} & set(left)
    for name in foreign:
        assert (tmp_path / name).read_bytes() == b"kept by hand"


def test_symlinks_with_a_snapshot_name_are_neither_counted_nor_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "precious.zip"
    target.write_bytes(b"not a backup")
    dest = tmp_path / "dest"
    dest.mkdir()
    mine = old_snapshot(dest, 2)
    (dest / "snapshot-20200101T030000Z.zip").symlink_to(target)  # sorts first: pruned first
    (dest / ".partial-snapshot-20200101T030000Z.zip").symlink_to(target)
    assert backup.prune(str(dest), 1, "snapshot-20260101T000000Z.zip") == 1
    assert target.read_bytes() == b"not a backup"
    assert (dest / "snapshot-20200101T030000Z.zip").is_symlink() and (dest / mine).exists()
    with FakeConvex(KEY) as fake:
        assert once(fake.url, dest, keep=1) == 0
    assert target.read_bytes() == b"not a backup"
    assert (dest / "snapshot-20200101T030000Z.zip").is_symlink()
    assert (dest / ".partial-snapshot-20200101T030000Z.zip").is_symlink()
    assert not (dest / mine).exists()  # a real, older snapshot of ours: pruned


@pytest.mark.parametrize("planted", ["snapshot-20200101T030000Z.zip",
                                     ".partial-snapshot-20200101T030000Z.zip", ".partial-x"])
def test_a_directory_with_a_snapshot_or_partial_name_never_fails_a_run(tmp_path, capsys, planted):
    (tmp_path / planted).mkdir()
    (tmp_path / planted / "inside").write_text("x")
    with FakeConvex(KEY) as fake:
        assert once(fake.url, tmp_path, keep=1) == 0
        assert once(fake.url, tmp_path, keep=1) == 0
    assert (tmp_path / planted / "inside").read_text() == "x"
    assert record(tmp_path)["ok"] is True
    assert "IsADirectoryError" not in capsys.readouterr().out


def test_partial_files_of_other_names_are_left_alone(tmp_path):
    (tmp_path / ".partial-notes.txt").write_text("mine")
    (tmp_path / ".partial-snapshot-20200101T030000Z.zip").write_bytes(b"crashed run")
    with FakeConvex(KEY) as fake:
        assert once(fake.url, tmp_path) == 0
    assert (tmp_path / ".partial-notes.txt").read_text() == "mine"
    assert not (tmp_path / ".partial-snapshot-20200101T030000Z.zip").exists()

"""Off-host copies against SeaweedFS (opt-in: it needs a `weed` binary built from the Go
module proxy, see docs/contributing.md), a real S3-compatible server started by the test
on loopback with credentials of its own:

    CONVEX_SELFHOST_WEED=/path/to/weed ./test.sh tests/test_backup_seaweedfs.py

The backup client runs as the lone script the targets install: an encrypted run copies a
verified snapshot to the bucket and keeps the newest --keep there; under object lock
(COMPLIANCE) each copy is retained and a delete of a retained version is refused, so the
bucket keeps it; `fetch` brings the newest copy back decrypted and verified; `drill`
imports the bucket's newest copy into a throwaway backend.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from test_restore_standin import Deployment, seed_zip

from components.core.backups import client_files
from ops import backup, backup_drill

ACCESS, SECRET = "convexbackup", "convex-backup-secret-0123456789"
ENCRYPTION_KEY = base64.b64encode(bytes(range(32))).decode()


def weed_binary() -> str:
    return os.environ.get("CONVEX_SELFHOST_WEED", "") or shutil.which("weed") or ""


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for each in sockets:
            each.bind(("127.0.0.1", 0))
        return [each.getsockname()[1] for each in sockets]
    finally:
        for each in sockets:
            each.close()


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory):
    weed = weed_binary()
    if not weed or not os.access(weed, os.X_OK):
        pytest.skip("needs a SeaweedFS `weed` binary: CONVEX_SELFHOST_WEED=<path> or `weed` on "
                    "PATH (docs/contributing.md says how to build it from the Go module proxy)")
    root = tmp_path_factory.mktemp("seaweedfs")
    (root / "data").mkdir()
    (root / "s3.json").write_text(json.dumps({"identities": [{
        "name": "convex", "credentials": [{"accessKey": ACCESS, "secretKey": SECRET}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    names = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
             "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    log = (root / "weed.log").open("w")
    server = subprocess.Popen(
        [weed, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         *(f"-{name}={port}" for name, port in ports.items()), "-s3.port.iceberg=0",
         "-s3.port.lance=0", "-admin.ui=false", "-webdav=false",
         f"-s3.config={root / 's3.json'}"], stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except urllib.error.HTTPError:
                break  # it answers (403 without a signature)
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    told = (root / "weed.log").read_text()[-2000:]
                    pytest.fail(f"weed mini did not start: {told}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def buckets(seaweedfs):
    s3 = boto3.client("s3", endpoint_url=seaweedfs, region_name="us-east-1",
                      aws_access_key_id=ACCESS, aws_secret_access_key=SECRET)
    made = []

    def make(name: str, lock: bool = False) -> str:
        name = f"{name}-{os.getpid()}-{len(made)}"
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
        made.append(name)
        return name
    yield s3, make


@pytest.fixture
def lone(tmp_path):
    where = tmp_path / "client"
    where.mkdir()
    for name, text in client_files().items():
        (where / name).write_text(text)
    return where / "convex_backup.py"


def client(lone: Path, key: str, *args: str, encryption: bool = True):
    env = {"PATH": "/usr/bin:/bin", backup.KEY_ENV: key, "AWS_ACCESS_KEY_ID": ACCESS,
           "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_EC2_METADATA_DISABLED": "true"}
    if encryption:
        env["CONVEX_BACKUP_ENCRYPTION_KEY"] = ENCRYPTION_KEY
    return subprocess.run([sys.executable, str(lone), *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=lone.parent)


def listed(s3, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in
                  s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def offsite(seaweedfs: str, bucket: str, *extra: str) -> list[str]:
    return ["--s3-bucket", bucket, "--s3-endpoint", seaweedfs, "--s3-path-style",
            "--s3-prefix", "prod/convex-prod", *extra]


def test_encrypted_copies_retention_fetch_and_a_drill_from_the_bucket(
        seaweedfs, buckets, lone, tmp_path):
    s3, make = buckets
    bucket = make("convex-backups")
    prod = Deployment("convex-prod", tmp_path / "prod")
    try:
        seeded = client(lone, prod.key, "restore", "--url", prod.url, "--file",
                        str(seed_zip(tmp_path / "seed.zip")), "--yes", "--poll-interval", "0.05")
        assert seeded.returncode == 0, seeded.stdout + seeded.stderr
        for _ in range(3):
            time.sleep(1.1)  # a new snapshot name each run (its stamp has seconds)
            done = client(lone, prod.key, "once", "--url", prod.url, "--dest",
                          str(tmp_path / "backups"), "--keep", "2", "--poll-interval", "0.05",
                          *offsite(seaweedfs, bucket, "--encrypt"))
            assert done.returncode == 0, done.stdout + done.stderr
            assert "remote=prod/convex-prod/snapshot-" in done.stdout
    finally:
        prod.close()
    keys = listed(s3, bucket)
    print(f"\nin SeaweedFS: {keys}")
    assert len(keys) == 4 and all(k.endswith(".enc") for k in keys)  # 2 zips, 2 env files
    body = s3.get_object(Bucket=bucket, Key=keys[-1])["Body"].read()
    assert body.startswith(b"CVXBKUP1") and b"message 1" not in body

    fetched = client(lone, "unused-admin-key", "fetch", "--dest", str(tmp_path / "fetched"),
                     *offsite(seaweedfs, bucket, "--encrypt"))
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert fetched.stdout.strip().endswith("tables=2 documents=32 files=0")

    throwaway = Deployment("convex-drill-5eaf", tmp_path / "drill")
    try:
        drilled = client(lone, throwaway.key, "drill", "--url", throwaway.url, "--wait", "10",
                         *offsite(seaweedfs, bucket, "--encrypt"))
    finally:
        throwaway.close()
    assert drilled.returncode == 0, drilled.stdout + drilled.stderr
    ok, line = backup_drill.parse_result(drilled.stdout)
    assert ok and line.endswith("tables=2 documents=32 files=0")
    assert ENCRYPTION_KEY not in drilled.stdout + fetched.stdout


def test_object_lock_keeps_every_copy_until_its_retention_ends(seaweedfs, buckets, lone,
                                                               tmp_path):
    s3, make = buckets
    bucket = make("convex-locked", lock=True)
    prod = Deployment("convex-prod", tmp_path / "prod")
    try:
        for _ in range(3):
            time.sleep(1.1)
            done = client(lone, prod.key, "once", "--url", prod.url, "--dest",
                          str(tmp_path / "backups"), "--keep", "1", "--poll-interval", "0.05",
                          *offsite(seaweedfs, bucket, "--s3-lock-days", "1"), encryption=False)
            assert done.returncode == 0, done.stdout + done.stderr
    finally:
        prod.close()
    keys = listed(s3, bucket)
    assert len([k for k in keys if k.endswith(".zip")]) == 3  # retained: none deleted
    head = s3.head_object(Bucket=bucket, Key=keys[0])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    versions = s3.list_object_versions(Bucket=bucket)
    assert not versions.get("DeleteMarkers")  # nothing hidden behind a marker either
    version = versions["Versions"][0]
    with pytest.raises(Exception, match="AccessDenied"):
        s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])

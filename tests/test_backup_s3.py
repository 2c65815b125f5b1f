"""ops/backup_s3.py and ops/backup_offsite.py against a real S3-compatible server (moto's
server mode, started here on loopback), with botocore's signer as the reference for SigV4."""

import base64
import datetime as dt
import json
import os
import zipfile
from types import SimpleNamespace

import boto3
import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto.server import ThreadedMotoServer

from ops import backup, backup_crypto, backup_offsite, backup_s3

KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture(scope="module")
def server():
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    yield f"http://{host}:{port}"
    moto.stop()


@pytest.fixture
def bucket(server, monkeypatch, request):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    name = f"convex-{request.node.name[:20].replace('_', '-').lower()}-{os.getpid()}"
    s3 = boto3.client("s3", endpoint_url=server, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return SimpleNamespace(name=name, s3=s3, endpoint=server,
                           config=backup_s3.Bucket(name, "us-east-1", server, True,
                                                   "prod/convex-prod"))


def export_zip(path, documents=3):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README.md", "# export\n")
        archive.writestr("t/documents.jsonl", "".join(
            json.dumps({"_id": str(i)}) + "\n" for i in range(documents)))


def keys(bucket):
    listed = bucket.s3.list_objects_v2(Bucket=bucket.name).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def test_signatures_match_botocore_byte_for_byte(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token/with+chars")
    moment = dt.datetime(2026, 12, 5, 1, 2, 3, tzinfo=dt.timezone.utc)
    for path_style, endpoint in ((True, "http://127.0.0.1:9000"), (False, "")):
        client = backup_s3.Client(backup_s3.Bucket("my-bucket", "eu-central-1", endpoint,
                                                   path_style, "p"), now=lambda: moment)
        payload = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        path = ("/my-bucket" if path_style else "") + "/p/snapshot-20261205T010203Z.zip"
        ours = client._signed("PUT", path, {"x-id": "PutObject"},
                              {"content-type": "application/octet-stream"}, payload)
        host = ours["host"]
        request = AWSRequest(method="PUT", url=f"http://{host}{path}?x-id=PutObject",
                             headers={"content-type": "application/octet-stream",
                                      "x-amz-content-sha256": payload})
        signer = S3SigV4Auth(Credentials("AKIDEXAMPLE",
                                         "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                         "token/with+chars"), "s3", "eu-central-1")
        monkeypatch.setattr(botocore.auth, "get_current_datetime",
                            lambda: moment.replace(tzinfo=None))
        signer.add_auth(request)
        assert ours["authorization"] == request.headers["Authorization"], path_style


def test_upload_encrypt_and_keep_the_newest(tmp_path, bucket):
    dest = tmp_path / "dest"
    dest.mkdir()
    stray = "prod/convex-prod/notes.txt"  # not the client's: never deleted
    bucket.s3.put_object(Bucket=bucket.name, Key=stray, Body=b"x")
    offsite = backup_offsite.Offsite(bucket.config, backup_crypto.parse_key(KEY))
    for stamp in ("20261201T030000Z", "20261202T030000Z", "20261203T030000Z"):
        export_zip(dest / f"snapshot-{stamp}.zip")
        (dest / f"snapshot-{stamp}.env.json").write_text("[]\n")
        key = backup_offsite.ship(offsite, str(dest), [f"snapshot-{stamp}.zip",
                                                       f"snapshot-{stamp}.env.json"], 2)
        assert key == f"prod/convex-prod/snapshot-{stamp}.zip.enc"
    assert keys(bucket) == sorted([stray] + [
        f"prod/convex-prod/snapshot-{s}.{kind}.enc" for s in ("20261202T030000Z",
                                                              "20261203T030000Z")
        for kind in ("zip", "env.json")])
    assert not list(dest.glob(".partial-*"))
    # What is in the bucket is ciphertext; downloaded and decrypted it is the snapshot.
    client = backup_s3.Client(bucket.config)
    client.get("snapshot-20261203T030000Z.zip.enc", str(tmp_path / "down.enc"))
    assert (tmp_path / "down.enc").read_bytes().startswith(b"CVXBKUP1")
    backup_crypto.decrypt(str(tmp_path / "down.enc"), str(tmp_path / "down.zip"),
                          backup_crypto.parse_key(KEY))
    assert (tmp_path / "down.zip").read_bytes() == \
        (dest / "snapshot-20261203T030000Z.zip").read_bytes()


def test_object_lock_retention_is_sent(tmp_path, bucket):
    config = backup_s3.Bucket(bucket.name, "us-east-1", bucket.endpoint, True, "locked",
                              lock_days=7)
    export_zip(tmp_path / "snapshot-20261201T030000Z.zip")
    backup_offsite.ship(backup_offsite.Offsite(config), str(tmp_path),
                        ["snapshot-20261201T030000Z.zip"], 3)
    head = bucket.s3.head_object(Bucket=bucket.name, Key="locked/snapshot-20261201T030000Z.zip")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    days = (head["ObjectLockRetainUntilDate"] - dt.datetime.now(dt.timezone.utc)).days
    assert 6 <= days <= 7


def test_a_failed_upload_fails_the_run_and_keeps_the_local_copy(tmp_path, bucket, monkeypatch):
    monkeypatch.setattr(backup_s3, "TIMEOUT", 5)
    missing = backup_s3.Bucket("no-such-bucket-here", "us-east-1", bucket.endpoint, True, "p")
    export_zip(tmp_path / "snapshot-20261201T030000Z.zip")
    with pytest.raises(backup_offsite.OffsiteError, match="upload snapshot-20261201T030000Z"
                                                          ".zip: NoSuchBucket"):
        backup_offsite.ship(backup_offsite.Offsite(missing, local=False), str(tmp_path),
                            ["snapshot-20261201T030000Z.zip"], 3)
    assert (tmp_path / "snapshot-20261201T030000Z.zip").exists()


def test_without_a_local_copy_the_bucket_keeps_the_only_one(tmp_path, bucket):
    export_zip(tmp_path / "snapshot-20261201T030000Z.zip")
    backup_offsite.ship(backup_offsite.Offsite(bucket.config, local=False), str(tmp_path),
                        ["snapshot-20261201T030000Z.zip"], 3)
    assert not (tmp_path / "snapshot-20261201T030000Z.zip").exists()
    assert keys(bucket) == ["prod/convex-prod/snapshot-20261201T030000Z.zip"]


def args(**extra):
    base = dict(s3_bucket=None, s3_endpoint="", s3_region="us-east-1", s3_prefix="",
                s3_path_style=False, s3_lock_days=0, encrypt=False, no_local=False)
    return SimpleNamespace(**{**base, **extra})


def test_bad_arguments_are_refused_without_echoing_secrets(monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role here
    assert backup_offsite.offsite_of(args()) is None
    for bad, message in ((args(encrypt=True), "need --s3-bucket"),
                         (args(s3_bucket="Bad_Name"), "not a bucket name"),
                         (args(s3_bucket="ok-bucket"), "set AWS_ACCESS_KEY_ID and "
                                                       "AWS_SECRET_ACCESS_KEY")):
        with pytest.raises(backup_offsite.OffsiteError, match=message):
            backup_offsite.offsite_of(bad)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    monkeypatch.setenv(backup_crypto.KEY_ENV, "hunter2")
    with pytest.raises(backup_offsite.OffsiteError) as refused:
        backup_offsite.offsite_of(args(s3_bucket="ok-bucket", encrypt=True))
    assert "hunter2" not in str(refused.value) and "openssl rand" in str(refused.value)


def test_a_scheduled_run_uploads_and_records_it(tmp_path, bucket, monkeypatch):
    """run_once end to end against a stand-in backend's export API and the real bucket."""
    from test_backup import KEY as ADMIN_KEY
    from test_backup import FakeConvex

    monkeypatch.setenv(backup_crypto.KEY_ENV, KEY)
    monkeypatch.setenv(backup.KEY_ENV, ADMIN_KEY)
    dest = tmp_path / "dest"
    with FakeConvex(ADMIN_KEY) as fake:
        code = backup.main(["once", "--url", fake.url, "--dest", str(dest), "--keep", "2",
                            "--poll-interval", "0.01", "--s3-bucket", bucket.name,
                            "--s3-endpoint", bucket.endpoint, "--s3-path-style",
                            "--s3-prefix", "dev/convex-dev", "--encrypt"])
    assert code == 0
    record = json.loads((dest / ".last-run.json").read_text())
    assert record["ok"] and record["encrypted"] is True
    assert record["remote"] == f"dev/convex-dev/{record['file']}.enc"
    assert keys(bucket) == sorted([record["remote"],
                                   f"dev/convex-dev/{record['env_file']}.enc"])


def test_fetch_brings_the_newest_copy_back_decrypted_and_verified(tmp_path, bucket,
                                                                  monkeypatch, capsys):
    dest, back = tmp_path / "dest", tmp_path / "back"
    dest.mkdir()
    offsite = backup_offsite.Offsite(bucket.config, backup_crypto.parse_key(KEY))
    for stamp, documents in (("20261201T030000Z", 2), ("20261202T030000Z", 5)):
        export_zip(dest / f"snapshot-{stamp}.zip", documents)
        (dest / f"snapshot-{stamp}.env.json").write_text('[{"name": "A", "value": "1"}]\n')
        backup_offsite.ship(offsite, str(dest), [f"snapshot-{stamp}.zip",
                                                 f"snapshot-{stamp}.env.json"], 3)
    flags = ["--s3-bucket", bucket.name, "--s3-endpoint", bucket.endpoint, "--s3-path-style",
             "--s3-prefix", "prod/convex-prod"]
    assert backup.main(["fetch", "--dest", str(back), *flags]) == 2
    assert "is encrypted: pass --encrypt" in capsys.readouterr().err
    assert not list(back.iterdir())
    monkeypatch.setenv(backup_crypto.KEY_ENV, KEY)
    assert backup.main(["fetch", "--dest", str(back), *flags, "--encrypt"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == (f"convex-backup fetch ok file={back}/snapshot-20261202T030000Z.zip "
                           "tables=1 documents=5 files=0")
    assert sorted(p.name for p in back.iterdir()) == ["snapshot-20261202T030000Z.env.json",
                                                      "snapshot-20261202T030000Z.zip"]
    assert (back / "snapshot-20261202T030000Z.zip").read_bytes() == \
        (dest / "snapshot-20261202T030000Z.zip").read_bytes()


def versions_of(bucket, prefix):
    listed = bucket.s3.list_object_versions(Bucket=bucket.name, Prefix=prefix)
    return sorted((v["Key"], "marker" if m else "version") for m, group in (
        (False, listed.get("Versions", [])), (True, listed.get("DeleteMarkers", [])))
        for v in group)


def test_under_object_lock_old_versions_are_deleted_by_id_once_their_retention_ends(
        tmp_path, bucket):
    """A delete by name in a locked (versioned) bucket only hides a snapshot behind a delete
    marker and keeps every byte; the client deletes versions by id instead: a retained one
    is refused and stays (a later run retries), one past its retention (here: uploaded
    without one) is gone for good, marker and all."""
    prefix = "locked-prune/"
    expired = "snapshot-20261101T030000Z.zip"  # as if its retention had ended
    bucket.s3.put_object(Bucket=bucket.name, Key=prefix + expired, Body=b"old")
    bucket.s3.delete_object(Bucket=bucket.name, Key=prefix + expired)  # a marker over it
    config = backup_s3.Bucket(bucket.name, "us-east-1", bucket.endpoint, True,
                              prefix.rstrip("/"), lock_days=1)
    for stamp in ("20261201T030000Z", "20261202T030000Z"):
        export_zip(tmp_path / f"snapshot-{stamp}.zip")
        backup_offsite.ship(backup_offsite.Offsite(config), str(tmp_path),
                            [f"snapshot-{stamp}.zip"], 1)
    assert versions_of(bucket, prefix) == [
        (prefix + "snapshot-20261201T030000Z.zip", "version"),  # retained: refused, kept
        (prefix + "snapshot-20261202T030000Z.zip", "version")]
    assert backup_s3.Client(config).names() == ["snapshot-20261201T030000Z.zip",
                                                "snapshot-20261202T030000Z.zip"]

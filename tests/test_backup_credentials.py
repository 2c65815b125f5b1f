"""ops/backup_credentials.py: the environment's keys, a container role and the instance's
role (IMDSv2), against loopback stand-ins of those services, and an upload to a real
S3-compatible server (moto) signed with a role's temporary credentials."""

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from test_backup_s3 import bucket, export_zip, keys, server  # noqa: F401 - fixtures

from ops import backup_credentials as bc
from ops import backup_s3

UTC = dt.timezone.utc


def document(expires_in=dt.timedelta(hours=6), access="ASIAROLE", token="role-token"):
    return {"Code": "Success", "AccessKeyId": access, "SecretAccessKey": "role-secret",
            "Token": token, "Expiration": (dt.datetime.now(UTC) + expires_in).strftime(
                "%Y-%m-%dT%H:%M:%SZ")}


class Metadata:
    """IMDSv2 (token PUT, role list, role credentials) and a container endpoint."""

    def __init__(self):
        self.requests, self.role, self.issued = [], "convex-backups", 0
        self.expires_in = dt.timedelta(hours=6)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):  # noqa: N802
                fake.requests.append(("PUT", self.path, dict(self.headers)))
                if self.path == "/latest/api/token" and \
                        self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return self.reply(200, "imds-session")
                return self.reply(403, "")

            def do_GET(self):  # noqa: N802
                fake.requests.append(("GET", self.path, dict(self.headers)))
                if self.path.startswith("/container/"):
                    if self.headers.get("Authorization") != "pod-identity-token":
                        return self.reply(401, "")
                    return self.reply(200, document(access="ASIACONTAINER"))
                if self.headers.get("X-aws-ec2-metadata-token") != "imds-session":
                    return self.reply(401, "")  # IMDSv1 is refused, as it should be
                base = "/latest/meta-data/iam/security-credentials/"
                if self.path == base:
                    return self.reply(200, fake.role + "\n")
                if self.path == base + fake.role:
                    fake.issued += 1
                    return self.reply(200, document(fake.expires_in,
                                                    token=f"role-token-{fake.issued}"))
                return self.reply(404, "")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def metadata():
    fake = Metadata()
    yield fake
    fake.httpd.shutdown()


def test_the_environments_keys_come_first(metadata):
    found = bc.resolve({"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s",
                        "AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata.url})
    assert (found.access_key, found.secret_key, found.expires) == ("AKIA", "s", None)
    assert metadata.requests == []
    with pytest.raises(bc.CredentialsError, match="both AWS_ACCESS_KEY_ID and"):
        bc.resolve({"AWS_ACCESS_KEY_ID": "AKIA"})


def test_the_instance_role_comes_from_imdsv2_only(metadata):
    found = bc.resolve({"AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata.url})
    assert (found.access_key, found.token, found.source) == ("ASIAROLE", "role-token-1",
                                                             "instance role")
    assert found.fresh(dt.datetime.now(UTC))
    put, *gets = metadata.requests
    assert put[:2] == ("PUT", "/latest/api/token")
    assert all(g[2].get("X-aws-ec2-metadata-token") == "imds-session" for g in gets)


def test_a_container_role_with_its_token_file(metadata, tmp_path):
    token = tmp_path / "token"
    token.write_text("pod-identity-token\n")
    found = bc.resolve({"AWS_CONTAINER_CREDENTIALS_FULL_URI": metadata.url + "/container/x",
                        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token)})
    assert (found.access_key, found.source) == ("ASIACONTAINER", "container role")
    with pytest.raises(bc.CredentialsError, match="container credentials: HTTP 401"):
        bc.resolve({"AWS_CONTAINER_CREDENTIALS_FULL_URI": metadata.url + "/container/x"})


def test_without_any_source_the_error_says_what_to_set(metadata):
    metadata.role = ""
    with pytest.raises(bc.CredentialsError, match="the instance has no role .*backupS3Access"):
        bc.resolve({"AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata.url})
    with pytest.raises(bc.CredentialsError, match="instance role is disabled"):
        bc.resolve({"AWS_EC2_METADATA_DISABLED": "true"})
    with pytest.raises(bc.CredentialsError, match="ConnectionRefusedError"):
        bc.resolve({"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9"})


@pytest.mark.parametrize("body", ["not json", {"AccessKeyId": "a"},
                                  {"AccessKeyId": "a", "SecretAccessKey": "s",
                                   "Expiration": "2026-12-05T01:00:00"}])
def test_answers_that_are_not_credentials_are_refused(body):
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    with pytest.raises(bc.CredentialsError, match="credentials document|time zone"):
        bc._parse(data, "x", "y")


def test_uploads_are_signed_with_the_roles_credentials_and_refreshed(
        tmp_path, bucket, metadata, monkeypatch):  # noqa: F811
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", metadata.url)
    metadata.expires_in = dt.timedelta(minutes=3)  # inside the refresh margin
    export_zip(tmp_path / "snapshot-20261201T030000Z.zip")
    client = backup_s3.Client(bucket.config)
    client.put(str(tmp_path / "snapshot-20261201T030000Z.zip"), "snapshot-20261201T030000Z.zip")
    assert client.names() == ["snapshot-20261201T030000Z.zip"]
    assert keys(SimpleNamespace(s3=bucket.s3, name=bucket.name)) == [
        "prod/convex-prod/snapshot-20261201T030000Z.zip"]
    # Credentials close to their expiry are fetched again before a request is signed.
    assert metadata.issued >= 3
    assert client.credentials.token.startswith("role-token-")

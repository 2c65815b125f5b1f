"""Credentials for the off-host copies (standard library only), in the order the AWS SDKs
look for them, as far as a backup client needs:

1. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN) in the environment: the
   stack's backupS3AccessKeyId / backupS3SecretAccessKey, set as secrets.
2. A container role: AWS_CONTAINER_CREDENTIALS_FULL_URI (EKS Pod Identity, ECS with a full
   URI) or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (ECS task roles, under
   http://169.254.170.2), with AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE) when set.
3. The instance's role from EC2's instance metadata service, IMDSv2 only: PUT
   /latest/api/token, then /latest/meta-data/iam/security-credentials/<role> with that
   token (AWS_EC2_METADATA_SERVICE_ENDPOINT overrides http://169.254.169.254;
   AWS_EC2_METADATA_DISABLED=true skips it). From a Docker container the instance's
   metadata hop limit must be 2 or more.

Every request is bounded (2 s to connect, 5 s per read, 64 KiB), goes to the
address given (no proxy) and follows no redirect. Temporary credentials are fetched again
when less than five minutes of them are left. No credential appears in an error.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import urllib.parse
from dataclasses import dataclass

IMDS = "http://169.254.169.254"
ECS = "http://169.254.170.2"
TIMEOUT = 5.0
LIMIT = 64 << 10
REFRESH = dt.timedelta(minutes=5)


class CredentialsError(Exception):
    """No usable credentials; str() says where it looked, never a secret."""


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str = ""
    expires: dt.datetime | None = None  # None: long-lived
    source: str = "environment"

    def fresh(self, now: dt.datetime) -> bool:
        return self.expires is None or self.expires - now > REFRESH


def _http(method: str, url: str, headers: dict, what: str) -> bytes:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CredentialsError(f"{what}: {url!r} is not an http(s) URL")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=2.0)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(method, target, headers=headers)
        connection.sock.settimeout(TIMEOUT)
        response = connection.getresponse()
        data = response.read(LIMIT + 1)
        if response.status != 200:
            raise CredentialsError(f"{what}: HTTP {response.status}")
        if len(data) > LIMIT:
            raise CredentialsError(f"{what}: the answer is larger than {LIMIT} bytes")
        return data
    except (OSError, http.client.HTTPException) as error:
        raise CredentialsError(f"{what}: {error.__class__.__name__}") from None
    finally:
        connection.close()


def _parse(data: bytes, what: str, source: str) -> Credentials:
    """The JSON both services answer: AccessKeyId, SecretAccessKey, Token, Expiration."""
    try:
        doc = json.loads(data)
        expires = dt.datetime.fromisoformat(str(doc["Expiration"]).replace("Z", "+00:00"))
        found = Credentials(doc["AccessKeyId"], doc["SecretAccessKey"], doc.get("Token", ""),
                            expires, source)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CredentialsError(f"{what}: not the credentials document expected") from None
    if not all(isinstance(v, str) and v for v in (found.access_key, found.secret_key)):
        raise CredentialsError(f"{what}: not the credentials document expected")
    if expires.tzinfo is None:
        raise CredentialsError(f"{what}: an expiration without a time zone")
    return found


def from_container(env) -> Credentials | None:
    full, relative = (env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI", ""),
                      env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ""))
    if not full and not relative:
        return None
    url = full or ECS + relative
    headers = {}
    token = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN", "")
    token_file = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "")
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.read(LIMIT).strip()
        except OSError as error:
            raise CredentialsError("container credentials: cannot read "
                                   f"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE "
                                   f"({error.__class__.__name__})") from None
    if token:
        if "\r" in token or "\n" in token:
            raise CredentialsError("container credentials: the authorization token holds a "
                                   "line break")
        headers["Authorization"] = token
    what = "container credentials"
    return _parse(_http("GET", url, headers, what), what, "container role")


def from_instance(env) -> Credentials | None:
    if env.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return None
    base = env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "") or IMDS
    base = base.rstrip("/")
    what = "instance metadata (IMDSv2)"
    token = _http("PUT", f"{base}/latest/api/token",
                  {"X-aws-ec2-metadata-token-ttl-seconds": "21600"}, what).decode().strip()
    headers = {"X-aws-ec2-metadata-token": token}
    path = f"{base}/latest/meta-data/iam/security-credentials/"
    roles = _http("GET", path, headers, what).decode(errors="replace").split()
    if not roles:
        raise CredentialsError(f"{what}: the instance has no role")
    role = urllib.parse.quote(roles[0], safe="")
    return _parse(_http("GET", path + role, headers, what), what, "instance role")


def resolve(env=None) -> Credentials:
    """The first credentials found (see the module docstring)."""
    env = os.environ if env is None else env
    access, secret = env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", "")
    if access and secret:
        return Credentials(access, secret, env.get("AWS_SESSION_TOKEN", ""))
    if access or secret:
        raise CredentialsError("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                               "neither (then a container or instance role is used)")
    found = from_container(env)
    if found is not None:
        return found
    try:
        found = from_instance(env)
    except CredentialsError as error:
        raise CredentialsError(
            "no credentials for the bucket: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not "
            f"set, no container role is offered, and {error} (set backupS3AccessKeyId and "
            "backupS3SecretAccessKey, or give the machine a role)") from None
    if found is None:
        raise CredentialsError("no credentials for the bucket: set AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY (the instance role is disabled)")
    return found

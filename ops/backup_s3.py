"""Off-host copies of snapshots in an S3-compatible bucket (standard library only).

AWS S3, R2, B2, MinIO, SeaweedFS: requests signed with AWS Signature Version 4 (a
hash of every payload, `x-amz-content-sha256`), virtual-hosted or path-style addressing,
credentials from the environment, a container role or the instance's role
(backup_credentials). Every request is bounded (connect and read timeouts, a cap on what a listing
may return), goes straight to the endpoint (no proxy) and follows no redirect. Object lock:
`lock_days` sends x-amz-object-lock-mode / -retain-until-date (with Content-MD5, which S3
requires for them) on each upload; the bucket must have object lock enabled.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import os
import sys
import urllib.parse
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

if __package__:
    from ops import backup_credentials
else:  # beside convex_backup.py (see there)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import backup_credentials

TIMEOUT = 60.0
LIST_LIMIT = 4 << 20  # one ListObjectsV2 page (1,000 keys) is far smaller
CHUNK = 1 << 20
NS = "{*}"  # any namespace: S3's own, or none, or one a compatible server spells its way


class S3Error(Exception):
    """A request failed; str() names the operation and S3's own code, never a credential."""


@dataclass(frozen=True)
class Bucket:
    name: str
    region: str = "us-east-1"
    endpoint: str = ""  # "": AWS (https://s3.<region>.amazonaws.com)
    path_style: bool = False
    prefix: str = ""  # keys are <prefix>/<file name>
    lock_days: int = 0

    def key(self, name: str) -> str:
        return f"{self.prefix.strip('/')}/{name}" if self.prefix.strip("/") else name


def credentials() -> "backup_credentials.Credentials":
    try:
        return backup_credentials.resolve()
    except backup_credentials.CredentialsError as error:
        raise S3Error(str(error)) from None


class Client:
    def __init__(self, bucket: Bucket, now=lambda: dt.datetime.now(dt.timezone.utc)):
        self.bucket, self.now = bucket, now
        self.credentials = credentials()
        endpoint = bucket.endpoint or f"https://s3.{bucket.region}.amazonaws.com"
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise S3Error("the S3 endpoint must be an http(s) URL")
        self.scheme, self.port = parts.scheme, parts.port
        if bucket.path_style:
            self.host, self.base = parts.hostname, f"/{bucket.name}"
        else:
            self.host, self.base = f"{bucket.name}.{parts.hostname}", ""

    # --- SigV4 ---------------------------------------------------------------------

    def _signed(self, method: str, path: str, query: dict, headers: dict,
                payload_hash: str) -> dict:
        moment = self.now()
        if not self.credentials.fresh(moment):  # a role's credentials, about to expire
            self.credentials = credentials()
        access, secret, token = (self.credentials.access_key, self.credentials.secret_key,
                                 self.credentials.token)
        stamp, day = moment.strftime("%Y%m%dT%H%M%SZ"), moment.strftime("%Y%m%d")
        host = self.host if self.port is None else f"{self.host}:{self.port}"
        headers = {**{k.lower(): v.strip() for k, v in headers.items()}, "host": host,
                   "x-amz-date": stamp, "x-amz-content-sha256": payload_hash}
        if token:
            headers["x-amz-security-token"] = token
        names = sorted(headers)
        canonical_query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(str(v), safe='-_.~')}"
            for k, v in sorted(query.items()))
        request = "\n".join([method, urllib.parse.quote(path, safe="/-_.~"), canonical_query,
                             "".join(f"{n}:{headers[n]}\n" for n in names), ";".join(names),
                             payload_hash])
        scope = f"{day}/{self.bucket.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                             hashlib.sha256(request.encode()).hexdigest()])
        key = ("AWS4" + secret).encode()
        for part in (day, self.bucket.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={signature}")
        return headers

    def _request(self, what: str, method: str, key: str = "", query: dict | None = None,
                 headers: dict | None = None, body=None, payload_hash: str = "",
                 length: int = 0, sink=None) -> bytes:
        query = query or {}
        path = f"{self.base}/{key}" if key else (self.base or "/")
        payload_hash = payload_hash or hashlib.sha256(b"").hexdigest()
        signed = self._signed(method, path, query, headers or {}, payload_hash)
        if body is not None:
            signed["content-length"] = str(length)
        connection_type = (http.client.HTTPSConnection if self.scheme == "https"
                           else http.client.HTTPConnection)
        connection = connection_type(self.host, self.port, timeout=TIMEOUT)
        target = urllib.parse.quote(path, safe="/-_.~") + (
            "?" + urllib.parse.urlencode(sorted(query.items()), quote_via=urllib.parse.quote)
            if query else "")
        try:
            connection.request(method, target, body=body, headers=signed)
            response = connection.getresponse()
            if response.status >= 300:
                detail = response.read(4096).decode(errors="replace")
                code = _text(detail, "Code") or f"HTTP {response.status}"
                raise S3Error(f"{what}: {code}")
            if sink is not None:
                while chunk := response.read(CHUNK):
                    sink.write(chunk)
                return b""
            data = response.read(LIST_LIMIT + 1)
            if len(data) > LIST_LIMIT:
                raise S3Error(f"{what}: the answer is larger than {LIST_LIMIT} bytes")
            return data
        except (OSError, http.client.HTTPException) as error:
            raise S3Error(f"{what}: {error.__class__.__name__}") from None
        finally:
            connection.close()

    # --- operations ------------------------------------------------------------------

    def put(self, path: str, name: str) -> str:
        """Upload the file at PATH as <prefix>/NAME; its key."""
        sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        with open(path, "rb") as source:
            while chunk := source.read(CHUNK):
                sha.update(chunk)
                md5.update(chunk)
                size += len(chunk)
        headers = {"content-type": "application/octet-stream",
                   "content-md5": base64.b64encode(md5.digest()).decode()}
        if self.bucket.lock_days:
            until = self.now() + dt.timedelta(days=self.bucket.lock_days)
            headers["x-amz-object-lock-mode"] = "COMPLIANCE"
            headers["x-amz-object-lock-retain-until-date"] = until.strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        key = self.bucket.key(name)
        with open(path, "rb") as source:
            self._request(f"upload {name}", "PUT", key, headers=headers, body=source,
                          payload_hash=sha.hexdigest(), length=size)
        return key

    def names(self) -> list[str]:
        """The file names under the prefix (one level)."""
        found, token = [], None
        prefix = self.bucket.key("")
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            root = _xml(self._request("list", "GET", query=query))
            for item in root.findall(f"{NS}Contents"):
                key = item.findtext(f"{NS}Key") or ""
                if key.startswith(prefix) and "/" not in key[len(prefix):]:
                    found.append(key[len(prefix):])
            token = root.findtext(f"{NS}NextContinuationToken")
            if root.findtext(f"{NS}IsTruncated") != "true" or not token:
                return found

    def versions(self) -> list[tuple[str, str]]:
        """(file name, version id) of every version and delete marker under the prefix (one
        level): a bucket with object lock keeps versions, and only deleting a version by its
        id removes it (refused while its retention lasts)."""
        found, markers = [], None
        prefix = self.bucket.key("")
        while True:
            query = {"versions": "", "prefix": prefix}
            if markers:
                query["key-marker"], query["version-id-marker"] = markers
            root = _xml(self._request("list versions", "GET", query=query))
            for item in [*root.findall(f"{NS}Version"), *root.findall(f"{NS}DeleteMarker")]:
                key = item.findtext(f"{NS}Key") or ""
                version = item.findtext(f"{NS}VersionId") or ""
                if key.startswith(prefix) and "/" not in key[len(prefix):] and version:
                    found.append((key[len(prefix):], version))
            markers = (root.findtext(f"{NS}NextKeyMarker"),
                       root.findtext(f"{NS}NextVersionIdMarker") or "")
            if root.findtext(f"{NS}IsTruncated") != "true" or not markers[0]:
                return found

    def delete(self, name: str, version: str = "") -> None:
        self._request(f"delete {name}", "DELETE", self.bucket.key(name),
                      query={"versionId": version} if version else None)

    def get(self, name: str, path: str) -> None:
        """Download <prefix>/NAME into PATH (created 0600)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as sink:
            self._request(f"download {name}", "GET", self.bucket.key(name), sink=sink)


def _xml(data: bytes):
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise S3Error("list: the answer declares a document type; refused")
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError:
        raise S3Error("list: the answer is not XML") from None


def _text(document: str, tag: str) -> str:
    try:
        root = _xml(document.encode())
    except S3Error:
        return ""
    return (root.findtext(f"{NS}{tag}") or "")[:100]

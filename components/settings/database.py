"""Database settings: SQLite in the volume, an external Postgres/MySQL, or a provisioned one.

Messages never quote `databaseUrl`: it carries a password.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import urlsplit

from cryptography import x509

from components.settings.model import DatabaseSettings
from components.settings.network import is_hostname
from components.settings.reader import Reader

# Upstream's backend pool default (crates/common/src/knobs.rs POSTGRES_MAX_CONNECTIONS).
UPSTREAM_POOL_SIZE = 128
# Postgres keeps superuser_reserved_connections (3) back; leave room for psql and backups.
POSTGRES_SPARE_CONNECTIONS = 10
MAX_POSTGRES_CONNECTIONS = 10_000
# Schemes a mistaken databaseUrl is likely to have; any other is not echoed.
_KNOWN_SCHEMES = frozenset({
    "http", "https", "file", "sqlite", "sqlite3", "redis", "rediss", "mongodb", "mongodb+srv",
    "mariadb", "mssql", "sqlserver", "jdbc", "pg", "psql", "postgis", "cockroachdb", "mysqlx",
    "postgresql+psycopg2", "postgresql+asyncpg", "mysql+pymysql", "s3", "tcp"})
_PEM_BLOCK = re.compile(
    r"-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END CERTIFICATE-----")


def read_database(reader: Reader) -> DatabaseSettings:
    url = reader.secret("databaseUrl")
    require_ssl = reader.boolean("requireDatabaseSsl")
    provision = reader.boolean("provisionPostgres")
    postgres_image = reader.string("postgresImage")
    ca_cert = _check_ca_cert(reader)
    pool = reader.integer("postgresMaxConnections", 0, MAX_POSTGRES_CONNECTIONS) or 0
    server_max = reader.integer("postgresServerMaxConnections", 20, MAX_POSTGRES_CONNECTIONS)

    if provision:
        if url is not None:
            reader.problem("databaseUrl", "is set together with provisionPostgres; choose one: "
                                          "remove databaseUrl to run Postgres in a container, "
                                          "or set provisionPostgres to false.")
        if ca_cert:
            reader.problem("databaseCaCert", "is for an external database; the provisioned "
                                             "Postgres is reached on the private network.")
        reader.image("postgresImage")
        if server_max is not None:
            needed = (pool or UPSTREAM_POOL_SIZE) + POSTGRES_SPARE_CONNECTIONS
            if server_max < needed:
                reader.problem("postgresServerMaxConnections",
                               f"{server_max} leaves no room for the backend's pool of "
                               f"{pool or UPSTREAM_POOL_SIZE} connections (postgresMaxConnections"
                               f"{'' if pool else ', upstream default'}) plus "
                               f"{POSTGRES_SPARE_CONNECTIONS} spare; raise it to {needed} or "
                               "more, or lower postgresMaxConnections.")
        return DatabaseSettings("provisioned-postgres", None, False, postgres_image,
                                pool_size=pool, server_max_connections=server_max or 0)
    if url is None:
        if ca_cert or pool:
            reader.problem("databaseCaCert" if ca_cert else "postgresMaxConnections",
                           "applies to a Postgres or MySQL database, but the deployment uses "
                           "SQLite; set databaseUrl or provisionPostgres, or remove it.")
        return DatabaseSettings("sqlite")
    kind = _check_url(reader, url.reveal())
    if pool and kind == "mysql":
        reader.problem("postgresMaxConnections", "sizes a Postgres pool; the database is MySQL.")
    return DatabaseSettings(kind, url, require_ssl, ca_cert=ca_cert, pool_size=pool)


def _check_url(reader: Reader, text: str) -> str:
    def bad(message: str) -> str:
        reader.problem("databaseUrl", message)
        return "postgres"

    if not text.isascii() or not text.isprintable() or " " in text:
        return bad("contains spaces, control or non-ASCII characters; percent-encode them.")
    try:
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port
        username = parts.username
    except ValueError:
        # e.g. an unescaped [ or ] in the password, or a port out of range
        return bad("is not a valid URL; percent-encode special characters in the user and "
                   "password (e.g. [ as %5B, ] as %5D, @ as %40) and check the port.")
    scheme = parts.scheme.lower()
    kind = {"postgres": "postgres", "postgresql": "postgres", "mysql": "mysql"}.get(scheme)
    if kind is None:
        # The value is secret: name the scheme only when it is a well-known one (a pasted
        # "password:..." would otherwise show part of the password).
        shown = f"scheme {scheme!r}" if scheme in _KNOWN_SCHEMES else "its scheme"
        return bad(f"{shown} is not supported; use postgres://user:password@host:5432 "
                   "or mysql://user:password@host:3306.")
    if not username:
        reader.problem("databaseUrl", f"has no user; write it like {scheme}://user:password@host.")
    if not host or not is_hostname(host):
        reader.problem("databaseUrl", f"has no valid host; write it like "
                                      f"{scheme}://user:password@host.")
    if port == 0:
        reader.problem("databaseUrl", "has port 0; use the database's port (1 to 65535).")
    if parts.path not in ("", "/"):
        reader.problem("databaseUrl", "names a database; remove the path: the backend "
                                      "connects to the database named after the instance "
                                      "(dashes become underscores), which must exist.")
    if "?" in text or "#" in text:  # also an empty query or fragment, which urlsplit drops
        reader.problem("databaseUrl", "has a query string or fragment; remove it: the backend "
                                      "adds its own connection parameters and the driver "
                                      "refuses unknown ones (use requireDatabaseSsl and "
                                      "databaseCaCert for TLS).")
    return kind


def _is_certificate(base64_der: str) -> bool:
    try:  # the block holds only base64 characters and line breaks, which b64decode skips
        x509.load_der_x509_certificate(base64.b64decode(base64_der))
    except ValueError:  # also binascii.Error (bad padding)
        return False
    return True


def _check_ca_cert(reader: Reader) -> str:
    text = reader.string("databaseCaCert")
    if not text:
        return ""
    blocks = _PEM_BLOCK.findall(text)
    if not blocks or _PEM_BLOCK.sub("", text).strip() or not all(map(_is_certificate, blocks)):
        reader.problem("databaseCaCert", "is not PEM: give one or more certificates, each "
                                         "between -----BEGIN CERTIFICATE----- and "
                                         "-----END CERTIFICATE----- lines, and nothing else.")
        return ""
    return text.strip() + "\n"


"""Database settings: SQLite in the volume, an external Postgres/MySQL, or a provisioned one.

Messages never quote `databaseUrl`: it carries a password (see database_url.py).
"""

from __future__ import annotations

import base64
import re

from components.settings.database_url import check_url
from components.settings.model import DatabaseSettings
from components.settings.reader import Reader

# Upstream's backend pool default (crates/common/src/knobs.rs POSTGRES_MAX_CONNECTIONS).
UPSTREAM_POOL_SIZE = 128
# Postgres keeps superuser_reserved_connections (3) back; leave room for psql and backups.
POSTGRES_SPARE_CONNECTIONS = 10
MAX_POSTGRES_CONNECTIONS = 10_000
_PEM_BLOCK = re.compile(
    r"-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END CERTIFICATE-----")


def read_database(reader: Reader, version: str) -> DatabaseSettings:
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
                _report_too_few_connections(reader, server_max, pool, needed)
        return DatabaseSettings("provisioned-postgres", None, False, postgres_image,
                                pool_size=pool, server_max_connections=server_max or 0)
    if url is None:
        if ca_cert or pool:
            reader.problem("databaseCaCert" if ca_cert else "postgresMaxConnections",
                           "applies to a Postgres or MySQL database, but the deployment uses "
                           "SQLite; set databaseUrl or provisionPostgres, or remove it.")
        return DatabaseSettings("sqlite")
    kind = check_url(reader, url.reveal(), version, require_ssl, ca_cert)
    if pool and kind == "mysql":
        reader.problem("postgresMaxConnections", "sizes a Postgres pool; the database is MySQL.")
    return DatabaseSettings(kind, url, require_ssl, ca_cert=ca_cert, pool_size=pool)


def _report_too_few_connections(reader: Reader, server_max: int, pool: int,
                                needed: int) -> None:
    secret = reader.is_secret("postgresServerMaxConnections") or reader.is_secret(
        "postgresMaxConnections")
    pool_size = "its" if secret else f"{pool or UPSTREAM_POOL_SIZE}"
    raise_to = "" if secret else f" to {needed} or more"
    reader.problem("postgresServerMaxConnections",
                   f"{reader.mention('postgresServerMaxConnections', server_max)} leaves no "
                   f"room for the backend's pool of {pool_size} connections "
                   f"(postgresMaxConnections{'' if pool else ', upstream default'}) plus "
                   f"{POSTGRES_SPARE_CONNECTIONS} spare; raise it{raise_to}, or lower "
                   "postgresMaxConnections.")


def _is_certificate(base64_der: str) -> bool:
    # Imported here: only a stack with databaseCaCert pays for it (every run starts
    # a fresh interpreter).
    from cryptography import x509

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


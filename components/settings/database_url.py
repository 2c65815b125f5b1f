"""databaseUrl: scheme, user, host, and the connection parameters the backend passes on.

The value is secret, so messages never quote it. They name a query parameter only when
it is one the drivers know (a fixed word, not part of a password), and a parameter's
value only when it is one of a fixed set.

Upstream keeps the URL's query parameters from release 4d3b0a5 on (older releases refuse
any query string: crates/clusters/src/lib.rs) and appends its own. For Postgres that is
sslmode=require (unless DO_NOT_REQUIRE_SSL) and target_session_attrs=read-write, and the
pairs are collected into a map, so the appended value wins (crates/db_connection); for
MySQL it is require_ssl=true&verify_ca=true (unless DO_NOT_REQUIRE_SSL), read in order,
so the appended values win again. The drivers (tokio-postgres 0.7.13, mysql_async 0.36)
refuse a parameter they do not know, and the backend would not start.
"""

from __future__ import annotations

import ipaddress
from typing import Optional
from urllib.parse import parse_qsl, urlsplit

from components import releases
from components.settings.network import is_hostname
from components.settings.reader import Reader

# Schemes a mistaken databaseUrl is likely to have; any other is not echoed.
_KNOWN_SCHEMES = frozenset({
    "http", "https", "file", "sqlite", "sqlite3", "redis", "rediss", "mongodb", "mongodb+srv",
    "mariadb", "mssql", "sqlserver", "jdbc", "pg", "psql", "postgis", "cockroachdb", "mysqlx",
    "postgresql+psycopg2", "postgresql+asyncpg", "mysql+pymysql", "s3", "tcp"})
NUMBER, TEXT, IP = "a whole number", "text", "an IP address"
BOOLEAN = ("true", "false")
# Parameters each driver accepts and the backend leaves alone: name -> allowed values,
# or the kind of value.
POSTGRES_PARAMETERS = {
    "sslmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": ("read-write",),
    "load_balance_hosts": ("disable", "random"),
    "connect_timeout": NUMBER, "tcp_user_timeout": NUMBER, "keepalives": NUMBER,
    "keepalives_idle": NUMBER, "keepalives_interval": NUMBER, "keepalives_retries": NUMBER,
    "application_name": TEXT, "options": TEXT, "hostaddr": IP,
}
MYSQL_PARAMETERS = {
    "require_ssl": BOOLEAN, "verify_ca": BOOLEAN, "verify_identity": BOOLEAN,
    "built_in_roots": BOOLEAN, "tcp_nodelay": BOOLEAN, "enable_cleartext_plugin": BOOLEAN,
    "compression": ("fast", "on", "true", "best", *"0123456789"),
    "tcp_keepalive": NUMBER, "max_allowed_packet": NUMBER, "wait_timeout": NUMBER,
    "stmt_cache_size": NUMBER, "conn_ttl": NUMBER,
}
_IN_THE_URL = ("belongs in the URL itself (user:password@host:port), not in its query; move "
               "it there")
_POOL = "is overridden by the backend's own connection pool settings; remove it"
REFUSED = {
    "postgres": {
        "dbname": "names a database: the backend connects to the database named after the "
                  "instance (dashes become underscores), which must exist; remove it",
        "search_path": "is dropped by the backend, which uses the database's default "
                       "schema; remove it",
        "target_session_attrs": "is always read-write: the backend adds "
                                "target_session_attrs=read-write, which wins; remove it",
        "sslrootcert": "is not read by the backend's driver; remove it and give the CA "
                       "certificate in databaseCaCert",
        "sslnegotiation": "asks for direct TLS, which needs ALPN, and the backend's TLS "
                          "client offers none; remove it",
        **dict.fromkeys(("user", "password", "host", "port"), _IN_THE_URL),
    },
    "mysql": {
        **dict.fromkeys(("pool_min", "pool_max", "inactive_connection_ttl",
                         "ttl_check_interval", "abs_conn_ttl", "abs_conn_ttl_jitter",
                         "reset_connection"), _POOL),
        **dict.fromkeys(("socket", "prefer_socket"),
                        "connects through a Unix socket, which the backend's container "
                        "does not have; remove it"),
    },
}
_HINTS = {"sslmode": " (with TLS the backend always verifies the server's certificate, against "
                     "the system's roots and databaseCaCert)"}
# Other names the libpq and MySQL documentation use: a message may name them.
_OTHER_KNOWN_NAMES = frozenset({
    "sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir", "sslsni", "sslcompression",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "gssencmode", "gsslib",
    "krbsrvname", "passfile", "service", "requiressl", "require_auth", "requirepeer",
    "fallback_application_name", "replication", "client_encoding", "ssl", "ssl_mode",
    "ssl-mode", "sslca", "ssl_ca", "ssl-ca", "charset", "secure_auth", "client_found_rows",
    "database", "schema", "timezone", "db"})


def check_url(reader: Reader, text: str, version: str, require_ssl: bool,
              ca_cert: str) -> str:
    """The database kind ("postgres" or "mysql"); problems reported with the reader."""
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
    if "#" in text:  # also an empty fragment, which urlsplit drops
        reader.problem("databaseUrl", "has a fragment (#...); remove it: a connection URL "
                                      "has none.")
    if "?" in text:
        _check_query(reader, kind, parts.query, version, require_ssl, ca_cert)
    return kind


def _check_query(reader: Reader, kind: str, query: str, version: str, require_ssl: bool,
                 ca_cert: str) -> None:
    if releases.reads_since(version, releases.URL_PARAMETERS_SINCE) is False:
        since = releases.URL_PARAMETERS_SINCE[:7]
        reader.problem("databaseUrl", "has a query string, which the chosen version "
                                      f"{reader.mention('version', version[:12])} refuses "
                                      f"(releases from {since} on accept connection "
                                      "parameters); remove it or change `version`.")
        return
    accepted = POSTGRES_PARAMETERS if kind == "postgres" else MYSQL_PARAMETERS
    given: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        shown = _shown_name(name)
        if name in given:
            reader.problem("databaseUrl", f"gives {shown} twice; keep one.")
        elif name in REFUSED[kind] and (name not in accepted
                                        or _value_problem(accepted[name], value) is not None):
            reader.problem("databaseUrl", f"{shown} {REFUSED[kind][name]}.")
        elif name not in accepted:
            driver = "tokio-postgres" if kind == "postgres" else "mysql_async"
            reader.problem("databaseUrl", f"{shown} is not a connection parameter the "
                                          f"backend's {kind.replace('postgres', 'Postgres')} "
                                          f"driver ({driver}) takes; remove it. Accepted: "
                                          f"{', '.join(sorted(accepted))}.")
        elif (problem := _value_problem(accepted[name], value)) is not None:
            reader.problem("databaseUrl", f"{shown} must be {problem}{_HINTS.get(name, '')}.")
        given[name] = value
    for message in _contradictions(kind, given, require_ssl, bool(ca_cert)):
        reader.problem("databaseUrl", message)


def _shown_name(name: str) -> str:
    known = (name in POSTGRES_PARAMETERS or name in MYSQL_PARAMETERS or name in _OTHER_KNOWN_NAMES
             or any(name in refused for refused in REFUSED.values()))
    return (f"the parameter {name}" if known
            else "a query parameter (its name is not shown: the URL is secret)")


def _value_problem(allowed, value: str) -> Optional[str]:
    if allowed is TEXT:
        return None
    if allowed is NUMBER:
        return None if value.isdigit() and len(value) <= 10 else NUMBER
    if allowed is IP:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return IP
        return None
    return None if value in allowed else "one of " + ", ".join(allowed)


def _contradictions(kind: str, given: dict[str, str], require_ssl: bool,
                    ca_cert: bool) -> list[str]:
    found = []
    if kind == "postgres":
        mode = given.get("sslmode")
        if require_ssl and mode in ("disable", "prefer"):
            found.append(f"the parameter sslmode={mode} contradicts requireDatabaseSsl "
                         "(true): the backend adds sslmode=require, which wins. Set "
                         "requireDatabaseSsl to false to allow a connection without TLS, or "
                         "remove the parameter.")
        if mode == "disable" and ca_cert:
            found.append("the parameter sslmode=disable turns TLS off, so databaseCaCert "
                         "would never be used; remove one of them.")
        return found
    for name in ("require_ssl", "verify_ca"):
        if require_ssl and given.get(name) == "false":
            found.append(f"the parameter {name}=false contradicts requireDatabaseSsl (true): "
                         "the backend adds require_ssl=true&verify_ca=true, which win. Set "
                         "requireDatabaseSsl to false to relax TLS, or remove the parameter.")
    if given.get("require_ssl") == "false" and ca_cert:
        found.append("the parameter require_ssl=false turns TLS off, so databaseCaCert would "
                     "never be used; remove one of them.")
    if given.get("built_in_roots") == "false" and not ca_cert:
        found.append("the parameter built_in_roots=false leaves no certificate to verify the "
                     "server with; set databaseCaCert, or remove the parameter.")
    return found

#!/usr/bin/env python3
"""Stand-in for upstream's precompiled ``convex-local-backend`` binary (host target tests).

A TEST STAND-IN, not Convex. ``build_binary.py`` packs this module, the Docker stand-in's
server (``tests/standins/backend/server.py``) and a version string into one executable
file (a Python zip application), the way upstream ships one binary per release.

Command line: the flag names, defaults and required/optional rules of upstream's
``LocalConfig`` (``crates/local_backend/src/config.rs``, clap), as ``run_backend.sh``
uses them. Like clap, a usage error (unknown flag, missing partner flag, bad value)
exits 2 with a message on stderr; like the binary's ``main``, a configuration it cannot
run (no ``--instance-secret``, a secret that is not 32 bytes of hex, an origin without
``http(s)://``, a SQLite file in a missing directory) exits 1. ``--help`` and
``--version`` print to stdout and exit 0. The instance secret is read from the flag
only: upstream reads no INSTANCE_SECRET variable (only DISABLE_BEACON, as clap ``env``).

Behaviour once running (the Docker stand-in's server):
* ``GET /version`` on ``--port`` and ``--site-proxy-port`` answers 200 with the version:
  the one baked in at build time, else ``CONVEX_RELEASE_VERSION_DEV`` from the
  environment, else ``unknown`` (upstream's ``SERVER_VERSION``: the precompiled releases
  bake none in, so the real binary answers ``unknown`` unless that variable is set).
  With a file named ``NEVER_HEALTHY`` beside the executable it answers 503 forever.
* ``GET /api/check_admin_key`` checks admin keys as upstream does (see server.py).
* First start writes ``convex-standin-marker.json`` into the data directory (the SQLite
  file's directory, or the working directory for Postgres/MySQL), creates the SQLite
  file and the ``--local-storage`` directory, and logs FRESH or EXISTING.
* One log line per request on stdout (the journal under systemd).
* SIGINT stops it cleanly (exit 0), as upstream's ``ctrl_c`` handler does; SIGTERM is
  left at its default (the process dies by the signal), as upstream installs no handler
  for it: a unit should set ``KillSignal=SIGINT``.
* ``keygen admin-key --instance-name N --instance-secret S`` prints an admin key.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import signal
import sys
import threading
import time
from typing import Optional, Sequence
from urllib.parse import urlsplit

try:  # written by build_binary.py into the packed executable
    from _standin_build import VERSION as BAKED_VERSION  # type: ignore[import-not-found]
except ImportError:
    BAKED_VERSION = None

try:  # packed beside this module by build_binary.py
    import standin_server as server  # type: ignore[import-not-found]
except ImportError:  # run from the repository
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "backend"))
    import server  # type: ignore[no-redef]

PROG = "convex-local-backend"
DEV_INSTANCE_NAME = "carnitas"  # keybroker/dev/instance_name.txt
DB_DRIVERS = ("sqlite", "mysql-v5", "mysql-v5-multitenant", "postgres-v5")
DB_URL_SCHEMES = {
    "postgres-v5": ("postgres", "postgresql"),
    "mysql-v5": ("mysql",),
    "mysql-v5-multitenant": ("mysql",),
}
NEVER_HEALTHY_FILE = "NEVER_HEALTHY"


def server_version(env: "os._Environ[str] | dict[str, str]") -> str:
    """metrics::SERVER_VERSION_STR: build-time value, else the runtime dev variable."""
    for candidate in (BAKED_VERSION, env.get("CONVEX_RELEASE_VERSION_DEV")):
        if candidate and candidate != "dev":
            return candidate
    return "unknown"


# --------------------------------------------------------------------------- flags


def _u16(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid digit found in string: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not in 0..=65535")
    return value


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid IPv4 address syntax: {text!r}") from None


def _url(text: str) -> str:
    parts = urlsplit(text)
    if not parts.scheme or not (parts.netloc or parts.path):
        raise argparse.ArgumentTypeError(f"relative URL without a base: {text!r}")
    return text


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None


_TRUTHY = {"y", "yes", "t", "true", "on", "1"}
_FALSY = {"n", "no", "f", "false", "off", "0"}


def _boolish(text: str) -> bool:
    """clap's BoolishValueParser."""
    if text.lower() in _TRUTHY:
        return True
    if text.lower() in _FALSY:
        return False
    raise ValueError(text)


def build_parser(version: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, allow_abbrev=False,
        description="convex-local-backend TEST STAND-IN (convex-selfhost), not Convex.",
        epilog="Subcommand: keygen admin-key --instance-name NAME --instance-secret HEX")
    p.add_argument("-V", "--version", action="version", version=f"{PROG} {version}")
    p.add_argument("db_spec", nargs="?", default="convex_local_backend.sqlite3",
                   help="File path for SQLite, the file path; for postgres, a server URL.")
    p.add_argument("-d", "--db", choices=DB_DRIVERS, default="sqlite",
                   help="Database driver type.")
    p.add_argument("-i", "--interface", type=_ipv4, default="0.0.0.0",
                   help="Host interface to bind to")
    p.add_argument("-p", "--port", type=_u16, default=3210,
                   help="Host port daemon should bind to")
    p.add_argument("--site-proxy-port", type=_u16, default=3211,
                   help="Host port to bind for Convex HTTP Actions")
    p.add_argument("--convex-origin", help="Origin of the Convex server (requires --convex-site)")
    p.add_argument("--convex-site",
                   help="Origin of the Convex HTTP Actions (requires --convex-origin)")
    p.add_argument("--convex-http-proxy", type=_url, help="Optional proxy for Actions fetches")
    p.add_argument("--instance-name",
                   help="Instance name for this backend (requires --instance-secret)")
    p.add_argument("--instance-secret",
                   help="Instance secret for this backend (requires --instance-name)")
    p.add_argument("--sentry-identifier", help=argparse.SUPPRESS)
    p.add_argument("--local-storage", default=None,
                   help="Which directory should file storage use "
                        "[default: convex_local_storage]")
    p.add_argument("--s3-storage", action="store_true",
                   help="Use S3 storage instead of local storage.")
    p.add_argument("--do-not-require-ssl", action="store_true",
                   help="The persistence won't require SSL when talking to the database.")
    p.add_argument("--disable-beacon", action="store_true",
                   help="Do not send the self-host beacon [env: DISABLE_BEACON=]")
    p.add_argument("--beacon-tag", default="self-host", help=argparse.SUPPRESS)
    p.add_argument("--beacon-fields", type=_json, help=argparse.SUPPRESS)
    p.add_argument("--redact-logs-to-client", action="store_true",
                   help="Redact logs from clients.")
    p.add_argument("--local-log-sink", help="Path of local file for logs to be routed to.")
    return p


def build_keygen_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"{PROG} keygen admin-key", allow_abbrev=False,
                                description="Print an admin key for the given instance to stdout.")
    p.add_argument("--instance-name", required=True)
    p.add_argument("--instance-secret", required=True)
    return p


def parse_args(argv: Sequence[str], env) -> argparse.Namespace:
    """clap's parse: exits 2 on a usage error, 0 after --help/--version."""
    parser = build_parser(server_version(env))
    args = parser.parse_args(argv)
    for flag, partner in (("instance_name", "instance_secret"),
                          ("instance_secret", "instance_name"),
                          ("convex_origin", "convex_site"),
                          ("convex_site", "convex_origin")):
        if getattr(args, flag) is not None and getattr(args, partner) is None:
            parser.error(f"the following required arguments were not provided: "
                         f"--{partner.replace('_', '-')} (required by --{flag.replace('_', '-')})")
    if args.local_storage is not None and args.s3_storage:
        parser.error("the argument '--local-storage <LOCAL_STORAGE>' cannot be used with "
                     "'--s3-storage'")
    if args.local_storage is None:
        args.local_storage = "convex_local_storage"
    if not args.disable_beacon and env.get("DISABLE_BEACON"):
        try:
            args.disable_beacon = _boolish(env["DISABLE_BEACON"])
        except ValueError:
            parser.error(f"invalid value '{env['DISABLE_BEACON']}' for '--disable-beacon' "
                         "(from DISABLE_BEACON)")
    return args


# --------------------------------------------------------------------------- start-up


class StartupError(Exception):
    """What upstream's main reports as an error (exit 1)."""


def instance_secret(args: argparse.Namespace) -> bytes:
    if args.instance_secret is None:
        raise StartupError("--instance-secret is required. Generate one with "
                           "`openssl rand -hex 32`")
    try:
        raw = bytes.fromhex(args.instance_secret)
    except ValueError:
        raise StartupError("Couldn't hexdecode key") from None
    if len(raw) != 32:
        raise StartupError(f"Hex-decoded key was {len(raw)} bytes, not 32")
    return raw


def check_origin(kind: str, value: Optional[str], default: str) -> str:
    origin = default if value is None else value
    if origin and not origin.startswith(("https://", "http://")):
        raise StartupError(f"{kind} url should start with https:// or http:// but got '{origin}'")
    return origin


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def data_dir_for(args: argparse.Namespace) -> str:
    """Where the stand-in keeps its marker: the SQLite file's directory, else the cwd."""
    if args.db != "sqlite":
        scheme = urlsplit(args.db_spec).scheme
        if scheme not in DB_URL_SCHEMES[args.db]:
            raise StartupError(f"--db {args.db} needs a {DB_URL_SCHEMES[args.db][0]}:// URL as "
                               f"the database spec, got scheme {scheme or 'none'!r}")
        return os.getcwd()
    directory = os.path.dirname(os.path.abspath(args.db_spec))
    if not os.path.isdir(directory):
        raise StartupError(f"unable to open database file: {args.db_spec} "
                           f"(directory {directory} does not exist)")
    return directory


def never_healthy_file() -> str:
    return os.path.join(os.path.dirname(os.path.realpath(sys.argv[0])), NEVER_HEALTHY_FILE)


def keygen(argv: Sequence[str]) -> int:
    if not argv or argv[0] != "admin-key":
        print(f"error: unrecognized subcommand {argv[0] if argv else ''!r}; "
              f"usage: {PROG} keygen admin-key --instance-name NAME --instance-secret HEX",
              file=sys.stderr)
        return 2
    args = build_keygen_parser().parse_args(argv[1:])
    try:
        secret = instance_secret(args)
    except StartupError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    if server.AESGCMSIV is None:
        print("Error: python cryptography with AES-GCM-SIV (>= 42) is missing", file=sys.stderr)
        return 1
    # AdminKey protobuf: 2 issued_s, 3 member_id (0, still encoded), no instance name.
    proto = b"\x10" + _varint(int(time.time())) + b"\x18" + _varint(0)
    nonce = secrets.token_bytes(server.NONCE_LEN)
    sealed = server.AESGCMSIV(server.derive_admin_key_key(secret)).encrypt(
        nonce, proto, bytes([server.ADMIN_KEY_VERSION]))
    blob = bytes([server.ADMIN_KEY_VERSION]) + nonce + sealed
    print(f"{args.instance_name}|{blob.hex()}")
    return 0


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    env = os.environ
    if argv and argv[0] == "keygen":
        return keygen(argv[1:])
    args = parse_args(argv, env)
    version = server_version(env)
    log = server.log
    try:
        secret = instance_secret(args)
        origin = check_origin("Origin", args.convex_origin, f"http://127.0.0.1:{args.port}")
        site = check_origin("Site", args.convex_site, f"http://127.0.0.1:{args.site_proxy_port}")
        data_dir = data_dir_for(args)
    except StartupError as e:
        print(f"Error: {e}", file=sys.stderr, flush=True)
        return 1
    if server.AESGCMSIV is None:
        print("Error: python cryptography with AES-GCM-SIV (>= 42) is missing", file=sys.stderr)
        return 1
    name = args.instance_name or DEV_INSTANCE_NAME
    log(f"Starting a Convex backend (stand-in {version}, instance {name}, "
        f"origin {origin or '-'}, site {site or '-'})")
    if not args.disable_beacon:
        log("The self-host Convex backend will periodically communicate with a remote beacon "
            "server (stand-in: it sends nothing).")
    never_healthy = os.path.exists(never_healthy_file())
    config = server.Config(instance_name=name, secret=secret, version=version,
                           data_dir=data_dir, api_port=args.port, site_port=args.site_proxy_port,
                           never_healthy=never_healthy, legacy_check=False)
    server.prepare_data_dir(config)
    if args.db == "sqlite":
        if not os.path.exists(args.db_spec):
            with open(args.db_spec, "w", encoding="utf-8") as f:
                f.write(f"convex-local-backend stand-in database (not SQLite), {name}\n")
        log(f"persistence: sqlite at {os.path.abspath(args.db_spec)}")
    else:
        log(f"persistence: {args.db} at {redact_url(args.db_spec)} database "
            f"{name.replace('-', '_')} (require_ssl={not args.do_not_require_ssl}; "
            "stand-in: not connecting)")
    if args.s3_storage:
        log("storage: s3 (stand-in: not connecting)")
    else:
        os.makedirs(args.local_storage, exist_ok=True)
        log(f"storage: local directory {os.path.abspath(args.local_storage)}")
    try:
        servers = [server.make_server(config, "api", args.port, args.interface),
                   server.make_server(config, "site", args.site_proxy_port, args.interface)]
    except OSError as e:
        log(f"Error: cannot bind {args.interface}: {e}")
        return 1
    stop = threading.Event()

    def on_sigint(_signum, _frame) -> None:
        log("Received Ctrl-C signal!")
        stop.set()

    signal.signal(signal.SIGINT, on_sigint)
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    log(f"listening on {args.interface}:{args.port} (api) and "
        f"{args.interface}:{args.site_proxy_port} (site)"
        + (f" -- NEVER HEALTHY ({never_healthy_file()}): /version answers 503"
           if never_healthy else ""))
    while not stop.wait(3600):
        pass
    for s in servers:
        s.shutdown()
        s.server_close()
    log("Server successfully shut down.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

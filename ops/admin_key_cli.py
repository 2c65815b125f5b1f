"""Command line for admin keys: issue or verify, the secret read from the environment.

The instance secret is read only from the INSTANCE_SECRET environment variable, never
from an argument, which would show in process lists::

    python -m components.admin_key generate --instance-name NAME [--read-only]
        [--member-id N] [--system] [--issued-s N]
    python -m components.admin_key verify --instance-name NAME KEY
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn, Optional, Sequence

from components.admin_key import (
    DEFAULT_ISSUED_S,
    AdminKeyError,
    check_admin_key,
    issue_admin_key,
    parse_instance_secret,
)


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Never echo stray arguments: a secret pasted onto the command line
        # must not be copied into logs as well.
        if message.startswith("unrecognized arguments"):
            message = (
                "unrecognized arguments (the instance secret is read only from "
                "the INSTANCE_SECRET environment variable)"
            )
        self.exit(2, f"error: {message}; see --help\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="python -m components.admin_key",
        description="Issue or verify Convex admin keys. The instance secret "
        "(64 hex characters) is read from the INSTANCE_SECRET environment variable.",
    )
    commands = parser.add_subparsers(dest="command", required=True)  # of the same class
    generate = commands.add_parser("generate", help="print a deterministic admin key")
    generate.add_argument("--instance-name", required=True)
    generate.add_argument("--read-only", action="store_true")
    generate.add_argument("--member-id", type=int, default=0)
    generate.add_argument("--system", action="store_true")
    generate.add_argument("--issued-s", type=int, default=DEFAULT_ISSUED_S)
    verify = commands.add_parser("verify", help="check an admin key against the secret")
    verify.add_argument("--instance-name", required=True)
    verify.add_argument("key")
    return parser


def _secret_from_environment() -> str:
    secret = os.environ.get("INSTANCE_SECRET")
    if not secret:
        raise AdminKeyError(
            "INSTANCE_SECRET is not set; export the instance secret "
            "(64 hex characters) in that environment variable"
        )
    parse_instance_secret(secret)
    return secret


def _fail(error: AdminKeyError, exit_code: int) -> int:
    print(f"error: {error}", file=sys.stderr)
    return exit_code


def _generate(args: argparse.Namespace, secret: str) -> int:
    try:
        key = issue_admin_key(
            args.instance_name,
            secret,
            member_id=args.member_id,
            read_only=args.read_only,
            system=args.system,
            issued_s=args.issued_s,
        )
    except AdminKeyError as error:
        return _fail(error, 2)
    print(key)
    return 0


def _verify(args: argparse.Namespace, secret: str) -> int:
    try:
        info = check_admin_key(args.key, args.instance_name, secret)
    except AdminKeyError as error:
        return _fail(error, 1)
    print(info.describe())
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        secret = _secret_from_environment()
    except AdminKeyError as error:
        return _fail(error, 2)
    if args.command == "generate":
        return _generate(args, secret)
    return _verify(args, secret)

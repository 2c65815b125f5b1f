"""A stack's settings for the operator tools, read as the program reads them: `pulumi config
--json --show-secrets` (secrets included, never printed), checked by components.settings."""

from __future__ import annotations

import json
from typing import Callable

from ops.commands import last_line, run_command

PULUMI_TIMEOUT = 120.0


class StackSettingsError(Exception):
    """The stack's config cannot be read or is not valid; str() says why."""


def stack_config(stack: str, run: Callable = run_command) -> dict:
    """The stack's config as `pulumi config --json` shows it (secrets included)."""
    done = run(["pulumi", "config", "--json", "--show-secrets", "--stack", stack],
               PULUMI_TIMEOUT)
    if done.returncode != 0:
        raise StackSettingsError(f"cannot read the config of stack {stack}: "
                                 f"{last_line(done.stderr)}")
    try:
        config = json.loads(done.stdout)
    except ValueError:
        raise StackSettingsError(f"`pulumi config --json` of stack {stack} is not "
                                 "JSON") from None
    return config if isinstance(config, dict) else {}


def stack_settings(stack: str, config: dict):
    """The stack's settings, read and checked as the program reads them."""
    from components.settings import ConfigError, settings_from_config

    raw = {key: item.get("value") for key, item in config.items()
           if isinstance(item, dict) and item.get("value") is not None}
    secret = {key for key, item in config.items() if isinstance(item, dict) and item.get("secret")}
    try:
        return settings_from_config(stack, raw, secret)
    except ConfigError as error:
        raise StackSettingsError(f"the stack's settings are not valid: {error}") from None

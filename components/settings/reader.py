"""Parsing raw config strings into typed values, collecting problems instead of raising.

Every value is untrusted. A problem names the key and says what is wrong and how to fix
it; it quotes the value only when the key is neither declared secret nor set with
`--secret`, and then only a short, escaped excerpt (no control characters reach a log).
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Optional, Sequence

import pulumi

from components import rules
from components.settings.keys import KEYS_BY_NAME, NAMESPACE

# Longer numbers than this are refused before int() sees them: Python refuses to parse
# more than 4300 digits (a ValueError), and no setting needs more than a few.
_MAX_NUMBER_DIGITS = 30
_QUOTE_LIMIT = 60


class ConfigError(pulumi.RunError):
    """Every configuration problem of a stack, reported at once (no traceback)."""

    def __init__(self, stack: str, problems: Sequence[str]):
        self.problems = tuple(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(
            f"stack '{stack}' has {count} configuration {noun} (nothing was changed):\n{lines}")


class SecretValue:
    """A configuration secret held in plain text only in memory; its repr hides it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretValue(<hidden>)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def quote(value: str) -> str:
    """A short, printable rendering of a (non-secret) value for a message."""
    text = value if len(value) <= _QUOTE_LIMIT else value[:_QUOTE_LIMIT] + "..."
    return ascii(text)


class Reader:
    """Typed access to the raw config of one stack; problems are collected in order."""

    def __init__(self, raw: Mapping[str, Any], secret_keys: set[str], stack: str = ""):
        self.raw = raw
        self.secret_keys = secret_keys
        # Outside dev stacks an image tag must pin one build, not a line of releases.
        self.strict_images = not rules.is_dev_stack(stack)
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{NAMESPACE}:{key}: {message}")

    def is_secret(self, name: str) -> bool:
        return KEYS_BY_NAME[name].secret or f"{NAMESPACE}:{name}" in self.secret_keys

    def shown(self, name: str, value: Optional[str] = None) -> str:
        """How a message refers to the value of `name`: quoted, or not at all if secret."""
        if self.is_secret(name):
            return "the (secret) value"
        return quote(self.string(name) if value is None else value)

    def mention(self, name: str, value: object) -> str:
        """How a message names a value of `name` unquoted (a number, an address, a short
        version): as it is, or not at all if secret."""
        return "the (secret) value" if self.is_secret(name) else str(value)

    def _value(self, name: str) -> Any:
        full = f"{NAMESPACE}:{name}"
        return self.raw[full] if full in self.raw else KEYS_BY_NAME[name].default

    def differs_from_default(self, name: str) -> bool:
        key = KEYS_BY_NAME[name]
        probe = Reader(self.raw, self.secret_keys)  # parse quietly: problems are reported once
        parse = {"string": probe.string, "integer": probe.integer,
                 "boolean": probe.boolean}[key.type]
        return parse(name) not in (key.default, None)

    def string(self, name: str) -> str:
        return str(self._value(name)).strip()

    def integer(self, name: str, low: int = 0, high: int = 2**31 - 1,
                unit: str = "") -> Optional[int]:
        """A whole number within [low, high]; None (with a problem) otherwise."""
        text = self.string(name)
        if not re.fullmatch(r"[+-]?\d{1,%d}" % _MAX_NUMBER_DIGITS, text):
            self.problem(name, f"{self.shown(name)} is not a whole number; set it with "
                               f"`pulumi config set {name} <number>`.")
            return None
        number = int(text)
        if not low <= number <= high:
            suffix = f" {unit}" if unit else ""
            self.problem(name, f"{self.mention(name, number)} is out of range; use a number "
                               f"from {low} to {high}{suffix}.")
            return None
        return number

    def boolean(self, name: str) -> bool:
        value = self._value(name)
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        self.problem(name, f"{self.shown(name)} is not a boolean; use true or "
                           "false.")
        return bool(KEYS_BY_NAME[name].default)

    def string_list(self, name: str) -> list[str]:
        value = self._value(name)
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else []
            except (json.JSONDecodeError, RecursionError):
                self.problem(name, "is not a list; write it in the stack file as a YAML list "
                                   "of strings.")
                return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(name, "must be a list of strings.")
            return []
        return [v.strip() for v in value]

    def choice(self, name: str, choices: Sequence[str]) -> str:
        value = self.string(name)
        if value not in choices:
            shown = ", ".join(repr(c) for c in choices)
            self.problem(name, f"{self.shown(name)} is not one of {shown}.")
            return KEYS_BY_NAME[name].default
        return value

    def secret(self, name: str) -> Optional[SecretValue]:
        """A key that must hold a secret: refused when stored in plain text."""
        value = self.string(name)
        if not value:
            return None
        if f"{NAMESPACE}:{name}" not in self.secret_keys:
            self.problem(name, "is stored in plain text in the stack file; remove it and "
                               f"set it again with `pulumi config set --secret {name} ...`.")
        return SecretValue(value)

    def image(self, name: str) -> str:
        """A pinned image reference (exact tag or sha256 digest; a full version outside
        dev stacks)."""
        image = self.string(name)
        problem = rules.image_ref_problem(image, self.strict_images)
        if problem is not None and self.is_secret(name):
            problem = ("is not pinned to one build (a moving or floating tag, no tag, or not "
                       "an image reference)")  # the detail would quote the tag
        if problem is not None:
            self.problem(name, f"{self.shown(name)} {problem}; name an exact, pinned "
                               f"version, e.g. {KEYS_BY_NAME[name].default}.")
        return image

"""Property-based: any value for any key gives a clean configuration error or a valid program.

Generated values (hostile strings, unicode, control characters, huge and tiny numbers,
wrong JSON shapes), some set as secrets, must never crash the settings, never echo a
secret, and name the keys they complain about. When the settings accept a config, the
program built from it must be one Docker accepts.

Profiles (HYPOTHESIS_PROFILE): "ci" (default: fixed seed, bounded, part of ./test.sh)
and "deep" (many more examples, for local runs).
"""

from __future__ import annotations

import json
import os
import re

from harness import NAMED_DOCKER_TYPES, evaluate, physical_name, stack_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.settings import KEYS, KEYS_BY_NAME, ConfigError, settings_from_config

settings.register_profile("ci", max_examples=120, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Every secret value carries this marker, so any echo of it (whole or cut) is found.
MARKER = "SeCrEt"
HOSTILE_FRAGMENTS = [
    "", " ", "\n", "\r\n", "\x00", "\t", "{", "}", "[", "]", "@", ":", "/", "?", "#", "%",
    "..", "-", "_", "'", '"', "\\", "$(id)", "`id`", ";", "|", "\u202e", "é", "☃", "\U0001f600",
    "http://", "https://", "https://[::1", "http://]x", "user:pw@", "localhost", "0.0.0.0",
    "::", "fe80::1%eth0", "latest", "LATEST", "@sha256:abc", "9" * 40, "-1", "0", "1e9",
    "nan", "inf", "1_000", "true", "false", "null", "[]", "{}", '["A=1"]', "x" * 300,
    "postgres://u:p@db:5432", "mysql://u:p@db", "convex-prod-pgdata", "--instance-secret",
]
STACKS = ["dev", "staging", "prod", "preview", "Feature_X"]


def hostile_text():
    fragments = st.sampled_from(HOSTILE_FRAGMENTS)
    return st.one_of(
        st.lists(fragments, max_size=4).map("".join),
        st.text(max_size=40),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
    )


def value_for(key):
    """A raw CLI value for the key: usually of its type's shape, often not."""
    plausible = {
        "integer": st.integers(min_value=-5, max_value=70_000).map(str),
        "boolean": st.sampled_from(["true", "false"]),
        "array": st.lists(hostile_text(), max_size=3).map(json.dumps),
        "string": hostile_text(),
    }[key.type]
    wrong_shape = st.one_of(
        hostile_text(),
        st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=3), inner, max_size=2),
                     max_leaves=6).map(json.dumps),
    )
    return st.one_of(plausible, plausible, wrong_shape)


@st.composite
def configurations(draw):
    names = draw(st.lists(st.sampled_from([k.name for k in KEYS]), min_size=1, max_size=4,
                          unique=True))
    overrides, secrets = {}, {}
    for name in names:
        value = draw(value_for(KEYS_BY_NAME[name]))
        if KEYS_BY_NAME[name].secret or draw(st.booleans()):
            secrets[name] = f"{MARKER}{value}{MARKER}"
        else:
            overrides[name] = value.replace(MARKER, "")
    return draw(st.sampled_from(STACKS)), overrides, secrets


def check_problems(problems, overrides, secrets):
    assert problems, "a ConfigError without problems"
    for problem in problems:
        assert MARKER not in problem, f"a secret was echoed: {problem[:120]!r}"
        assert "Traceback" not in problem
        assert problem.isprintable(), f"an unescaped control character: {problem!r}"
        key = re.match(r"convex-selfhost:([A-Za-z0-9]+): ", problem)
        assert key, f"the problem does not start with the key: {problem[:80]!r}"
        assert key.group(1) in KEYS_BY_NAME, problem


def load(stack, overrides, secrets):
    config, secret_keys = stack_config(stack if stack != "Feature_X" else None, overrides,
                                       secrets)
    return settings_from_config(stack, config, set(secret_keys))


@given(configurations())
def test_any_value_gives_a_clean_error_or_valid_settings(case):
    stack, overrides, secrets = case
    try:
        loaded = load(stack, overrides, secrets)
    except ConfigError as error:
        check_problems(error.problems, overrides, secrets)
        assert MARKER not in str(error)
        return
    assert all(MARKER not in warning for warning in loaded.warnings)
    for d in loaded.deployments:
        assert all(1 <= p <= 65535 for p in (d.backend_port, d.site_port, d.dashboard_port))
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", d.instance_name)
        assert len(d.instance_name) <= 63
        for url in (d.cloud_origin, d.site_origin):
            assert MARKER not in url and url.isascii() and url.isprintable() and " " not in url


DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")


@settings(max_examples=int(os.environ.get("CONVEX_SELFHOST_PROGRAM_EXAMPLES", "25")))
@given(configurations())
def test_accepted_configurations_build_a_program_docker_accepts(case):
    stack, overrides, secrets = case
    try:
        load(stack, overrides, secrets)
    except ConfigError:
        return
    run = evaluate(stack if stack != "Feature_X" else None, overrides, secrets,
                   stack_name=stack)
    for resource in run.resources:
        if resource.type in NAMED_DOCKER_TYPES:
            assert DOCKER_NAME.fullmatch(physical_name(resource)), physical_name(resource)
    for container in run.of_type("docker:index/container:Container"):
        for port in container.inputs.get("ports", []):
            assert 1 <= port["external"] <= 65535
        for entry in container.inputs.get("envs") or []:
            assert "\n" not in entry and "\x00" not in entry
        for upload in container.inputs.get("uploads") or []:
            assert MARKER not in upload["content"]
        for label in container.inputs.get("labels", []):
            assert MARKER not in label["value"] and label["value"].isprintable()

"""Golden snapshots: everything the program sends the engine, for each stack and feature mix.

Each snapshot in tests/golden/ records, for every resource (in URN order) the program registers, its
type, name, parent, inputs as sent (secret values marked), options (protect, retain,
replace/ignore changes, additional secret outputs) and dependencies, plus the stack
outputs and their secretness and the warnings. Any change to what would be deployed
changes a snapshot, so it shows up here and in review as a diff.

After an intended change, rewrite the snapshots and read the diff before committing:
    UPDATE_GOLDEN=1 ./test.sh tests/test_golden.py
"""

from __future__ import annotations

import base64
import json
import re

import dill
import pytest
from harness import EXAMPLE_STACKS, REPO, SECRET_SIG, SIG_KEY, assert_matches_golden, evaluate
from test_settings import CA_PEM

from components.core.backups import ENTRY, client_files

GOLDEN = REPO / "tests" / "golden"
SECRET = "5f" * 32

# name: (stack file, overrides, secrets, other evaluate() arguments, Docker API version)
VARIANTS = {
    "dev": ("dev", {}, {}, {}, "1.44"),
    "staging": ("staging", {}, {}, {}, "1.44"),
    "prod": ("prod", {}, {"awsAccessKeyId": "AKIAEXAMPLE", "awsSecretAccessKey": "s3cr3t"},
             {}, "1.44"),
    "preview": ("preview", {}, {}, {}, "1.44"),
    "dev-restore": ("dev-restore", {}, {}, {}, "1.44"),
    "host": ("host", {}, {}, {}, "1.44"),
    "kubernetes": ("kubernetes", {}, {"databaseUrl": "postgres://u:p@db.example.com:5432"},
                   {}, "1.44"),
    # Backups, limits and a remote engine too old for the healthcheck start interval.
    "dev-backups-remote-old-engine": (
        "dev", {"backupSchedule": "15 3 * * *", "backupKeep": 3, "memoryLimitMb": 1024,
                "cpus": "0.5", "restartPolicy": "always", "logMaxSizeMb": 20, "logMaxFiles": 2,
                "docker:host": "ssh://deploy@convex.example.com", "dashboard": False,
                "publicHost": "convex.example.com", "bindAddress": "0.0.0.0",
                "disableMetricsEndpoint": True},
        {}, {}, "1.41"),
    # An external Postgres over TLS, an adopted secret and volume, extra env and flags.
    "adopted-external-postgres": (
        "staging", {"instanceName": "convex-self-hosted", "dataVolumeName": "self-hosted_data",
                    "databaseCaCert": CA_PEM, "requireDatabaseSsl": True,
                    "extraEnv": ["MY_KNOB=7"], "backendArgs": ["--convex-http-proxy", "http://proxy:3128"],
                    "logFormat": "json", "rustBacktrace": "full"},
        {"instanceSecret": SECRET, "databaseUrl": "postgres://convex:pw@db.internal:5432"},
        {}, "1.44"),
    # An older release: version-gated variables (ACTIONS_USER_TIMEOUT_SECS and friends).
    "dev-older-release": ("dev", {"version": "4d3b0a5de955a258e70e3813bbff486051d88820"},
                          {}, {}, "1.44"),
    # Another program using the components with literal arguments.
    "backend-alone": (None, {}, {}, {"program": REPO / "tests" / "programs" / "backend_alone.py",
                                     "stack_name": "elsewhere"}, "1.44"),
}


def _normal(value):
    """Inputs as sent, with secrets marked and host- or build-dependent blobs named."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return {"<secret>": _normal(value.get("value"))}
        if "__provider" in value:
            # A dynamic resource's provider: sent (as a secret) as dill's pickle of it.
            provider = dill.loads(base64.b64decode(value["__provider"]["value"]))
            value = {**value, "__provider": {"<secret>": f"<{type(provider).__qualname__}>"}}
        return {key: _normal(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [_normal(item) for item in value]
    if isinstance(value, str) and value in CLIENT_TEXTS:
        return f"<contents of {CLIENT_TEXTS[value]}>"
    return value


# The backup client's files, as uploaded: their text is not repeated in the snapshots.
CLIENT_TEXTS = {text: "ops/backup.py" if name == ENTRY else f"ops/{name}"
                for name, text in client_files().items()}


def snapshot(name: str, monkeypatch) -> dict:
    stack, overrides, secrets, extra, api_version = VARIANTS[name]
    monkeypatch.setenv("CONVEX_SELFHOST_DOCKER_API_VERSION", api_version)
    run = evaluate(stack, overrides, secrets, **extra)
    return {
        "resources": [{
            "type": r.type, "name": r.name, "urn": r.urn, "parent": r.parent,
            "custom": r.custom, "provider": r.provider, "inputs": _normal(r.raw),
            "protect": r.protect, "retainOnDelete": r.retain_on_delete,
            "deleteBeforeReplace": r.delete_before_replace,
            "dependencies": sorted(r.dependencies),
            "additionalSecretOutputs": sorted(r.additional_secret_outputs),
            "replaceOnChanges": sorted(r.replace_on_changes),
            "ignoreChanges": sorted(r.ignore_changes),
        } for r in sorted(run.resources, key=lambda r: r.urn)],
        "outputs": {key: {"value": _normal(run.outputs[key]),
                          "secret": key in run.secret_outputs} for key in sorted(run.outputs)},
        "warnings": run.warnings,
        # What each component registers as its outputs (the stack's root outputs are above).
        "componentOutputs": {urn: _normal(outputs) for urn, outputs in sorted(
            run.component_outputs.items()) if "::pulumi:pulumi:Stack::" not in urn},
    }


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_the_program_sends_exactly_the_golden_snapshot(name, monkeypatch):
    got = json.dumps(snapshot(name, monkeypatch), indent=1, sort_keys=True) + "\n"
    assert_matches_golden(GOLDEN / f"{name}.json", got)


def test_every_example_stack_file_has_a_snapshot():
    assert set(EXAMPLE_STACKS) <= set(VARIANTS)
    for stack in EXAMPLE_STACKS:
        assert (REPO / "stacks" / f"Pulumi.{stack}.yaml").is_file(), stack


def _unmarked_strings(value, inside_secret=False):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _unmarked_strings(item, inside_secret or key == "<secret>")
    elif isinstance(value, list):
        for item in value:
            yield from _unmarked_strings(item, inside_secret)
    elif isinstance(value, str) and not inside_secret:
        yield value


def test_secrets_appear_in_snapshots_only_marked_secret():
    texts = []
    for path in sorted(GOLDEN.glob("*.json")):
        snap = json.loads(path.read_text())
        assert '"<secret>"' in path.read_text(), path.name
        texts += [(path.name, text) for r in snap["resources"]
                  for text in _unmarked_strings(r["inputs"])]
        texts += [(path.name, text) for entry in snap["outputs"].values()
                  if not entry["secret"] for text in _unmarked_strings(entry["value"])]
        texts += [(path.name, text) for outputs in snap["componentOutputs"].values()
                  for text in _unmarked_strings(outputs)]
    assert texts
    for secret in (SECRET, "s3cr3t", "convex:pw@", "INSTANCE_SECRET="):
        assert [name for name, text in texts if secret in text] == [], secret
    # An admin key (name|01hex...); the host target's scripts have shell pipes.
    assert [name for name, text in texts if re.search(r"[a-z0-9-]\|01[0-9a-f]{16}", text)] == []

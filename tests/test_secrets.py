"""No secret reaches state, outputs, names or labels in plain text."""

import pytest
from harness import SAMPLE_SECRET, STACKS, evaluate, is_secret_value

DATABASE_URL = "postgres://convex:db-pa55word@db.internal:5432"
AWS_KEY_ID, AWS_SECRET, AWS_TOKEN = "AKIAEXAMPLEKEYID", "aws-secret-EXAMPLE", "aws-token-EXAMPLE"

CASES = {f"stack-{stack}": (stack, {}, {}) for stack in STACKS}
CASES["external-db-s3-adopted"] = (
    "staging", {"s3Region": "eu-west-1", "s3BucketPrefix": "acme"},
    {"databaseUrl": DATABASE_URL, "instanceSecret": SAMPLE_SECRET,
     "awsAccessKeyId": AWS_KEY_ID, "awsSecretAccessKey": AWS_SECRET,
     "awsSessionToken": AWS_TOKEN})


def plain_strings(value, inside_secret=False):
    """Every string leaf not wrapped in the engine's secret signature."""
    if isinstance(value, dict):
        if is_secret_value(value):
            return
        for item in value.values():
            yield from plain_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from plain_strings(item)
    elif isinstance(value, str):
        yield value


def secret_values(run, secrets):
    values = set(secrets.values())
    for name in ("instanceSecret", "adminKey", "readOnlyAdminKey"):
        output = run.outputs[name]
        values.update(output.values() if isinstance(output, dict) else [output])
    for container in run.containers().values():
        for entry in container.inputs.get("envs") or []:
            name, _, value = entry.partition("=")
            if name in ("POSTGRES_PASSWORD", "POSTGRES_URL", "INSTANCE_SECRET"):
                values.add(value)
    # The key part after "name|" is what must not leak.
    return {v.split("|", 1)[-1] for v in values if v}


@pytest.mark.parametrize("stack,overrides,secrets", CASES.values(), ids=CASES.keys())
def test_no_secret_in_plain_inputs_names_or_labels(stack, overrides, secrets):
    run = evaluate(stack, overrides, secrets)
    hidden = secret_values(run, secrets)
    assert SAMPLE_SECRET in hidden or not secrets
    for resource in run.resources:
        for text in [resource.urn, *plain_strings(resource.raw)]:
            leaked = [s for s in hidden if s in text]
            assert not leaked, f"{resource.name} exposes a secret in {text[:60]!r}"


@pytest.mark.parametrize("stack,overrides,secrets", CASES.values(), ids=CASES.keys())
def test_secret_outputs_are_secret_and_others_are_not(stack, overrides, secrets):
    run = evaluate(stack, overrides, secrets)
    assert run.secret_outputs == {"instanceSecret", "adminKey", "readOnlyAdminKey", "envLocal"}
    hidden = secret_values(run, secrets)
    for name, value in run.outputs.items():
        if name not in run.secret_outputs:
            assert not any(s in str(value) for s in hidden), name


def test_envs_with_credentials_are_secret_everywhere():
    run = evaluate(*CASES["external-db-s3-adopted"])
    secrets = (AWS_SECRET, AWS_KEY_ID, AWS_TOKEN, DATABASE_URL, SAMPLE_SECRET)
    for container in run.containers().values():
        envs = " ".join(container.inputs.get("envs") or [])
        if any(s in envs for s in secrets):
            assert "envs" in container.additional_secret_outputs
            # Entries holding a secret are secret; the others stay readable in a diff.
            for entry in plain_strings(container.raw["envs"]):
                assert not any(s in entry for s in secrets), entry[:40]
    backend = run.containers()["convex-staging-backend"]
    assert "RUST_LOG=info" in list(plain_strings(backend.raw["envs"]))


def test_extra_env_set_as_a_secret_stays_secret_entry_by_entry():
    run = evaluate("dev", {}, {"extraEnv": ["STRIPE_SECRET_KEY=sk_live_x", "MY_KNOB=7"]})
    raw = run.containers()["convex-dev-backend"].raw["envs"]
    plain = list(plain_strings(raw))
    assert not any("sk_live_x" in entry or "MY_KNOB" in entry for entry in plain)
    assert sum(1 for entry in raw if is_secret_value(entry)) == 3  # and INSTANCE_SECRET


def test_nothing_secret_is_logged():
    stack, overrides, secrets = CASES["external-db-s3-adopted"]
    # An unknown version and a moving tag make the program warn; with secrets set too.
    run = evaluate("dev", {**overrides, "version": "f" * 40}, secrets)
    assert len(run.warnings) == 1 and "version-specific checks were skipped" in run.warnings[0]
    assert not any(SAMPLE_SECRET in w or "db-pa55word" in w for w in run.warnings)
    run = evaluate("dev", {**overrides, "version": "latest"}, {**secrets,
                                                               "releaseVersionDev": "1.2.3"})
    assert len(run.warnings) == 1 and "moves" in run.warnings[0]

"""Settings: typed values, defaults, and one clear message per bad input."""

import pulumi
import pytest

from components.settings import (
    ConfigError, DEFAULT_VERSION, KEYS, SecretValue, default_instance_name, settings_from_config)
from harness import SAMPLE_SECRET, evaluate, stack_config


def load(stack="dev", overrides=None, secrets=None, stack_name=None):
    config, secret_keys = stack_config(stack, overrides, secrets)
    return settings_from_config(stack_name or stack or "test", config, set(secret_keys))


def problems(stack="dev", overrides=None, secrets=None, stack_name=None):
    with pytest.raises(ConfigError) as raised:
        load(stack, overrides, secrets, stack_name)
    return raised.value.problems


# (id, stack, plain overrides, secret overrides, key named, fragment of the message)
BAD_INPUTS = [
    ("port-not-integer", "dev", {"backendPort": "abc"}, {}, "backendPort", "is not a whole number"),
    ("port-too-large", "dev", {"backendPort": 70000}, {}, "backendPort", "is not a TCP port"),
    ("port-zero", "dev", {"sitePort": 0}, {}, "sitePort", "is not a TCP port"),
    ("ports-clash", "dev", {"dashboardPort": 3210}, {}, "dashboardPort", "clashes with"),
    ("tls-port-clash", "prod", {"httpsPort": 3230}, {}, "httpsPort", "clashes with"),
    ("instance-name", "dev", {"instanceName": "Convex_Prod"}, {}, "instanceName",
     "is not a valid instance name"),
    ("instance-name-too-long", "dev", {"instanceName": "a" * 64}, {}, "instanceName",
     "is not a valid instance name"),
    ("secret-not-hex", "dev", {}, {"instanceSecret": "abc"}, "instanceSecret",
     "must be 64 hex characters"),
    ("secret-in-plain-text", "dev", {"instanceSecret": SAMPLE_SECRET}, {}, "instanceSecret",
     "stored in plain text"),
    ("origin-not-http", "dev", {"cloudOrigin": "ftp://convex.example.com"}, {}, "cloudOrigin",
     "is not an http(s) URL"),
    ("origin-with-path", "dev", {"siteOrigin": "https://example.com/x"}, {}, "siteOrigin",
     "without a path"),
    ("bind-address", "dev", {"bindAddress": "localhost"}, {}, "bindAddress",
     "is not an IP address"),
    ("negative-memory", "dev", {"memoryLimitMb": -1}, {}, "memoryLimitMb",
     "must be greater than zero"),
    ("zero-concurrency", "dev", {"maxConcurrentQueries": 0}, {}, "maxConcurrentQueries",
     "must be greater than zero"),
    ("zero-cpus", "dev", {"cpus": "0"}, {}, "cpus", "greater than zero"),
    ("cpus-not-number", "dev", {"cpus": "two"}, {}, "cpus", "greater than zero"),
    ("zero-log-files", "dev", {"logMaxFiles": 0}, {}, "logMaxFiles", "must be greater than zero"),
    ("negative-timeout", "dev", {"v8ActionTimeoutSeconds": -5}, {}, "v8ActionTimeoutSeconds",
     "must be greater than zero"),
    ("latest-outside-dev", "staging", {"version": "latest"}, {}, "version", "is a moving tag"),
    ("no-tag-at-all", "prod", {"version": "main"}, {}, "version", "is a moving tag"),
    ("version-not-a-tag", "dev", {"version": "a b"}, {}, "version", "is not an image tag"),
    ("database-name-in-url", "dev", {}, {"databaseUrl": "postgres://u:p@db:5432/convex"},
     "databaseUrl", "names a database"),
    ("database-without-user", "dev", {}, {"databaseUrl": "postgres://db:5432"}, "databaseUrl",
     "has no user"),
    ("database-scheme", "dev", {}, {"databaseUrl": "redis://u:p@db"}, "databaseUrl",
     "scheme 'redis' is not supported"),
    ("database-plain-text", "dev", {"databaseUrl": "postgres://u:p@db"}, {}, "databaseUrl",
     "stored in plain text"),
    ("database-and-provision", "dev", {"provisionPostgres": True},
     {"databaseUrl": "postgres://u:p@db"}, "databaseUrl", "choose one"),
    ("postgres-image-moving", "dev", {"provisionPostgres": True, "postgresImage": "postgres"},
     {}, "postgresImage", "is not pinned"),
    ("s3-region-only", "dev", {"s3Region": "us-east-1"}, {}, "s3BucketPrefix",
     "missing s3ExportsBucket, s3SnapshotImportsBucket, s3ModulesBucket, s3FilesBucket, "
     "s3SearchBucket"),
    ("s3-prefix-without-region", "dev", {"s3BucketPrefix": "acme"}, {}, "s3Region",
     "missing s3Region"),
    ("s3-some-buckets", "dev", {"s3Region": "us-east-1", "s3FilesBucket": "f",
                                "s3ExportsBucket": "e"}, {}, "s3BucketPrefix",
     "missing s3SnapshotImportsBucket, s3ModulesBucket, s3SearchBucket"),
    ("s3-prefix-and-buckets", "dev", {"s3Region": "us-east-1", "s3BucketPrefix": "acme",
                                      "s3FilesBucket": "f"}, {}, "s3BucketPrefix",
     "use the prefix alone"),
    ("s3-endpoint", "dev", {"s3Region": "auto", "s3BucketPrefix": "acme",
                            "s3Endpoint": "minio:9000"}, {}, "s3Endpoint", "http(s) URL"),
    ("aws-key-without-secret", "dev", {"s3Region": "us-east-1", "s3BucketPrefix": "acme"},
     {"awsAccessKeyId": "AKIA"}, "awsSecretAccessKey", "go together"),
    ("unknown-key", "dev", {"backendPrt": 3210}, {}, "backendPrt", "Did you mean backendPort?"),
    ("unknown-key-case", "dev", {"BackendPort": 3210}, {}, "BackendPort",
     "Did you mean backendPort?"),
    ("restart-policy", "dev", {"restartPolicy": "sometimes"}, {}, "restartPolicy",
     "is not one of"),
    ("rust-backtrace", "dev", {"rustBacktrace": "yes"}, {}, "rustBacktrace", "is not one of"),
    ("boolean", "dev", {"protectData": "maybe"}, {}, "protectData", "is not a boolean"),
    ("extra-env-owned", "dev", {"extraEnv": ["INSTANCE_SECRET=x"]}, {}, "extraEnv",
     "owned by a typed key"),
    ("extra-env-shape", "dev", {"extraEnv": ["nope"]}, {}, "extraEnv", "is not NAME=value"),
    ("extra-env-not-list", "dev", {"extraEnv": "A=1"}, {}, "extraEnv", "is not a list"),
    ("tls-without-domains", "dev", {"tlsProxy": True}, {}, "apiDomain",
     "is required when tlsProxy is true"),
    ("domain-without-tls", "dev", {"apiDomain": "api.example.com"}, {}, "apiDomain",
     "tlsProxy is false"),
    ("bad-domain", "prod", {"apiDomain": "https://api.example.com"}, {}, "apiDomain",
     "is not a domain name"),
    ("tls-with-public-raw-ports", "prod", {"bindAddress": "0.0.0.0"}, {}, "bindAddress",
     "keep them on 127.0.0.1"),
    ("tls-and-origin", "prod", {"cloudOrigin": "https://x.example.com"}, {}, "cloudOrigin",
     "follows the domain"),
    ("deployments-duplicate", "preview", {"deployments": ["pr-1", "pr-1"]}, {}, "deployments",
     "is listed twice"),
    ("deployments-bad-name", "preview", {"deployments": ["PR_1"]}, {}, "deployments",
     "is not a valid instance name"),
    ("deployments-and-secret", "preview", {}, {"instanceSecret": SAMPLE_SECRET},
     "instanceSecret", "cannot be combined with deployments"),
    ("deployments-and-tls", "prod", {"deployments": ["a"]}, {}, "tlsProxy",
     "cannot be combined with deployments"),
    ("deployments-beyond-port-range", "preview",
     {"backendPort": 65530, "sitePort": 65531}, {}, "deployments", "beyond 65535"),
    ("data-volume-name", "dev", {"dataVolumeName": "bad name!"}, {}, "dataVolumeName",
     "is not a Docker volume name"),
]


@pytest.mark.parametrize("stack,overrides,secrets,key,fragment",
                         [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_named_and_explained(stack, overrides, secrets, key, fragment):
    found = problems(stack, overrides, secrets)
    assert any(p.startswith(f"convex-selfhost:{key}:") and fragment in p for p in found), found


def test_every_problem_is_reported_at_once():
    found = problems("dev", {"backendPort": "x", "bindAddress": "nowhere",
                             "restartPolicy": "never", "backendPrt": 1})
    assert len(found) == 4
    assert [p.split(":")[1] for p in found] == ["backendPrt", "bindAddress", "backendPort",
                                                "restartPolicy"]


def test_config_error_stops_the_program_before_any_resource():
    with pytest.raises(ConfigError) as raised:
        evaluate("staging", {"backendPort": 0, "version": "latest"})
    error = raised.value
    assert isinstance(error, pulumi.RunError)  # printed by `pulumi up` without a traceback
    assert error.registered == []
    message = str(error)
    assert message.startswith("stack 'staging' has 2 configuration problems")
    assert "convex-selfhost:backendPort" in message and "convex-selfhost:version" in message


def test_database_url_never_appears_in_messages():
    found = problems("dev", secrets={"databaseUrl": "postgres://user:hunter2@db:5432/app"})
    assert found and not any("hunter2" in p for p in found)


def test_latest_is_a_warning_on_dev():
    settings = load("dev", {"version": "latest"})
    assert settings.version == "latest"
    assert any("moves" in w for w in settings.warnings)
    run = evaluate("dev", {"version": "latest"})
    assert any("moves" in w for w in run.warnings)


def test_defaults():
    settings = load(None, stack_name="qa")
    (deployment,) = settings.deployments
    assert deployment.instance_name == "convex-qa"
    assert (deployment.backend_port, deployment.site_port, deployment.dashboard_port) == (
        3210, 3211, 6791)
    assert deployment.cloud_origin == "http://127.0.0.1:3210"
    assert deployment.site_origin == "http://127.0.0.1:3211"
    assert deployment.dashboard_url == "http://127.0.0.1:6791"
    assert deployment.instance_secret is None
    assert settings.version == DEFAULT_VERSION
    assert settings.protect_data is True
    assert settings.database.kind == "sqlite" and settings.s3 is None and settings.tls is None
    assert settings.tuning.max_concurrent_queries == 16
    assert settings.tuning.document_retention_delay_seconds == 172800


def test_every_key_has_a_default_of_its_type():
    python_types = {"string": str, "integer": int, "boolean": bool, "array": list}
    for key in KEYS:
        assert type(key.default) is python_types[key.type], key.name


def test_instance_name_derived_from_stack():
    assert default_instance_name("dev") == "convex-dev"
    assert default_instance_name("Feature_X.1") == "convex-feature-x-1"


def test_every_interface_bind_gives_loopback_urls():
    settings = load("dev", {"bindAddress": "0.0.0.0"})
    assert settings.deployments[0].cloud_origin == "http://127.0.0.1:3210"
    settings = load("dev", {"bindAddress": "10.0.0.5"})
    assert settings.deployments[0].cloud_origin == "http://10.0.0.5:3210"


def test_adopted_secret_is_hidden_in_repr():
    settings = load("dev", secrets={"instanceSecret": SAMPLE_SECRET})
    assert settings.deployments[0].instance_secret == SecretValue(SAMPLE_SECRET)
    assert SAMPLE_SECRET not in repr(settings)


def test_s3_from_prefix_and_explicit_buckets():
    s3 = load("dev", {"s3Region": "eu-west-1", "s3BucketPrefix": "acme"}).s3
    assert dict(s3.buckets) == {"exports": "acme-exports",
                                "snapshot-imports": "acme-snapshot-imports",
                                "modules": "acme-modules", "files": "acme-files",
                                "search": "acme-search"}
    explicit = {"s3ExportsBucket": "e", "s3SnapshotImportsBucket": "i", "s3ModulesBucket": "m",
                "s3FilesBucket": "f", "s3SearchBucket": "s"}
    s3 = load("dev", {"s3Region": "eu-west-1", **explicit}).s3
    assert dict(s3.buckets) == {"exports": "e", "snapshot-imports": "i", "modules": "m",
                                "files": "f", "search": "s"}


def test_database_kinds():
    assert load("dev", secrets={"databaseUrl": "postgresql://u:p@db:5432"}).database.kind == \
        "postgres"
    assert load("dev", secrets={"databaseUrl": "mysql://u:p@db:3306/"}).database.kind == "mysql"
    provisioned = load("dev", {"provisionPostgres": True}).database
    assert provisioned.kind == "provisioned-postgres" and provisioned.require_ssl is False


def test_deployments_shift_ports_and_names():
    settings = load("preview")
    assert settings.multi
    assert [(d.key, d.instance_name, d.backend_port, d.site_port, d.dashboard_port)
            for d in settings.deployments] == [
        ("pr-101", "convex-preview-pr-101", 3300, 3301, 6900),
        ("pr-102", "convex-preview-pr-102", 3310, 3311, 6910)]

"""The backend's environment and container options, per feature."""

from harness import evaluate
from test_settings import load

from components.core.backend import backend_env as build_backend_env
from components.core.spec import describe

SECRET = "ab" * 32


def env_of(overrides=None, secrets=None, stack="dev", database_url=None):
    settings = load(stack, overrides, secrets)
    entries = build_backend_env(describe(settings, settings.deployments[0]), SECRET,
                                database_url)
    names = [entry.split("=", 1)[0] for entry in entries]
    assert len(names) == len(set(names)), "an env var is set twice"
    return dict(entry.split("=", 1) for entry in entries)


def test_core_env_matches_upstream_compose_defaults():
    env = env_of()
    assert env == {
        "INSTANCE_NAME": "convex-dev",
        "INSTANCE_SECRET": SECRET,
        "CONVEX_CLOUD_ORIGIN": "http://127.0.0.1:3210",
        "CONVEX_SITE_ORIGIN": "http://127.0.0.1:3211",
        "RUST_LOG": "info",
        "DOCUMENT_RETENTION_DELAY": "172800",
        "APPLICATION_MAX_CONCURRENT_QUERIES": "16",
        "APPLICATION_MAX_CONCURRENT_MUTATIONS": "16",
        "APPLICATION_MAX_CONCURRENT_V8_ACTIONS": "16",
        "APPLICATION_MAX_CONCURRENT_NODE_ACTIONS": "16",
        "DISABLE_METRICS_ENDPOINT": "true",
    }


def test_false_flags_are_omitted_not_set_to_false():
    # run_backend.sh turns these on for ANY non-empty value, "false" included.
    env = env_of({"disableBeacon": False, "redactLogsToClient": False,
                  "disableMetricsEndpoint": False, "requireDatabaseSsl": True},
                 {"databaseUrl": "postgres://u:p@db:5432"})
    for flag in ("DISABLE_BEACON", "REDACT_LOGS_TO_CLIENT", "DISABLE_METRICS_ENDPOINT",
                 "DO_NOT_REQUIRE_SSL"):
        assert flag not in env
    assert not any(value == "false" for value in env.values())


def test_true_flags_are_set():
    env = env_of({"disableBeacon": True, "redactLogsToClient": True,
                  "requireDatabaseSsl": False}, {"databaseUrl": "mysql://u:p@db:3306"})
    assert env["DISABLE_BEACON"] == "true"
    assert env["REDACT_LOGS_TO_CLIENT"] == "true"
    assert env["DO_NOT_REQUIRE_SSL"] == "true"


def test_database_urls_map_to_their_variable():
    assert env_of(secrets={"databaseUrl": "postgresql://u:p@db:5432"})["POSTGRES_URL"] == \
        "postgresql://u:p@db:5432"
    env = env_of(secrets={"databaseUrl": "mysql://u:p@db:3306"})
    assert env["MYSQL_URL"] == "mysql://u:p@db:3306"
    assert "POSTGRES_URL" not in env and "DATABASE_URL" not in env
    assert "POSTGRES_URL" not in env_of() and "MYSQL_URL" not in env_of()


def test_provisioned_postgres_url_and_no_ssl_on_the_private_network():
    env = env_of({"provisionPostgres": True}, database_url="postgresql://convex:pw@pg:5432")
    assert env["POSTGRES_URL"] == "postgresql://convex:pw@pg:5432"
    assert env["DO_NOT_REQUIRE_SSL"] == "true"


def test_s3_settings():
    env = env_of({"s3Region": "auto", "s3BucketPrefix": "acme",
                  "s3Endpoint": "https://acct.r2.cloudflarestorage.com",
                  "s3ForcePathStyle": True, "s3DisableChecksums": True},
                 {"awsAccessKeyId": "AKIA1", "awsSecretAccessKey": "s3cr3t"})
    assert env["AWS_REGION"] == "auto"
    assert env["S3_STORAGE_EXPORTS_BUCKET"] == "acme-exports"
    assert env["S3_STORAGE_SNAPSHOT_IMPORTS_BUCKET"] == "acme-snapshot-imports"
    assert env["S3_STORAGE_MODULES_BUCKET"] == "acme-modules"
    assert env["S3_STORAGE_FILES_BUCKET"] == "acme-files"
    assert env["S3_STORAGE_SEARCH_BUCKET"] == "acme-search"
    assert env["S3_ENDPOINT_URL"] == "https://acct.r2.cloudflarestorage.com"
    assert env["AWS_S3_FORCE_PATH_STYLE"] == "true"
    assert env["AWS_S3_DISABLE_CHECKSUMS"] == "true"
    assert "AWS_S3_DISABLE_SSE" not in env
    assert env["AWS_ACCESS_KEY_ID"] == "AKIA1" and env["AWS_SECRET_ACCESS_KEY"] == "s3cr3t"
    assert "AWS_SESSION_TOKEN" not in env


def test_no_s3_variables_without_s3():
    assert not any(name.startswith(("AWS_", "S3_")) for name in env_of())


def test_tuning_knobs_and_extra_env():
    env = env_of({"rustLog": "warn", "rustBacktrace": "1", "maxConcurrentQueries": 32,
                  "v8ActionTimeoutSeconds": 600, "nodeActionTimeoutSeconds": 900,
                  "httpServerTimeoutSeconds": 120, "documentRetentionDelaySeconds": 3600,
                  "releaseVersionDev": "1.20.0", "extraEnv": ["MY_KNOB=7", "OTHER=a=b"]})
    assert env["RUST_LOG"] == "warn" and env["RUST_BACKTRACE"] == "1"
    assert env["APPLICATION_MAX_CONCURRENT_QUERIES"] == "32"
    assert env["V8_ACTION_USER_TIMEOUT_SECS"] == "600"
    assert env["NODE_ACTION_USER_TIMEOUT_SECS"] == "900"
    assert env["HTTP_SERVER_TIMEOUT_SECONDS"] == "120"
    assert env["DOCUMENT_RETENTION_DELAY"] == "3600"
    assert env["CONVEX_RELEASE_VERSION_DEV"] == "1.20.0"
    assert env["MY_KNOB"] == "7" and env["OTHER"] == "a=b"


def test_public_origins_drive_env():
    env = env_of({"cloudOrigin": "https://api.example.com/",
                  "siteOrigin": "https://site.example.com"})
    assert env["CONVEX_CLOUD_ORIGIN"] == "https://api.example.com"
    assert env["CONVEX_SITE_ORIGIN"] == "https://site.example.com"
    run = evaluate("dev", {"cloudOrigin": "https://api.example.com",
                           "siteOrigin": "https://site.example.com"})
    assert run.outputs["backendUrl"] == "https://api.example.com"
    assert run.outputs["siteUrl"] == "https://site.example.com"
    assert run.env("convex-dev-dashboard")["NEXT_PUBLIC_DEPLOYMENT_URL"] == \
        "https://api.example.com"


def test_limits_and_log_rotation_reach_every_container():
    run = evaluate("prod", {"logMaxSizeMb": 50, "logMaxFiles": 5, "restartPolicy": "always"})
    for container in run.containers().values():
        assert container.inputs["memory"] == 4096
        # No swap: equal to memory. Unset, Docker would report twice the memory back.
        assert container.inputs["memorySwap"] == 4096
        # "2" is read back as "2.0" (helpers.go nanoInt64ToDecimalString); cpus forces
        # replacement, so the program sends the read-back spelling.
        assert container.inputs["cpus"] == "2.0"
        assert container.inputs["restart"] == "always"
        assert container.inputs["logDriver"] == "json-file"
        assert container.inputs["logOpts"] == {"max-size": "50m", "max-file": "5"}
        labels = {label["label"]: label["value"] for label in container.inputs["labels"]}
        assert labels["convex-selfhost.limits"] == "log-max-size=50m,log-max-file=5,memory=4096m"
        assert container.ignore_changes == ["logOpts", "memorySwap", "healthcheck.startInterval"]
    dev = evaluate("dev")
    assert all("memory" not in c.inputs and "cpus" not in c.inputs
               and "memorySwap" not in c.inputs for c in dev.containers().values())


def test_bind_address_moves_every_published_port():
    run = evaluate("dev", {"bindAddress": "10.1.2.3"})
    ips = {p["ip"] for c in run.containers().values() for p in c.inputs["ports"]}
    assert ips == {"10.1.2.3"}
    assert run.outputs["backendUrl"] == "http://10.1.2.3:3210"


def test_first_start_may_take_minutes():
    run = evaluate("dev", {"backendStartTimeoutSeconds": 600})
    backend = run.containers()["convex-dev-backend"].inputs
    assert backend["healthcheck"]["startPeriod"] == "10m0s"
    assert ("convex-dev-backend", "", 600) in run.health_waits


def test_every_s3_variable_and_flag_by_name():
    env = env_of({"s3Region": "auto", "s3BucketPrefix": "acme", "s3Endpoint": "https://r2.example.com",
                  "s3ForcePathStyle": True, "s3DisableSse": True, "s3DisableChecksums": True},
                 {"awsAccessKeyId": "AKIAEXAMPLE", "awsSecretAccessKey": "secret-key",
                  "awsSessionToken": "session-token"})
    assert {k: v for k, v in env.items() if k.startswith(("AWS_", "S3_"))} == {
        "AWS_REGION": "auto",
        "S3_STORAGE_EXPORTS_BUCKET": "acme-exports",
        "S3_STORAGE_SNAPSHOT_IMPORTS_BUCKET": "acme-snapshot-imports",
        "S3_STORAGE_MODULES_BUCKET": "acme-modules",
        "S3_STORAGE_FILES_BUCKET": "acme-files",
        "S3_STORAGE_SEARCH_BUCKET": "acme-search",
        "S3_ENDPOINT_URL": "https://r2.example.com",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret-key",
        "AWS_SESSION_TOKEN": "session-token",
        "AWS_S3_FORCE_PATH_STYLE": "true",
        "AWS_S3_DISABLE_SSE": "true",
        "AWS_S3_DISABLE_CHECKSUMS": "true",
    }


def test_s3_on_the_hosts_role_sends_no_keys():
    env = env_of({"s3Region": "us-east-1", "s3BucketPrefix": "acme"})
    assert env["AWS_REGION"] == "us-east-1"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env)

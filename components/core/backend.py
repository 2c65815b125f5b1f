"""The backend's environment and flags, computed once for every target.

Upstream's image runs `run_backend.sh`, which turns environment variables into the
binary's flags; the binary itself reads the remaining knobs from its environment. The
Docker target sends `backend_env` (what the image reads); a target that runs the binary
directly uses the same entries and the command line run_backend.sh would build.
"""

from __future__ import annotations

from typing import Optional

import pulumi

from components.core.spec import DeploymentSpec
from components.settings import S3Settings

# Where a database CA certificate is put (PG_CA_FILE / MYSQL_CA_FILE point here) in the
# image; a target that runs the binary directly passes its own path.
CA_CERT_PATH = "/convex/database-ca.pem"


def backend_env(spec: DeploymentSpec, instance_secret: str,
                database_url: Optional[str] = None,
                ca_cert_path: str = CA_CERT_PATH) -> list[str]:
    """The backend's environment as `NAME=value` strings, following upstream's compose file.

    Flags that run_backend.sh tests with `${VAR:+--flag}` (and booleans generally) are
    omitted when false: upstream switches them on for any non-empty value, "false" too.
    Variables the chosen release does not read are left out.
    """
    tuning = spec.tuning
    env: list[tuple[str, str]] = [
        ("INSTANCE_NAME", spec.instance_name),
        ("INSTANCE_SECRET", instance_secret),
        ("CONVEX_CLOUD_ORIGIN", spec.cloud_origin),
        ("CONVEX_SITE_ORIGIN", spec.site_origin),
        ("RUST_LOG", tuning.rust_log),
        ("DOCUMENT_RETENTION_DELAY", str(tuning.document_retention_delay_seconds)),
        ("APPLICATION_MAX_CONCURRENT_QUERIES", str(tuning.max_concurrent_queries)),
        ("APPLICATION_MAX_CONCURRENT_MUTATIONS", str(tuning.max_concurrent_mutations)),
        ("APPLICATION_MAX_CONCURRENT_V8_ACTIONS", str(tuning.max_concurrent_v8_actions)),
        ("APPLICATION_MAX_CONCURRENT_NODE_ACTIONS", str(tuning.max_concurrent_node_actions)),
    ]
    optional = [
        ("RUST_BACKTRACE", tuning.rust_backtrace),
        ("LOG_FORMAT", tuning.log_format),
        ("V8_ACTION_USER_TIMEOUT_SECS", tuning.v8_action_timeout_seconds or ""),
        ("NODE_ACTION_USER_TIMEOUT_SECS", tuning.node_action_timeout_seconds or ""),
        ("ACTIONS_USER_TIMEOUT_SECS", tuning.actions_user_timeout_seconds or ""),
        ("HTTP_SERVER_TIMEOUT_SECONDS", tuning.http_server_timeout_seconds or ""),
        ("CONVEX_RELEASE_VERSION_DEV", tuning.release_version_dev),
    ]
    flags = [
        ("DISABLE_BEACON", tuning.disable_beacon),
        ("REDACT_LOGS_TO_CLIENT", tuning.redact_logs_to_client),
        ("DISABLE_METRICS_ENDPOINT", tuning.disable_metrics_endpoint),
    ]

    database = spec.database
    if database.kind != "sqlite":
        url = database_url if database_url is not None else database.url.reveal()
        env.append((database.env_var, url))
        flags.append(("DO_NOT_REQUIRE_SSL", not database.require_ssl))
        optional.append(("POSTGRES_MAX_CONNECTIONS", database.pool_size or ""))
        if database.ca_cert:
            env.append((database.ca_env_var, ca_cert_path))
    if spec.s3 is not None:
        _add_s3_env(spec.s3, env, optional, flags)

    env += [(name, str(value)) for name, value in optional if value != ""]
    env += [(name, "true") for name, enabled in flags if enabled]
    env = [(name, value) for name, value in env if name not in tuning.unread_env]
    env += list(tuning.extra_env)
    return [f"{name}={value}" for name, value in env]


def _add_s3_env(s3: S3Settings, env: list, optional: list, flags: list) -> None:
    env.append(("AWS_REGION", s3.region))
    for kind, bucket in s3.buckets.items():
        env.append((f"S3_STORAGE_{kind.upper().replace('-', '_')}_BUCKET", bucket))
    optional += [
        ("S3_ENDPOINT_URL", s3.endpoint),
        ("AWS_ACCESS_KEY_ID", s3.access_key_id.reveal() if s3.access_key_id else ""),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key.reveal() if s3.secret_access_key else ""),
        ("AWS_SESSION_TOKEN", s3.session_token.reveal() if s3.session_token else ""),
    ]
    flags += [
        ("AWS_S3_FORCE_PATH_STYLE", s3.force_path_style),
        ("AWS_S3_DISABLE_SSE", s3.disable_sse),
        ("AWS_S3_DISABLE_CHECKSUMS", s3.disable_checksums),
    ]


# Stand-ins for values known only as Outputs while the entries are put together; NUL never
# appears in a real environment value (the settings refuse it).
_SECRET_SLOT = "\x00instance-secret\x00"
_DATABASE_SLOT = "\x00database-url\x00"
_SECRET_ENV = frozenset({"INSTANCE_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                         "AWS_SESSION_TOKEN"})


def secret_env_names(spec: DeploymentSpec) -> frozenset[str]:
    """Variables whose values are secrets: hidden in previews and encrypted in the state."""
    names = set(_SECRET_ENV)
    if spec.database.kind != "sqlite":
        names.add(spec.database.env_var)
    if spec.tuning.extra_env_secret:
        names.update(name for name, _ in spec.tuning.extra_env)
    return frozenset(names)


def backend_environment(spec: DeploymentSpec, instance_secret: pulumi.Output[str],
                        database_url: Optional[pulumi.Output[str]]) -> list:
    """The backend's environment with only the secret entries secret, so `pulumi preview
    --diff` shows a changed setting (RUST_LOG=info => RUST_LOG=debug) and hides secrets."""
    entries = backend_env(spec, _SECRET_SLOT,
                          _DATABASE_SLOT if database_url is not None else None)
    secret_names = secret_env_names(spec)
    environment: list = []
    for entry in entries:
        if _SECRET_SLOT in entry:
            environment.append(pulumi.Output.secret(instance_secret.apply(
                lambda value, entry=entry: entry.replace(_SECRET_SLOT, value or ""))))
        elif _DATABASE_SLOT in entry:
            environment.append(pulumi.Output.secret(database_url.apply(
                lambda value, entry=entry: entry.replace(_DATABASE_SLOT, value or ""))))
        elif entry.partition("=")[0] in secret_names:
            environment.append(pulumi.Output.secret(entry))
        else:
            environment.append(entry)
    return environment




# What upstream's run_backend.sh turns into the binary's flags (and so never passes on as
# environment); everything else the binary reads from its environment itself.
FLAG_ENV = frozenset({"INSTANCE_NAME", "INSTANCE_SECRET", "CONVEX_CLOUD_ORIGIN",
                      "CONVEX_SITE_ORIGIN", "DISABLE_BEACON", "REDACT_LOGS_TO_CLIENT",
                      "DO_NOT_REQUIRE_SSL", "POSTGRES_URL", "MYSQL_URL", "DATABASE_URL"})
_DB_DRIVERS = {"POSTGRES_URL": "postgres-v5", "MYSQL_URL": "mysql-v5"}


def binary_invocation(spec: DeploymentSpec, *, storage_dir: str, sqlite_path: str,
                      ca_cert_path: str, beacon_tag: str = "self-hosted-binary",
                      ) -> tuple[list[str], list[tuple[str, str]]]:
    """The binary's arguments and environment, as run_backend.sh builds them from the
    image's environment. Secrets appear in the arguments only as `${NAME}` references to
    environment entries (the instance secret, the database URL), whose values are
    `${NAME}` placeholders too: the target substitutes them where it keeps secrets (the
    binary takes the instance secret only as --instance-secret)."""
    entries = [entry.split("=", 1) for entry in backend_env(
        spec, "${INSTANCE_SECRET}", "${DATABASE}" if spec.database.kind != "sqlite" else None,
        ca_cert_path)]
    values = dict(entries)
    arguments = [*spec.tuning.backend_args,
                 "--instance-name", spec.instance_name,
                 "--instance-secret", "${INSTANCE_SECRET}",
                 "--interface", spec.bind_address,
                 "--port", str(spec.backend_port),
                 "--site-proxy-port", str(spec.site_port),
                 "--convex-origin", spec.cloud_origin,
                 "--convex-site", spec.site_origin,
                 "--beacon-tag", beacon_tag]
    for name, flag in (("DISABLE_BEACON", "--disable-beacon"),
                       ("REDACT_LOGS_TO_CLIENT", "--redact-logs-to-client"),
                       ("DO_NOT_REQUIRE_SSL", "--do-not-require-ssl")):
        if name in values:
            arguments.append(flag)
    database_var = next((name for name in _DB_DRIVERS if name in values), None)
    if database_var:
        arguments += ["--db", _DB_DRIVERS[database_var]]
    arguments += ["--s3-storage"] if spec.s3 is not None else ["--local-storage", storage_dir]
    arguments.append(f"${{{database_var}}}" if database_var else sqlite_path)
    environment = [(name, value) for name, value in entries if name not in FLAG_ENV]
    environment.append(("INSTANCE_SECRET", "${INSTANCE_SECRET}"))
    if database_var:
        environment.append((database_var, "${DATABASE}"))
    return arguments, environment

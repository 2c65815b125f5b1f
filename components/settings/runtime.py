"""Container limits and backend tuning: restart policy, resources, logs, knobs, extras.

Every number is bounded by what Docker and Convex accept, so nothing out of range
reaches the engine.
"""

from __future__ import annotations

import re

from components import releases, rules
from components.docker import readback
from components.settings.keys import KEYS_BY_NAME
from components.settings.model import BackendTuning, ContainerSettings
from components.settings.reader import Reader

RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")
RUST_BACKTRACE_VALUES = ("", "0", "1", "full")
# upstream crates/cmd_util/src/env.rs; anything else silently means compact
LOG_FORMATS = ("", "compact", "pretty", "json")
MAX_MEMORY_MB = 4 * 1024 * 1024  # 4 TiB
MIN_MEMORY_MB = 6  # Docker's own minimum
MAX_CPUS = 1024
MAX_START_TIMEOUT = 3600
MAX_CONCURRENCY = 10_000
MAX_TIMEOUT_SECONDS = 86_400
MAX_RETENTION_SECONDS = 10 * 365 * 86_400
_CPUS_PATTERN = re.compile(r"\d{1,4}(\.\d{1,9})?")
_RUST_LOG_PATTERN = re.compile(r"[A-Za-z0-9_:=,.\-]{1,1000}")
_RELEASE_VERSION_PATTERN = re.compile(r"[A-Za-z0-9.+-]{0,64}")
ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

# Env vars a typed key owns; `extraEnv` may not set them behind the typed key's back.
OWNED_ENV_VARS = frozenset(
    {
        "INSTANCE_NAME", "INSTANCE_SECRET", "CONVEX_CLOUD_ORIGIN", "CONVEX_SITE_ORIGIN",
        "POSTGRES_URL", "MYSQL_URL", "DATABASE_URL", "DO_NOT_REQUIRE_SSL", "PG_CA_FILE",
        "MYSQL_CA_FILE", "POSTGRES_MAX_CONNECTIONS",
        "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
        "S3_ENDPOINT_URL", "AWS_S3_FORCE_PATH_STYLE", "AWS_S3_DISABLE_SSE",
        "AWS_S3_DISABLE_CHECKSUMS", "S3_STORAGE_EXPORTS_BUCKET",
        "S3_STORAGE_SNAPSHOT_IMPORTS_BUCKET", "S3_STORAGE_MODULES_BUCKET",
        "S3_STORAGE_FILES_BUCKET", "S3_STORAGE_SEARCH_BUCKET", "DISABLE_BEACON",
        "REDACT_LOGS_TO_CLIENT", "RUST_LOG", "RUST_BACKTRACE", "LOG_FORMAT",
        "DISABLE_METRICS_ENDPOINT", "DOCUMENT_RETENTION_DELAY",
        "APPLICATION_MAX_CONCURRENT_QUERIES", "APPLICATION_MAX_CONCURRENT_MUTATIONS",
        "APPLICATION_MAX_CONCURRENT_V8_ACTIONS", "APPLICATION_MAX_CONCURRENT_NODE_ACTIONS",
        "V8_ACTION_USER_TIMEOUT_SECS", "NODE_ACTION_USER_TIMEOUT_SECS",
        "ACTIONS_USER_TIMEOUT_SECS", "HTTP_SERVER_TIMEOUT_SECONDS",
        "CONVEX_RELEASE_VERSION_DEV", "NEXT_PUBLIC_DEPLOYMENT_URL", "NEXT_PUBLIC_ADMIN_KEY",
    }
)
# Variables of the container's own process environment: overriding them breaks the
# image (PATH) or loads foreign code (LD_PRELOAD).
RESERVED_ENV_VARS = frozenset({"PATH", "HOME", "HOSTNAME", "PWD", "SHELL", "USER", "TERM",
                               "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"})
# Flags of convex-local-backend that a typed key (or the program) already sets.
OWNED_FLAGS = frozenset({
    "--instance-name", "--instance-secret", "--port", "--site-proxy-port", "--interface",
    "--convex-origin", "--convex-site", "--local-storage", "--db", "--disable-beacon",
    "--redact-logs-to-client", "--do-not-require-ssl", "--s3-storage", "--beacon-tag",
})
_FLAG_PATTERN = re.compile(r"--[a-z0-9][a-z0-9-]{0,63}(=[\x21-\x7e]{0,1024})?")
_FLAG_VALUE_PATTERN = re.compile(r"[^\s-][\x21-\x7e]{0,1023}")


def read_containers(reader: Reader) -> ContainerSettings:
    memory = reader.integer("memoryLimitMb", 0, MAX_MEMORY_MB, "MB")
    if memory and memory < MIN_MEMORY_MB:
        reader.problem("memoryLimitMb", f"Docker needs at least {MIN_MEMORY_MB} MB; a Convex "
                                        "backend wants 1024 or more (0: no limit).")
    return ContainerSettings(
        restart_policy=reader.choice("restartPolicy", RESTART_POLICIES),
        memory_limit_mb=memory or 0,
        cpus=_read_cpus(reader),
        log_max_size_mb=_or_default("logMaxSizeMb", reader.integer(
            "logMaxSizeMb", 1, 10_240, "MB")),
        log_max_files=_or_default("logMaxFiles", reader.integer("logMaxFiles", 1, 100)),
        backend_start_timeout_seconds=_or_default("backendStartTimeoutSeconds",
                                                  reader.integer("backendStartTimeoutSeconds",
                                                                 10, MAX_START_TIMEOUT,
                                                                 "seconds")),
    )


def _or_default(name: str, value):
    return KEYS_BY_NAME[name].default if value is None else value


def _read_cpus(reader: Reader) -> str:
    cpus = reader.string("cpus")
    if not cpus:
        return ""
    if not _CPUS_PATTERN.fullmatch(cpus) or not 0 < float(cpus) <= MAX_CPUS:
        reader.problem("cpus", f"{reader.shown('cpus')} must be a number of CPUs greater than "
                               f"zero and at most {MAX_CPUS}, written like 2 or 1.5 (at most "
                               "9 decimals).")
        return ""
    if float(cpus) < 0.01:
        reader.problem("cpus", "is below 0.01, the smallest CPU share Docker accepts.")
        return ""
    if readback.stable_cpus(cpus) is None:
        reader.problem("cpus", f"{reader.shown('cpus')} is reported back by the docker "
                               "provider as another number, which would replace the "
                               "containers on every run; use one decimal more or less "
                               "(e.g. 0.1 or 0.15).")
        return ""
    return cpus


def read_tuning(reader: Reader, version: str, database_kind: str,
                warnings: list[str]) -> BackendTuning:
    def bounded(name: str, low: int, high: int) -> int:
        return _or_default(name, reader.integer(name, low, high))

    rust_log = reader.string("rustLog") or "info"
    if not _RUST_LOG_PATTERN.fullmatch(rust_log):
        reader.problem("rustLog", f"{reader.shown('rustLog')} is not a RUST_LOG filter; use "
                                  "levels and targets like info or info,common=debug.")
    release_dev = reader.string("releaseVersionDev")
    if not _RELEASE_VERSION_PATTERN.fullmatch(release_dev):
        reader.problem("releaseVersionDev", "must be a version like 1.2.3 (letters, digits, "
                                            "dots, plus and dashes).")
    tuning = BackendTuning(
        rust_log=rust_log,
        rust_backtrace=reader.choice("rustBacktrace", RUST_BACKTRACE_VALUES),
        log_format=reader.choice("logFormat", LOG_FORMATS),
        disable_beacon=reader.boolean("disableBeacon"),
        redact_logs_to_client=reader.boolean("redactLogsToClient"),
        disable_metrics_endpoint=reader.boolean("disableMetricsEndpoint"),
        document_retention_delay_seconds=bounded("documentRetentionDelaySeconds", 1,
                                                 MAX_RETENTION_SECONDS),
        max_concurrent_queries=bounded("maxConcurrentQueries", 1, MAX_CONCURRENCY),
        max_concurrent_mutations=bounded("maxConcurrentMutations", 1, MAX_CONCURRENCY),
        max_concurrent_v8_actions=bounded("maxConcurrentV8Actions", 1, MAX_CONCURRENCY),
        max_concurrent_node_actions=bounded("maxConcurrentNodeActions", 1, MAX_CONCURRENCY),
        v8_action_timeout_seconds=bounded("v8ActionTimeoutSeconds", 0, MAX_TIMEOUT_SECONDS),
        node_action_timeout_seconds=bounded("nodeActionTimeoutSeconds", 0, MAX_TIMEOUT_SECONDS),
        actions_user_timeout_seconds=bounded("actionsUserTimeoutSeconds", 0,
                                             MAX_TIMEOUT_SECONDS),
        http_server_timeout_seconds=bounded("httpServerTimeoutSeconds", 0, MAX_TIMEOUT_SECONDS),
        release_version_dev=release_dev,
        extra_env=_read_extra_env(reader, version, warnings),
        extra_env_secret=reader.is_secret("extraEnv"),
        backend_args=_read_backend_args(reader),
        unread_env=_check_versioned(reader, version, database_kind),
    )
    return tuning


def _check_versioned(reader: Reader, version: str, database_kind: str) -> frozenset[str]:
    """Variables the release does not read: a problem when their key is set, else omitted."""
    unread = set()
    for setting in releases.VERSIONED_SETTINGS:
        if (setting.database_kind not in (None, database_kind)
                or releases.reads(version, setting) is not False):
            continue
        unread.add(setting.env)
        if reader.differs_from_default(setting.key):
            when = _releases_reading(setting.since, setting.until)
            reader.problem(setting.key, f"sets {setting.env}, which the chosen version "
                                        f"{reader.mention('version', version[:12])} does not "
                                        f"read (only {when} do); remove it or change "
                                        "`version`.")
    return frozenset(unread)


def _releases_reading(since, until) -> str:
    if since and until:
        return f"releases from {since[:7]} to {until[:7]}"
    return f"releases from {since[:7]} on" if since else f"releases up to {until[:7]}"


def _read_extra_env(reader: Reader, version: str,
                    warnings: list[str]) -> tuple[tuple[str, str], ...]:
    secret = reader.is_secret("extraEnv")  # then its names are secret too
    pairs: list[tuple[str, str]] = []
    seen = set()
    for position, entry in enumerate(reader.string_list("extraEnv"), start=1):
        name, sep, value = entry.partition("=")
        ref = f"the variable of entry {position}" if secret else name
        if not sep or not ENV_NAME_PATTERN.fullmatch(name):
            reader.problem("extraEnv", f"entry {position} is not NAME=value (a name of letters, "
                                       "digits and underscores, then =).")
        elif name in OWNED_ENV_VARS:
            reader.problem("extraEnv", f"{ref} is owned by a typed key; set that key instead "
                                       "(see the README's configuration reference).")
        elif name in RESERVED_ENV_VARS:
            reader.problem("extraEnv", f"{ref} belongs to the container's own environment; "
                                       "setting it would break the image.")
        elif name in seen:
            reader.problem("extraEnv", f"{ref} is set twice; keep one entry.")
        elif "\x00" in value or "\n" in value or "\r" in value:
            reader.problem("extraEnv", f"the value of {f'entry {position}' if secret else name}"
                                       " contains a line break or NUL; environment values are "
                                       "single lines.")
        else:
            seen.add(name)
            pairs.append((name, value))
            if not secret and value and rules.looks_secret_env_name(name):
                reader.problem("extraEnv", f"{name} looks like a credential, but extraEnv is "
                                           "stored in plain text in the stack file; remove the "
                                           "entry and set it again as a secret with `pulumi "
                                           "config set --secret --path 'extraEnv[N]' "
                                           f"'{name}=...'` (N: its position, from 0), which "
                                           "encrypts it.")
            _warn_unread_knob(reader, version, name, ref, warnings)
    return tuple(pairs)


def _warn_unread_knob(reader: Reader, version: str, name: str, ref: str,
                      warnings: list[str]) -> None:
    """A knob the release table knows the chosen release does not read has no effect."""
    if releases.reads_knob(version, name) is not False:
        return
    since, until = releases.EXTRA_ENV_KNOBS[name]
    warnings.append(f"extraEnv sets {ref}, which the chosen version "
                    f"{reader.mention('version', version[:12])} does not read (only "
                    f"{_releases_reading(since, until)} do), so it has no effect; remove it "
                    "or change `version`.")


def _read_backend_args(reader: Reader) -> tuple[str, ...]:
    args = reader.string_list("backendArgs")
    expecting_value = False
    for position, arg in enumerate(args, start=1):
        if _FLAG_PATTERN.fullmatch(arg):
            flag = arg.split("=", 1)[0]
            if flag in OWNED_FLAGS:
                shown = f"the flag of entry {position}" if reader.is_secret("backendArgs") \
                    else flag
                reader.problem("backendArgs", f"{shown} is set by the program or a typed key; "
                                              "use that key instead.")
            expecting_value = "=" not in arg
        elif expecting_value and _FLAG_VALUE_PATTERN.fullmatch(arg):
            expecting_value = False
        else:
            reader.problem("backendArgs", f"entry {position} is not a flag (--name or "
                                          "--name=value) or a flag's value (printable, "
                                          "no spaces).")
    return tuple(args)

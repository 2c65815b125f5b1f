"""The one place that reads stack configuration.

`load_settings()` reads every key of the `convex-selfhost` namespace, validates all of
them, and returns one immutable `StackSettings`. Every problem found is collected and
raised together as a `ConfigError` (a `pulumi.RunError`, which `pulumi up` prints
without a Python traceback) before any resource is declared.

The CLI hands config to the program as strings (arrays as JSON), with the defaults of
`Pulumi.yaml` already applied, so this module parses strings itself: a stack file value
of the wrong shape becomes a message naming the key, not a crash.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence
from urllib.parse import urlsplit

import pulumi

from components.admin_key import INSTANCE_NAME_PATTERN, AdminKeyError, parse_instance_secret

NAMESPACE = "convex-selfhost"

BACKEND_IMAGE = "ghcr.io/get-convex/convex-backend"
DASHBOARD_IMAGE = "ghcr.io/get-convex/convex-dashboard"
# Upstream publishes backend and dashboard images under the same commit-SHA tags.
# 2025-09-12 release from upstream's self-hosted CHANGELOG.
DEFAULT_VERSION = "4d3b0a5de955a258e70e3813bbff486051d88820"
MOVING_TAGS = frozenset({"latest", "main", "master", "stable", "edge", "nightly", "dev"})

RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")
RUST_BACKTRACE_VALUES = ("", "0", "1", "full")
# Env vars a typed key owns; `extraEnv` may not set them behind the typed key's back.
OWNED_ENV_VARS = frozenset(
    {
        "INSTANCE_NAME", "INSTANCE_SECRET", "CONVEX_CLOUD_ORIGIN", "CONVEX_SITE_ORIGIN",
        "POSTGRES_URL", "MYSQL_URL", "DATABASE_URL", "DO_NOT_REQUIRE_SSL",
        "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
        "S3_ENDPOINT_URL", "AWS_S3_FORCE_PATH_STYLE", "AWS_S3_DISABLE_SSE",
        "AWS_S3_DISABLE_CHECKSUMS", "S3_STORAGE_EXPORTS_BUCKET",
        "S3_STORAGE_SNAPSHOT_IMPORTS_BUCKET", "S3_STORAGE_MODULES_BUCKET",
        "S3_STORAGE_FILES_BUCKET", "S3_STORAGE_SEARCH_BUCKET", "DISABLE_BEACON",
        "REDACT_LOGS_TO_CLIENT", "RUST_LOG", "RUST_BACKTRACE", "DISABLE_METRICS_ENDPOINT",
        "DOCUMENT_RETENTION_DELAY", "APPLICATION_MAX_CONCURRENT_QUERIES",
        "APPLICATION_MAX_CONCURRENT_MUTATIONS", "APPLICATION_MAX_CONCURRENT_V8_ACTIONS",
        "APPLICATION_MAX_CONCURRENT_NODE_ACTIONS", "V8_ACTION_USER_TIMEOUT_SECS",
        "NODE_ACTION_USER_TIMEOUT_SECS", "HTTP_SERVER_TIMEOUT_SECONDS",
        "CONVEX_RELEASE_VERSION_DEV", "NEXT_PUBLIC_DEPLOYMENT_URL", "NEXT_PUBLIC_ADMIN_KEY",
    }
)
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Each extra deployment of a stack shifts all of its host ports by this much.
DEPLOYMENT_PORT_STRIDE = 10


@dataclass(frozen=True)
class Key:
    """One project config key: its Pulumi.yaml type and default (as the CLI passes it)."""

    name: str
    type: str  # "string" | "integer" | "boolean" | "array"
    default: Any
    secret: bool = False  # must be set with `pulumi config set --secret`


# The public interface: every key here has a typed, described entry in Pulumi.yaml
# (tests/test_project_files.py keeps the two in step).
KEYS: tuple[Key, ...] = (
    Key("instanceName", "string", ""),
    Key("instanceSecret", "string", "", secret=True),
    Key("version", "string", DEFAULT_VERSION),
    Key("deployments", "array", []),
    Key("backendPort", "integer", 3210),
    Key("sitePort", "integer", 3211),
    Key("dashboardPort", "integer", 6791),
    Key("bindAddress", "string", "127.0.0.1"),
    Key("cloudOrigin", "string", ""),
    Key("siteOrigin", "string", ""),
    Key("dashboard", "boolean", True),
    Key("protectData", "boolean", True),
    Key("dataVolumeName", "string", ""),
    Key("backendStartTimeoutSeconds", "integer", 300),
    Key("restartPolicy", "string", "unless-stopped"),
    Key("memoryLimitMb", "integer", 0),
    Key("cpus", "string", ""),
    Key("logMaxSizeMb", "integer", 10),
    Key("logMaxFiles", "integer", 3),
    Key("rustLog", "string", "info"),
    Key("rustBacktrace", "string", ""),
    Key("disableBeacon", "boolean", False),
    Key("redactLogsToClient", "boolean", False),
    Key("disableMetricsEndpoint", "boolean", True),
    Key("documentRetentionDelaySeconds", "integer", 172800),
    Key("maxConcurrentQueries", "integer", 16),
    Key("maxConcurrentMutations", "integer", 16),
    Key("maxConcurrentV8Actions", "integer", 16),
    Key("maxConcurrentNodeActions", "integer", 16),
    Key("v8ActionTimeoutSeconds", "integer", 0),
    Key("nodeActionTimeoutSeconds", "integer", 0),
    Key("httpServerTimeoutSeconds", "integer", 0),
    Key("releaseVersionDev", "string", ""),
    Key("dashboardLoadMonacoInternally", "boolean", False),
    Key("extraEnv", "array", []),
    Key("databaseUrl", "string", "", secret=True),
    Key("requireDatabaseSsl", "boolean", True),
    Key("provisionPostgres", "boolean", False),
    Key("postgresImage", "string", "postgres:17.6-alpine"),
    Key("s3Region", "string", ""),
    Key("s3BucketPrefix", "string", ""),
    Key("s3ExportsBucket", "string", ""),
    Key("s3SnapshotImportsBucket", "string", ""),
    Key("s3ModulesBucket", "string", ""),
    Key("s3FilesBucket", "string", ""),
    Key("s3SearchBucket", "string", ""),
    Key("s3Endpoint", "string", ""),
    Key("s3ForcePathStyle", "boolean", False),
    Key("s3DisableSse", "boolean", False),
    Key("s3DisableChecksums", "boolean", False),
    Key("awsAccessKeyId", "string", "", secret=True),
    Key("awsSecretAccessKey", "string", "", secret=True),
    Key("awsSessionToken", "string", "", secret=True),
    Key("tlsProxy", "boolean", False),
    Key("apiDomain", "string", ""),
    Key("siteDomain", "string", ""),
    Key("dashboardDomain", "string", ""),
    Key("tlsEmail", "string", ""),
    Key("tlsBindAddress", "string", "0.0.0.0"),
    Key("httpPort", "integer", 80),
    Key("httpsPort", "integer", 443),
    Key("caddyImage", "string", "caddy:2.10.2-alpine"),
)
KEYS_BY_NAME = {key.name: key for key in KEYS}
S3_BUCKET_KEYS = {
    "exports": "s3ExportsBucket",
    "snapshot-imports": "s3SnapshotImportsBucket",
    "modules": "s3ModulesBucket",
    "files": "s3FilesBucket",
    "search": "s3SearchBucket",
}
S3_BUCKET_KINDS = tuple(S3_BUCKET_KEYS)


class ConfigError(pulumi.RunError):
    """Every configuration problem of a stack, reported at once."""

    def __init__(self, stack: str, problems: Sequence[str]):
        self.problems = tuple(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(
            f"stack '{stack}' has {count} configuration {noun} "
            f"(nothing was changed):\n{lines}"
        )


class SecretValue:
    """A configuration secret held as plain text only in memory.

    Its repr never shows the value, so a settings object can be printed or logged;
    components hand it to Pulumi only through `pulumi.Output.secret`.
    """

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


@dataclass(frozen=True)
class DatabaseSettings:
    kind: str  # "sqlite" | "postgres" | "mysql" | "provisioned-postgres"
    url: Optional[SecretValue] = None  # external databases only
    require_ssl: bool = True
    postgres_image: str = ""

    @property
    def env_var(self) -> Optional[str]:
        return {"postgres": "POSTGRES_URL", "mysql": "MYSQL_URL",
                "provisioned-postgres": "POSTGRES_URL"}.get(self.kind)


@dataclass(frozen=True)
class S3Settings:
    region: str
    buckets: Mapping[str, str]  # kind (S3_BUCKET_KINDS) -> bucket name
    endpoint: str = ""
    force_path_style: bool = False
    disable_sse: bool = False
    disable_checksums: bool = False
    access_key_id: Optional[SecretValue] = None
    secret_access_key: Optional[SecretValue] = None
    session_token: Optional[SecretValue] = None


@dataclass(frozen=True)
class TlsSettings:
    email: str
    bind_address: str
    http_port: int
    https_port: int
    image: str


@dataclass(frozen=True)
class DeploymentSettings:
    """One Convex deployment (backend + dashboard) of the stack."""

    key: str  # name in the `deployments` list, or the instance name for a single one
    instance_name: str
    instance_secret: Optional[SecretValue]  # None: generate one with pulumi-random
    backend_port: int
    site_port: int
    dashboard_port: int
    cloud_origin: str
    site_origin: str
    dashboard_url: str
    data_volume_name: str
    api_domain: str = ""
    site_domain: str = ""
    dashboard_domain: str = ""

    @property
    def database_name(self) -> str:
        # Upstream's backend uses the database named after the instance, dashes
        # replaced by underscores (postgres_or_mysql.md).
        return self.instance_name.replace("-", "_")


@dataclass(frozen=True)
class BackendTuning:
    rust_log: str
    rust_backtrace: str
    disable_beacon: bool
    redact_logs_to_client: bool
    disable_metrics_endpoint: bool
    document_retention_delay_seconds: int
    max_concurrent_queries: int
    max_concurrent_mutations: int
    max_concurrent_v8_actions: int
    max_concurrent_node_actions: int
    v8_action_timeout_seconds: int
    node_action_timeout_seconds: int
    http_server_timeout_seconds: int
    release_version_dev: str
    extra_env: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ContainerSettings:
    restart_policy: str
    memory_limit_mb: int  # 0: no limit
    cpus: str  # "": no limit
    log_max_size_mb: int
    log_max_files: int
    backend_start_timeout_seconds: int


@dataclass(frozen=True)
class StackSettings:
    stack: str
    version: str
    bind_address: str
    dashboard: bool
    dashboard_load_monaco_internally: bool
    protect_data: bool
    multi: bool  # True when `deployments` lists names: outputs become maps
    deployments: tuple[DeploymentSettings, ...]
    database: DatabaseSettings
    s3: Optional[S3Settings]
    tls: Optional[TlsSettings]
    tuning: BackendTuning
    containers: ContainerSettings
    warnings: tuple[str, ...] = field(default=())

    @property
    def backend_image(self) -> str:
        return f"{BACKEND_IMAGE}:{self.version}"

    @property
    def dashboard_image(self) -> str:
        return f"{DASHBOARD_IMAGE}:{self.version}"


# --------------------------------------------------------------------------- reading


def _all_config() -> dict[str, Any]:
    """Every config value the engine handed the program, keyed `namespace:key`."""
    from pulumi.runtime import config as runtime_config

    values = dict(runtime_config.get_config_env())
    values.update(runtime_config.CONFIG.get())
    return values


class _Reader:
    """Parses raw config strings, collecting problems instead of raising."""

    def __init__(self, raw: Mapping[str, Any], secret_keys: set[str]):
        self.raw = raw
        self.secret_keys = secret_keys
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{NAMESPACE}:{key}: {message}")

    def _value(self, name: str) -> Any:
        full = f"{NAMESPACE}:{name}"
        return self.raw[full] if full in self.raw else KEYS_BY_NAME[name].default

    def string(self, name: str) -> str:
        value = self._value(name)
        return value.strip() if isinstance(value, str) else str(value)

    def integer(self, name: str) -> Optional[int]:
        value = self._value(name)
        if isinstance(value, bool):
            value = str(value)
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        self.problem(name, f"{text!r} is not a whole number; set it with "
                           f"`pulumi config set {name} <number>`.")
        return None

    def boolean(self, name: str) -> bool:
        value = self._value(name)
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        self.problem(name, f"{value!r} is not a boolean; use true or false.")
        return bool(KEYS_BY_NAME[name].default)

    def string_list(self, name: str) -> list[str]:
        value = self._value(name)
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else []
            except json.JSONDecodeError:
                self.problem(name, f"{value!r} is not a list; write it in the stack file "
                                   f"as a YAML list of strings.")
                return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(name, "must be a list of strings.")
            return []
        return [v.strip() for v in value]

    def secret(self, name: str) -> Optional[SecretValue]:
        """A key that must hold a secret: refused when stored in plain text."""
        value = self.string(name)
        if not value:
            return None
        if f"{NAMESPACE}:{name}" not in self.secret_keys:
            self.problem(name, "is stored in plain text in the stack file; remove it and "
                               f"set it again with `pulumi config set --secret {name} ...`.")
        return SecretValue(value)


# --------------------------------------------------------------------------- checks


def is_dev_stack(stack: str) -> bool:
    return stack in ("dev", "local") or stack.startswith("dev-")


def default_instance_name(stack: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", stack.lower()).strip("-") or "stack"
    return f"convex-{slug}"[:63].rstrip("-")


def _check_port(reader: _Reader, name: str) -> Optional[int]:
    port = reader.integer(name)
    if port is not None and not 1 <= port <= 65535:
        reader.problem(name, f"{port} is not a TCP port; use a number from 1 to 65535.")
        return None
    return port


def _check_ip(reader: _Reader, name: str) -> Optional[str]:
    """The address, or None (with a problem reported) when it is not one."""
    value = reader.string(name)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        reader.problem(name, f"{value!r} is not an IP address; use 127.0.0.1 (this host "
                             "only), 0.0.0.0 (every interface) or one interface's address.")
        return None
    return value


def _check_positive(reader: _Reader, name: str, *, zero_means_unset: bool = False) -> int:
    value = reader.integer(name)
    default = KEYS_BY_NAME[name].default
    if value is None:
        return default
    if value < 0 or (value == 0 and not zero_means_unset):
        hint = " (0 leaves it unset)" if zero_means_unset else ""
        reader.problem(name, f"{value} must be greater than zero{hint}.")
        return default
    return value


def _check_http_url(reader: _Reader, name: str) -> str:
    value = reader.string(name).rstrip("/")
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        reader.problem(name, f"{value!r} is not an http(s) URL; write it like "
                             "https://convex.example.com.")
    elif parts.path or parts.query or parts.fragment:
        reader.problem(name, f"{value!r} must be an origin (scheme, host, optional port) "
                             "without a path.")
    return value


def _check_domain(reader: _Reader, name: str) -> str:
    value = reader.string(name).lower()
    if value and not re.fullmatch(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+"
                                  r"[a-z]{2,63}", value):
        reader.problem(name, f"{value!r} is not a domain name; write it like "
                             "api.convex.example.com (no scheme, no port).")
    return value


def _check_instance_name(reader: _Reader, name: str, value: str, source: str) -> None:
    if len(value) > 63 or not INSTANCE_NAME_PATTERN.fullmatch(value):
        reader.problem(name, f"{source} {value!r} is not a valid instance name; use lowercase "
                             "letters, digits and single dashes, at most 63 characters, "
                             "e.g. convex-prod.")


def _read_database(reader: _Reader) -> DatabaseSettings:
    url = reader.secret("databaseUrl")
    require_ssl = reader.boolean("requireDatabaseSsl")
    provision = reader.boolean("provisionPostgres")
    postgres_image = reader.string("postgresImage")
    if provision:
        if url is not None:
            reader.problem("databaseUrl", "is set together with provisionPostgres; choose one: "
                                          "remove databaseUrl to run Postgres in a container, "
                                          "or set provisionPostgres to false.")
        _check_image_ref(reader, "postgresImage", postgres_image)
        return DatabaseSettings("provisioned-postgres", None, False, postgres_image)
    if url is None:
        return DatabaseSettings("sqlite")
    parts = urlsplit(url.reveal())
    scheme = parts.scheme.lower()
    kind = {"postgres": "postgres", "postgresql": "postgres", "mysql": "mysql"}.get(scheme)
    # Messages never echo the URL: it carries a password.
    if kind is None:
        reader.problem("databaseUrl", f"scheme {scheme or '(none)'!r} is not supported; use "
                                      "postgres://user:password@host:5432 or "
                                      "mysql://user:password@host:3306.")
    else:
        if not parts.username:
            reader.problem("databaseUrl", "has no user; write it like "
                                          f"{scheme}://user:password@host.")
        if not parts.hostname:
            reader.problem("databaseUrl", "has no host; write it like "
                                          f"{scheme}://user:password@host.")
        if parts.path not in ("", "/"):
            reader.problem("databaseUrl", "names a database; remove the path: the backend "
                                          "connects to the database named after the instance "
                                          "(dashes become underscores), which must exist.")
    return DatabaseSettings(kind or "postgres", url, require_ssl)


def _read_s3(reader: _Reader) -> Optional[S3Settings]:
    region = reader.string("s3Region")
    prefix = reader.string("s3BucketPrefix")
    explicit = {kind: reader.string(S3_BUCKET_KEYS[kind]) for kind in S3_BUCKET_KINDS}
    endpoint = _check_http_url(reader, "s3Endpoint")
    flags = [reader.boolean(k) for k in ("s3ForcePathStyle", "s3DisableSse", "s3DisableChecksums")]
    credentials = [reader.secret(k) for k in ("awsAccessKeyId", "awsSecretAccessKey",
                                              "awsSessionToken")]
    any_bucket = bool(prefix) or any(explicit.values())
    if not (region or any_bucket or endpoint or any(flags) or any(credentials)):
        return None

    if prefix and any(explicit.values()):
        reader.problem("s3BucketPrefix", "is set together with explicit bucket keys ("
                       + ", ".join(S3_BUCKET_KEYS[k] for k, v in explicit.items() if v)
                       + "); use the prefix alone or all five bucket keys.")
    if prefix:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,44}", prefix):
            reader.problem("s3BucketPrefix", f"{prefix!r} cannot start valid bucket names; use "
                                             "lowercase letters, digits, dots and dashes.")
        buckets = {kind: f"{prefix}-{kind}" for kind in S3_BUCKET_KINDS}
    else:
        buckets = explicit
    missing = []
    if not region:
        missing.append("s3Region")
    if not prefix:
        missing += [S3_BUCKET_KEYS[k] for k, v in explicit.items() if not v]
    if missing:
        reader.problem("s3Region" if not region else "s3BucketPrefix",
                       "S3 storage is partly configured; missing " + ", ".join(missing)
                       + ". Set s3Region and either s3BucketPrefix or all five bucket keys "
                       "(upstream would silently fall back to local disk).")
    access_key, secret_key, token = credentials
    if (access_key is None) != (secret_key is None):
        reader.problem("awsSecretAccessKey" if secret_key is None else "awsAccessKeyId",
                       "awsAccessKeyId and awsSecretAccessKey go together; set both, or "
                       "neither to use the host's IAM role.")
    return S3Settings(region, buckets, endpoint, *flags, access_key, secret_key, token)


def _check_image_ref(reader: _Reader, name: str, image: str) -> None:
    tag = image.rsplit("@", 1)[-1] if "@" in image else image.rsplit("/", 1)[-1].partition(":")[2]
    if not tag or tag in MOVING_TAGS:
        reader.problem(name, f"{image!r} is not pinned; name an exact version tag, e.g. "
                             f"{KEYS_BY_NAME[name].default}.")


def _read_extra_env(reader: _Reader) -> tuple[tuple[str, str], ...]:
    pairs = []
    for entry in reader.string_list("extraEnv"):
        name, sep, value = entry.partition("=")
        if not sep or not ENV_NAME_PATTERN.fullmatch(name):
            reader.problem("extraEnv", f"entry {name!r} is not NAME=value.")
        elif name in OWNED_ENV_VARS:
            reader.problem("extraEnv", f"{name} is owned by a typed key; set that key instead "
                                       "(see the README's configuration reference).")
        else:
            pairs.append((name, value))
    return tuple(pairs)


def _published_ports(deployments: Sequence[DeploymentSettings], bind: str, dashboard: bool,
                     tls: Optional[TlsSettings]) -> list[tuple[str, str, int]]:
    ports = []
    for d in deployments:
        ports.append((f"backendPort ({d.key})", bind, d.backend_port))
        ports.append((f"sitePort ({d.key})", bind, d.site_port))
        if dashboard:
            ports.append((f"dashboardPort ({d.key})", bind, d.dashboard_port))
    if tls:
        ports.append(("httpPort", tls.bind_address, tls.http_port))
        ports.append(("httpsPort", tls.bind_address, tls.https_port))
    return ports


def _check_port_clashes(reader: _Reader, ports: list[tuple[str, str, int]]) -> None:
    def overlaps(a: str, b: str) -> bool:
        return a == b or any(ipaddress.ip_address(ip).is_unspecified for ip in (a, b))

    for i, (name_a, ip_a, port_a) in enumerate(ports):
        for name_b, ip_b, port_b in ports[i + 1:]:
            if port_a == port_b and overlaps(ip_a, ip_b):
                key = name_b.split(" ")[0]
                reader.problem(key, f"host port {port_b} of {name_b} clashes with {name_a}; "
                                    "give each published port its own number.")


# --------------------------------------------------------------------------- loading


def load_settings() -> StackSettings:
    """Read and validate the stack's configuration (raises ConfigError)."""
    from pulumi.runtime import config as runtime_config

    raw = _all_config()
    secret_keys = set(runtime_config._SECRET_KEYS.get()) | set(
        runtime_config.get_config_secret_keys_env())
    return settings_from_config(pulumi.get_stack(), raw, secret_keys)


def settings_from_config(stack: str, raw: Mapping[str, Any],
                         secret_keys: set[str]) -> StackSettings:
    reader = _Reader(raw, secret_keys)
    warnings: list[str] = []

    for full_key in sorted(raw):
        namespace, _, name = full_key.partition(":")
        if namespace == NAMESPACE and name not in KEYS_BY_NAME:
            close = [k for k in KEYS_BY_NAME if k.lower() == name.lower()] or _similar(name)
            hint = f" Did you mean {close[0]}?" if close else ""
            reader.problem(name, f"is not a convex-selfhost setting.{hint} Remove it with "
                                 f"`pulumi config rm {name}`.")

    version = reader.string("version")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", version):
        reader.problem("version", f"{version!r} is not an image tag; use an upstream release "
                                  f"tag (a commit SHA), e.g. {DEFAULT_VERSION}.")
    elif version in MOVING_TAGS:
        if is_dev_stack(stack):
            warnings.append(f"version {version!r} moves: every `pulumi up` may pick up a new "
                            "release. Pin a release tag outside dev.")
        else:
            reader.problem("version", f"{version!r} is a moving tag; pin a release tag (a commit "
                                      f"SHA such as {DEFAULT_VERSION}) so every `pulumi up` "
                                      "runs the version you previewed. Only dev stacks may "
                                      "use it.")

    bind = _check_ip(reader, "bindAddress")
    backend_port = _check_port(reader, "backendPort")
    site_port = _check_port(reader, "sitePort")
    dashboard_port = _check_port(reader, "dashboardPort")
    dashboard = reader.boolean("dashboard")
    cloud_origin = _check_http_url(reader, "cloudOrigin")
    site_origin = _check_http_url(reader, "siteOrigin")

    database = _read_database(reader)
    s3 = _read_s3(reader)

    tls = None
    domains = {k: _check_domain(reader, k) for k in ("apiDomain", "siteDomain", "dashboardDomain")}
    if reader.boolean("tlsProxy"):
        tls = TlsSettings(
            email=reader.string("tlsEmail"),
            bind_address=_check_ip(reader, "tlsBindAddress") or "",
            http_port=_check_port(reader, "httpPort") or 80,
            https_port=_check_port(reader, "httpsPort") or 443,
            image=reader.string("caddyImage"),
        )
        _check_image_ref(reader, "caddyImage", tls.image)
        needed = ["apiDomain", "siteDomain"] + (["dashboardDomain"] if dashboard else [])
        for name in needed:
            if not domains[name]:
                reader.problem(name, "is required when tlsProxy is true; set the public domain "
                                     "whose DNS points at this Docker host.")
        for name in ("cloudOrigin", "siteOrigin"):
            if reader.string(name):
                reader.problem(name, "is set together with tlsProxy; with the proxy the origin "
                                     "follows the domain (https://apiDomain, https://siteDomain)."
                                     " Remove it.")
    elif any(domains.values()):
        first = next(k for k, v in domains.items() if v)
        reader.problem(first, "is set but tlsProxy is false; set tlsProxy to true to serve "
                              "the domains over HTTPS, or remove it.")

    names = reader.string_list("deployments")
    base_name = reader.string("instanceName")
    if base_name:
        _check_instance_name(reader, "instanceName", base_name, "instanceName")
    else:
        base_name = default_instance_name(stack)
    secret = reader.secret("instanceSecret")
    if secret is not None:
        try:
            parse_instance_secret(secret.reveal())
        except AdminKeyError:
            reader.problem("instanceSecret", "must be 64 hex characters (32 bytes), as in "
                                             "/convex/data/credentials/instance_secret; generate "
                                             "one with `openssl rand -hex 32`.")
    data_volume = reader.string("dataVolumeName")
    if data_volume and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", data_volume):
        reader.problem("dataVolumeName", f"{data_volume!r} is not a Docker volume name.")

    multi = bool(names)
    if multi:
        seen = set()
        for name in names:
            _check_instance_name(reader, "deployments", name, "deployment name")
            if name in seen:
                reader.problem("deployments", f"{name!r} is listed twice; names must be unique.")
            seen.add(name)
        for key in ("instanceSecret", "dataVolumeName", "cloudOrigin", "siteOrigin"):
            if reader.string(key):
                reader.problem(key, "adopts or addresses one deployment and cannot be combined "
                                    "with deployments; remove it or the deployments list.")
        if tls:
            reader.problem("tlsProxy", "serves one deployment's domains and cannot be combined "
                                       "with deployments yet; use one stack per public deployment.")
    else:
        names = [""]

    deployments = []
    if None not in (backend_port, site_port, dashboard_port):
        # URLs a user on this host can open: an "every interface" bind is reached on loopback.
        unspecified = bind is None or ipaddress.ip_address(bind).is_unspecified
        host = "127.0.0.1" if unspecified else bind
        for index, name in enumerate(names):
            offset = index * DEPLOYMENT_PORT_STRIDE
            instance = f"{base_name}-{name}" if name else base_name
            if name and len(instance) > 63:
                reader.problem("deployments", f"instance name {instance!r} is longer than 63 "
                                              "characters; shorten instanceName or the name.")
            ports = (backend_port + offset, site_port + offset, dashboard_port + offset)
            if tls:
                origins = (f"https://{domains['apiDomain']}", f"https://{domains['siteDomain']}",
                           f"https://{domains['dashboardDomain']}" if dashboard else "")
            else:
                origins = (cloud_origin or f"http://{_url_host(host)}:{ports[0]}",
                           site_origin or f"http://{_url_host(host)}:{ports[1]}",
                           f"http://{_url_host(host)}:{ports[2]}" if dashboard else "")
            deployments.append(DeploymentSettings(
                key=name or instance,
                instance_name=instance,
                instance_secret=secret if not multi else None,
                backend_port=ports[0], site_port=ports[1], dashboard_port=ports[2],
                cloud_origin=origins[0], site_origin=origins[1], dashboard_url=origins[2],
                data_volume_name=data_volume or f"{instance}-data",
                api_domain=domains["apiDomain"], site_domain=domains["siteDomain"],
                dashboard_domain=domains["dashboardDomain"],
            ))
            if any(p > 65535 for p in ports):
                reader.problem("deployments", f"deployment {name!r} would need host ports "
                                              f"{ports}, beyond 65535; lower the base ports.")
        if bind and (tls is None or tls.bind_address):
            _check_port_clashes(reader, _published_ports(deployments, bind, dashboard, tls))

    if tls and bind and not ipaddress.ip_address(bind).is_loopback:
        reader.problem("bindAddress", f"{bind} publishes the raw backend ports beside the TLS "
                                      "proxy; keep them on 127.0.0.1 when tlsProxy is true.")

    tuning = BackendTuning(
        rust_log=reader.string("rustLog") or "info",
        rust_backtrace=_check_choice(reader, "rustBacktrace", RUST_BACKTRACE_VALUES),
        disable_beacon=reader.boolean("disableBeacon"),
        redact_logs_to_client=reader.boolean("redactLogsToClient"),
        disable_metrics_endpoint=reader.boolean("disableMetricsEndpoint"),
        document_retention_delay_seconds=_check_positive(reader, "documentRetentionDelaySeconds"),
        max_concurrent_queries=_check_positive(reader, "maxConcurrentQueries"),
        max_concurrent_mutations=_check_positive(reader, "maxConcurrentMutations"),
        max_concurrent_v8_actions=_check_positive(reader, "maxConcurrentV8Actions"),
        max_concurrent_node_actions=_check_positive(reader, "maxConcurrentNodeActions"),
        v8_action_timeout_seconds=_check_positive(reader, "v8ActionTimeoutSeconds",
                                                  zero_means_unset=True),
        node_action_timeout_seconds=_check_positive(reader, "nodeActionTimeoutSeconds",
                                                    zero_means_unset=True),
        http_server_timeout_seconds=_check_positive(reader, "httpServerTimeoutSeconds",
                                                    zero_means_unset=True),
        release_version_dev=reader.string("releaseVersionDev"),
        extra_env=_read_extra_env(reader),
    )
    cpus = reader.string("cpus")
    if cpus:
        try:
            if float(cpus) <= 0:
                raise ValueError
        except ValueError:
            reader.problem("cpus", f"{cpus!r} must be a number of CPUs greater than zero, "
                                   "e.g. 1.5.")
    containers = ContainerSettings(
        restart_policy=_check_choice(reader, "restartPolicy", RESTART_POLICIES),
        memory_limit_mb=_check_positive(reader, "memoryLimitMb", zero_means_unset=True),
        cpus=cpus,
        log_max_size_mb=_check_positive(reader, "logMaxSizeMb"),
        log_max_files=_check_positive(reader, "logMaxFiles"),
        backend_start_timeout_seconds=_check_positive(reader, "backendStartTimeoutSeconds"),
    )
    if containers.memory_limit_mb and containers.memory_limit_mb < 6:
        reader.problem("memoryLimitMb", "Docker needs at least 6 MB; a Convex backend wants "
                                        "1024 or more.")

    settings = StackSettings(
        stack=stack,
        version=version,
        bind_address=bind or "",
        dashboard=dashboard,
        dashboard_load_monaco_internally=reader.boolean("dashboardLoadMonacoInternally"),
        protect_data=reader.boolean("protectData"),
        multi=multi,
        deployments=tuple(deployments),
        database=database,
        s3=s3,
        tls=tls,
        tuning=tuning,
        containers=containers,
        warnings=tuple(warnings),
    )
    if reader.problems:
        raise ConfigError(stack, reader.problems)
    return settings


def _check_choice(reader: _Reader, name: str, choices: Sequence[str]) -> str:
    value = reader.string(name)
    if value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        reader.problem(name, f"{value!r} is not one of {shown}.")
        return KEYS_BY_NAME[name].default
    return value


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _similar(name: str) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, KEYS_BY_NAME, n=1, cutoff=0.75)


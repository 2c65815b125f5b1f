"""The validated, immutable settings of one stack (plain values, no Pulumi config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from components.settings.reader import SecretValue

BACKEND_IMAGE = "ghcr.io/get-convex/convex-backend"
DASHBOARD_IMAGE = "ghcr.io/get-convex/convex-dashboard"


@dataclass(frozen=True)
class DatabaseSettings:
    kind: str  # "sqlite" | "postgres" | "mysql" | "provisioned-postgres"
    url: Optional[SecretValue] = None  # external databases only
    require_ssl: bool = True
    postgres_image: str = ""
    ca_cert: str = ""  # PEM, external databases only
    pool_size: int = 0  # POSTGRES_MAX_CONNECTIONS; 0: upstream default
    server_max_connections: int = 0  # provisioned Postgres only

    @property
    def env_var(self) -> Optional[str]:
        return {"postgres": "POSTGRES_URL", "mysql": "MYSQL_URL",
                "provisioned-postgres": "POSTGRES_URL"}.get(self.kind)

    @property
    def ca_env_var(self) -> str:
        return "MYSQL_CA_FILE" if self.kind == "mysql" else "PG_CA_FILE"


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
class BackupSettings:
    schedule: str  # 5-field cron expression (UTC)
    keep: int
    image: str
    # Off-host copies (ops/backup_offsite.py): "" bucket: none.
    s3_bucket: str = ""
    s3_endpoint: str = ""  # "": AWS
    s3_region: str = "us-east-1"
    s3_prefix: str = ""  # keys: <prefix>/<instance>/snapshot-...
    s3_path_style: bool = False
    s3_access_key_id: Optional[SecretValue] = None
    s3_secret_access_key: Optional[SecretValue] = None
    lock_days: int = 0
    encryption_key: Optional[SecretValue] = None  # base64 of 32 bytes
    local: bool = True  # keep the local copy beside the bucket's


@dataclass(frozen=True)
class TlsSettings:
    email: str
    bind_address: str
    http_port: int
    https_port: int
    image: str


@dataclass(frozen=True)
class HostSettings:
    """target: host: where the binary runs and how it gets there."""

    address: str
    port: int
    user: str
    private_key: Optional[SecretValue]
    host_key: str  # "ssh-ed25519 AAAA...", pinned
    binary_path: str  # a local file, or
    binary_url: str  # an https URL the host downloads
    binary_sha256: str


@dataclass(frozen=True)
class KubernetesSettings:
    """target: kubernetes: where in the cluster, and how it is reached."""

    namespace: str
    storage_class: str  # "": the cluster's default
    storage_size: str  # a quantity, e.g. 10Gi
    ingress_class: str  # "": no Ingress
    ingress_annotations: tuple[tuple[str, str], ...]
    tls_secret: str  # an existing TLS Secret for the ingress, or
    cert_manager_issuer: str  # a cert-manager ClusterIssuer that makes one
    dashboard_host: str


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
    adopted_volume: bool = False  # dataVolumeName names a volume made outside this stack
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
    log_format: str
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
    actions_user_timeout_seconds: int
    http_server_timeout_seconds: int
    release_version_dev: str
    extra_env: tuple[tuple[str, str], ...]
    backend_args: tuple[str, ...] = ()
    extra_env_secret: bool = False  # extraEnv was set with --secret: its values stay secret
    # Env vars the chosen release does not read; omitted from the container.
    unread_env: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ContainerSettings:
    restart_policy: str
    memory_limit_mb: int  # 0: no limit
    cpus: str  # "": no limit; otherwise as Docker reports it back (see containers.py)
    log_max_size_mb: int
    log_max_files: int
    backend_start_timeout_seconds: int


@dataclass(frozen=True)
class StackSettings:
    stack: str
    version: str
    bind_address: str
    dashboard: bool
    protect_data: bool
    multi: bool  # True when `deployments` lists names: outputs become maps
    deployments: tuple[DeploymentSettings, ...]
    database: DatabaseSettings
    s3: Optional[S3Settings]
    tls: Optional[TlsSettings]
    tuning: BackendTuning
    containers: ContainerSettings
    docker_host: str = ""  # the docker provider's `docker:host`, "" for the local engine
    backups: Optional[BackupSettings] = None
    warnings: tuple[str, ...] = field(default=())
    target: str = "docker"  # "docker" | "host" | "kubernetes"
    host: Optional[HostSettings] = None  # target: host
    kubernetes: Optional[KubernetesSettings] = None  # target: kubernetes

    @property
    def backend_image(self) -> str:
        return f"{BACKEND_IMAGE}:{self.version}"

    @property
    def dashboard_image(self) -> str:
        return f"{DASHBOARD_IMAGE}:{self.version}"

"""The project's configuration keys: name, Pulumi.yaml type, default, secretness.

Every key here has a typed, described entry in Pulumi.yaml `config:`
(tests/test_project_files.py keeps the two in step). The CLI hands the program every
value as a string (arrays as JSON) with these defaults already applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.releases import DEFAULT_VERSION

NAMESPACE = "convex-selfhost"


@dataclass(frozen=True)
class Key:
    name: str
    type: str  # "string" | "integer" | "boolean" | "array"
    default: Any
    secret: bool = False  # must be set with `pulumi config set --secret`


KEYS: tuple[Key, ...] = (
    # where it runs
    Key("target", "string", "docker"),
    Key("kubernetesNamespace", "string", ""),
    Key("kubernetesStorageClass", "string", ""),
    Key("kubernetesStorageSize", "string", "10Gi"),
    Key("kubernetesIngressClass", "string", ""),
    Key("kubernetesIngressAnnotations", "array", []),
    Key("kubernetesIngressTlsSecret", "string", ""),
    Key("kubernetesCertManagerIssuer", "string", ""),
    Key("kubernetesDashboardHost", "string", ""),
    # identity and version
    Key("instanceName", "string", ""),
    Key("instanceSecret", "string", "", secret=True),
    Key("version", "string", DEFAULT_VERSION),
    Key("deployments", "array", []),
    # network
    Key("backendPort", "integer", 3210),
    Key("sitePort", "integer", 3211),
    Key("dashboardPort", "integer", 6791),
    Key("bindAddress", "string", "127.0.0.1"),
    Key("publicHost", "string", ""),
    Key("cloudOrigin", "string", ""),
    Key("siteOrigin", "string", ""),
    # dashboard and data
    Key("dashboard", "boolean", True),
    Key("protectData", "boolean", True),
    Key("dataVolumeName", "string", ""),
    # containers
    Key("backendStartTimeoutSeconds", "integer", 300),
    Key("restartPolicy", "string", "unless-stopped"),
    Key("memoryLimitMb", "integer", 0),
    Key("cpus", "string", ""),
    Key("logMaxSizeMb", "integer", 10),
    Key("logMaxFiles", "integer", 3),
    # backend tuning
    Key("rustLog", "string", "info"),
    Key("rustBacktrace", "string", ""),
    Key("logFormat", "string", ""),
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
    Key("actionsUserTimeoutSeconds", "integer", 0),
    Key("httpServerTimeoutSeconds", "integer", 0),
    Key("releaseVersionDev", "string", ""),
    Key("dashboardLoadMonacoInternally", "boolean", False),
    Key("extraEnv", "array", []),
    Key("backendArgs", "array", []),
    # database
    Key("databaseUrl", "string", "", secret=True),
    Key("requireDatabaseSsl", "boolean", True),
    Key("databaseCaCert", "string", ""),
    Key("postgresMaxConnections", "integer", 0),
    Key("provisionPostgres", "boolean", False),
    Key("postgresImage", "string", "postgres:17.6-alpine"),
    Key("postgresServerMaxConnections", "integer", 200),
    # scheduled backups
    Key("backupSchedule", "string", ""),
    Key("backupKeep", "integer", 7),
    Key("backupImage", "string", "python:3.12.7-slim-bookworm"),
    Key("backupS3Bucket", "string", ""),
    Key("backupS3Endpoint", "string", ""),
    Key("backupS3Region", "string", "us-east-1"),
    Key("backupS3Prefix", "string", ""),
    Key("backupS3ForcePathStyle", "boolean", False),
    Key("backupS3AccessKeyId", "string", "", secret=True),
    Key("backupS3SecretAccessKey", "string", "", secret=True),
    Key("backupS3LockDays", "integer", 0),
    Key("backupEncryptionKey", "string", "", secret=True),
    Key("backupLocal", "boolean", True),
    # S3
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
    # TLS proxy
    Key("tlsProxy", "boolean", False),
    Key("apiDomain", "string", ""),
    Key("siteDomain", "string", ""),
    Key("dashboardDomain", "string", ""),
    Key("tlsEmail", "string", ""),
    Key("tlsBindAddress", "string", "0.0.0.0"),
    Key("httpPort", "integer", 80),
    Key("httpsPort", "integer", 443),
    Key("caddyImage", "string", "caddy:2.10.2-alpine"),
    # the host target (target: host)
    Key("hostAddress", "string", ""),
    Key("sshPort", "integer", 22),
    Key("sshUser", "string", "root"),
    Key("sshPrivateKey", "string", "", secret=True),
    Key("sshHostKey", "string", ""),
    Key("backendBinary", "string", ""),
    Key("backendBinaryUrl", "string", ""),
    Key("backendBinarySha256", "string", ""),
)
KEYS_BY_NAME = {key.name: key for key in KEYS}

"""Settings: typed values, defaults, and one clear message per bad input."""

import base64
import re
from pathlib import Path

import pulumi
import pytest
from harness import SAMPLE_SECRET, evaluate, stack_config

from components.settings import (
    DEFAULT_VERSION,
    KEYS,
    ConfigError,
    SecretValue,
    default_instance_name,
    settings_from_config,
)
from components.settings.reader import quote


def load(stack="dev", overrides=None, secrets=None, stack_name=None):
    config, secret_keys = stack_config(stack, overrides, secrets)
    return settings_from_config(stack_name or stack or "test", config, set(secret_keys))


def problems(stack="dev", overrides=None, secrets=None, stack_name=None):
    with pytest.raises(ConfigError) as raised:
        load(stack, overrides, secrets, stack_name)
    return raised.value.problems


# (id, stack, plain overrides, secret overrides, every problem reported, in order)
# A self-signed test CA (public certificate only; its key was thrown away).
CA_PEM = (Path(__file__).parent / "fixtures" / "test-ca.pem").read_text()

BAD_INPUTS = [
    ('pool-too-large', 'dev', {'provisionPostgres': True, 'postgresMaxConnections': 10001}, {},
     ['convex-selfhost:postgresMaxConnections: 10001 is out of range; use a number from 0 to 10000.']),
    ('server-max-too-large', 'dev', {'provisionPostgres': True, 'postgresServerMaxConnections': 10001}, {},
     ['convex-selfhost:postgresServerMaxConnections: 10001 is out of range; use a number from 20 to 10000.']),
    ('ca-cert-with-provisioned-postgres', 'dev', {'provisionPostgres': True, 'databaseCaCert': CA_PEM}, {},
     ['convex-selfhost:databaseCaCert: is for an external database; the provisioned Postgres is reached on the private network.']),
    ('ca-cert-with-sqlite', 'dev', {'databaseCaCert': CA_PEM}, {}, ['convex-selfhost:databaseCaCert: applies to a Postgres or MySQL database, but the deployment uses SQLite; set databaseUrl or provisionPostgres, or remove it.']),
    ('pool-with-sqlite', 'dev', {'postgresMaxConnections': 5}, {}, ['convex-selfhost:postgresMaxConnections: applies to a Postgres or MySQL database, but the deployment uses SQLite; set databaseUrl or provisionPostgres, or remove it.']),
    ('extra-env-line-break', 'dev', {'extraEnv': ['A=1', 'B=x\ny']}, {}, ["convex-selfhost:extraEnv: the value of B contains a line break or NUL; environment values are single lines."]),
    ('extra-env-carriage-return', 'dev', {'extraEnv': ['A=x\ry']}, {}, ["convex-selfhost:extraEnv: the value of A contains a line break or NUL; environment values are single lines."]),
    ('extra-env-nul', 'dev', {'extraEnv': ['A=x\x00y']}, {}, ["convex-selfhost:extraEnv: the value of A contains a line break or NUL; environment values are single lines."]),
    ('extra-env-second-entry', 'dev', {'extraEnv': ['A=1', 'nope']}, {},
     ['convex-selfhost:extraEnv: entry 2 is not NAME=value (a name of letters, digits and underscores, then =).']),
    ('backend-args-value-after-inline-value', 'dev', {'backendArgs': ['--convex-http-proxy=http://p:3128', 'value']}, {}, ["convex-selfhost:backendArgs: entry 2 is not a flag (--name or --name=value) or a flag's value (printable, no spaces)."]),
    ('backend-args-two-values', 'dev', {'backendArgs': ['--some-flag', 'v1', 'v2']}, {}, ["convex-selfhost:backendArgs: entry 3 is not a flag (--name or --name=value) or a flag's value (printable, no spaces)."]),
    ('backend-args-owned-inline', 'dev', {'backendArgs': ['--instance-secret=abc']}, {},
     ['convex-selfhost:backendArgs: --instance-secret is set by the program or a typed key; use that key instead.']),
    ('backend-args-value-with-space', 'dev', {'backendArgs': ['--some-flag', 'a b']}, {}, ["convex-selfhost:backendArgs: entry 2 is not a flag (--name or --name=value) or a flag's value (printable, no spaces)."]),
    ('s3-only-a-secret-key', 'dev', {}, {'awsSecretAccessKey': 'Zq9SecretOnly'},
     ["convex-selfhost:s3Region: S3 storage is partly configured; missing s3Region, s3ExportsBucket, s3SnapshotImportsBucket, s3ModulesBucket, s3FilesBucket, s3SearchBucket. Set s3Region and either s3BucketPrefix or all five bucket keys (upstream would silently fall back to local disk).", "convex-selfhost:awsAccessKeyId: awsAccessKeyId and awsSecretAccessKey go together; set both, or neither to use the host's IAM role."]),
    ('s3-only-a-session-token', 'dev', {}, {'awsSessionToken': 'Zq9TokenOnly'},
     ["convex-selfhost:s3Region: S3 storage is partly configured; missing s3Region, s3ExportsBucket, s3SnapshotImportsBucket, s3ModulesBucket, s3FilesBucket, s3SearchBucket. Set s3Region and either s3BucketPrefix or all five bucket keys (upstream would silently fall back to local disk).", "convex-selfhost:awsSessionToken: is a temporary credential's third part; set awsAccessKeyId and awsSecretAccessKey with it."]),
    ('s3-only-a-flag', 'dev', {'s3ForcePathStyle': True}, {}, ["convex-selfhost:s3Region: S3 storage is partly configured; missing s3Region, s3ExportsBucket, s3SnapshotImportsBucket, s3ModulesBucket, s3FilesBucket, s3SearchBucket. Set s3Region and either s3BucketPrefix or all five bucket keys (upstream would silently fall back to local disk)."]),
    ('s3-one-bucket-no-region', 'dev', {'s3FilesBucket': 'acme-files'}, {}, ["convex-selfhost:s3Region: S3 storage is partly configured; missing s3Region, s3ExportsBucket, s3SnapshotImportsBucket, s3ModulesBucket, s3SearchBucket. Set s3Region and either s3BucketPrefix or all five bucket keys (upstream would silently fall back to local disk)."]),
    ('s3-region-too-long', 'dev', {'s3Region': 'a' * 33, 's3BucketPrefix': 'acme'}, {},
     ["convex-selfhost:s3Region: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' is not a region name; write it like us-east-1 (or auto for R2)."]),
    ('origin-with-path', 'dev', {'cloudOrigin': 'https://api.example.com/x'}, {},
     ["convex-selfhost:cloudOrigin: 'https://api.example.com/x' must be an origin (scheme, host, optional port) without a path, query or fragment."]),
    ('s3-endpoint-with-path', 'dev', {'s3Endpoint': 'https://s3.example.com/bucket', 's3Region': 'eu-west-1', 's3BucketPrefix': 'acme'}, {},
     ["convex-selfhost:s3Endpoint: 'https://s3.example.com/bucket' must be an origin (scheme, host, optional port) without a path, query or fragment."]),
    ('port-not-integer', 'dev', {'backendPort': 'abc'}, {},
     ["convex-selfhost:backendPort: 'abc' is not a whole number; set it with `pulumi config set backendPort <number>`."]),
    ('port-too-large', 'dev', {'backendPort': 70000}, {},
     ['convex-selfhost:backendPort: 70000 is out of range; use a number from 1 to 65535.']),
    ('port-zero', 'dev', {'sitePort': 0}, {},
     ['convex-selfhost:sitePort: 0 is out of range; use a number from 1 to 65535.']),
    ('ports-clash', 'dev', {'dashboardPort': 3210}, {},
     ['convex-selfhost:dashboardPort: host port 3210 of dashboardPort (convex-dev) clashes with backendPort (convex-dev); give each published port its own number.']),
    ('tls-port-clash', 'prod', {'httpsPort': 3230}, {},
     ['convex-selfhost:httpsPort: host port 3230 of httpsPort clashes with backendPort (convex-prod); give each published port its own number.']),
    ('instance-name', 'dev', {'instanceName': 'Convex_Prod'}, {},
     ["convex-selfhost:instanceName: 'Convex_Prod' is not a valid instance name; use lowercase letters, digits and single dashes, at most 63 characters, e.g. convex-prod."]),
    ('instance-name-too-long', 'dev', {'instanceName': 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'}, {},
     ["convex-selfhost:instanceName: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' is not a valid instance name; use lowercase letters, digits and single dashes, at most 63 characters, e.g. convex-prod."]),
    ('secret-not-hex', 'dev', {}, {'instanceSecret': 'abc'},
     ['convex-selfhost:instanceSecret: must be 64 hex characters (32 bytes), as in /convex/data/credentials/instance_secret; generate one with `openssl rand -hex 32`.']),
    ('secret-in-plain-text', 'dev', {'instanceSecret': '5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f'}, {},
     ['convex-selfhost:instanceSecret: is stored in plain text in the stack file; remove it and set it again with `pulumi config set --secret instanceSecret ...`.']),
    ('origin-not-http', 'dev', {'cloudOrigin': 'ftp://convex.example.com'}, {},
     ["convex-selfhost:cloudOrigin: 'ftp://convex.example.com' is not an http(s) URL; write it like https://convex.example.com."]),
    ('origin-with-path', 'dev', {'siteOrigin': 'https://example.com/x'}, {},
     ["convex-selfhost:siteOrigin: 'https://example.com/x' has a path; a site origin is an origin of its own, or exactly the cloudOrigin followed by /http (one domain for both)."]),
    ('bind-address', 'dev', {'bindAddress': 'localhost'}, {},
     ["convex-selfhost:bindAddress: 'localhost' is not an IP address; use 127.0.0.1 (this host only), 0.0.0.0 (every interface) or one interface's address (no zone id)."]),
    ('negative-memory', 'dev', {'memoryLimitMb': -1}, {},
     ['convex-selfhost:memoryLimitMb: -1 is out of range; use a number from 0 to 4194304 MB.']),
    ('zero-concurrency', 'dev', {'maxConcurrentQueries': 0}, {},
     ['convex-selfhost:maxConcurrentQueries: 0 is out of range; use a number from 1 to 10000.']),
    ('zero-cpus', 'dev', {'cpus': '0'}, {},
     ["convex-selfhost:cpus: '0' must be a number of CPUs greater than zero and at most 1024, written like 2 or 1.5 (at most 9 decimals)."]),
    ('cpus-not-number', 'dev', {'cpus': 'two'}, {},
     ["convex-selfhost:cpus: 'two' must be a number of CPUs greater than zero and at most 1024, written like 2 or 1.5 (at most 9 decimals)."]),
    ('zero-log-files', 'dev', {'logMaxFiles': 0}, {},
     ['convex-selfhost:logMaxFiles: 0 is out of range; use a number from 1 to 100.']),
    ('negative-timeout', 'dev', {'v8ActionTimeoutSeconds': -5}, {},
     ['convex-selfhost:v8ActionTimeoutSeconds: -5 is out of range; use a number from 0 to 86400.']),
    ('latest-outside-dev', 'staging', {'version': 'latest'}, {},
     ["convex-selfhost:version: 'latest' is a moving tag; pin a release tag (a commit SHA such as 652b828b5129e6cdbcaa3c20efa8d116d09ff3bf) so every `pulumi up` runs the version you previewed. Only dev stacks may use it."]),
    ('no-tag-at-all', 'prod', {'version': 'main'}, {},
     ["convex-selfhost:version: 'main' is a moving tag; pin a release tag (a commit SHA such as 652b828b5129e6cdbcaa3c20efa8d116d09ff3bf) so every `pulumi up` runs the version you previewed. Only dev stacks may use it."]),
    ('version-not-a-tag', 'dev', {'version': 'a b'}, {},
     ["convex-selfhost:version: 'a b' is not an image tag; use an upstream release tag (a commit SHA), e.g. 652b828b5129e6cdbcaa3c20efa8d116d09ff3bf."]),
    ('database-name-in-url', 'dev', {}, {'databaseUrl': 'postgres://u:p@db:5432/convex'},
     ['convex-selfhost:databaseUrl: names a database; remove the path: the backend connects to the database named after the instance (dashes become underscores), which must exist.']),
    ('database-without-user', 'dev', {}, {'databaseUrl': 'postgres://db:5432'},
     ['convex-selfhost:databaseUrl: has no user; write it like postgres://user:password@host.']),
    ('database-scheme', 'dev', {}, {'databaseUrl': 'redis://u:p@db'},
     ["convex-selfhost:databaseUrl: scheme 'redis' is not supported; use postgres://user:password@host:5432 or mysql://user:password@host:3306."]),
    ('database-scheme-is-half-a-password', 'dev', {}, {'databaseUrl': 'Hunter2Secret:rest@db'},
     ['convex-selfhost:databaseUrl: its scheme is not supported; use postgres://user:password@host:5432 or mysql://user:password@host:3306.']),
    ('database-plain-text', 'dev', {'databaseUrl': 'postgres://u:p@db'}, {},
     ['convex-selfhost:databaseUrl: is stored in plain text in the stack file; remove it and set it again with `pulumi config set --secret databaseUrl ...`.']),
    ('database-and-provision', 'dev', {'provisionPostgres': True}, {'databaseUrl': 'postgres://u:p@db'},
     ['convex-selfhost:databaseUrl: is set together with provisionPostgres; choose one: remove databaseUrl to run Postgres in a container, or set provisionPostgres to false.']),
    ('postgres-image-moving', 'dev', {'provisionPostgres': True, 'postgresImage': 'postgres'}, {},
     ["convex-selfhost:postgresImage: 'postgres' has no tag, so Docker resolves it to the moving tag latest; name an exact, pinned version, e.g. postgres:17.6-alpine."]),
    ('s3-region-only', 'dev', {'s3Region': 'us-east-1'}, {},
     ['convex-selfhost:s3BucketPrefix: S3 storage is partly configured; missing s3ExportsBucket, s3SnapshotImportsBucket, s3ModulesBucket, s3FilesBucket, s3SearchBucket. Set s3Region and either s3BucketPrefix or all five bucket keys (upstream would silently fall back to local disk).']),
    ('s3-prefix-without-region', 'dev', {'s3BucketPrefix': 'acme'}, {},
     ['convex-selfhost:s3Region: S3 storage is partly configured; missing s3Region. Set s3Region and either s3BucketPrefix or all five bucket keys (upstream would silently fall back to local disk).']),
    ('s3-some-buckets', 'dev', {'s3Region': 'us-east-1', 's3FilesBucket': 'f', 's3ExportsBucket': 'e'}, {},
     ["convex-selfhost:s3ExportsBucket: 'e' is not a valid S3 bucket name: it must be 3 to 63 lowercase letters, digits, dots and dashes, starting and ending with a letter or digit.", "convex-selfhost:s3FilesBucket: 'f' is not a valid S3 bucket name: it must be 3 to 63 lowercase letters, digits, dots and dashes, starting and ending with a letter or digit.", 'convex-selfhost:s3BucketPrefix: S3 storage is partly configured; missing s3SnapshotImportsBucket, s3ModulesBucket, s3SearchBucket. Set s3Region and either s3BucketPrefix or all five bucket keys (upstream would silently fall back to local disk).']),
    ('s3-prefix-and-buckets', 'dev', {'s3Region': 'us-east-1', 's3BucketPrefix': 'acme', 's3FilesBucket': 'f'}, {},
     ['convex-selfhost:s3BucketPrefix: is set together with explicit bucket keys (s3FilesBucket); use the prefix alone or all five bucket keys.']),
    ('s3-endpoint', 'dev', {'s3Region': 'auto', 's3BucketPrefix': 'acme', 's3Endpoint': 'minio:9000'}, {},
     ["convex-selfhost:s3Endpoint: 'minio:9000' is not an http(s) URL; write it like https://convex.example.com."]),
    ('aws-key-without-secret', 'dev', {'s3Region': 'us-east-1', 's3BucketPrefix': 'acme'}, {'awsAccessKeyId': 'AKIA'},
     ["convex-selfhost:awsSecretAccessKey: awsAccessKeyId and awsSecretAccessKey go together; set both, or neither to use the host's IAM role."]),
    ('unknown-key', 'dev', {'backendPrt': 3210}, {},
     ['convex-selfhost:backendPrt: is not a convex-selfhost setting. Did you mean backendPort? Remove it with `pulumi config rm backendPrt`.']),
    ('unknown-key-case', 'dev', {'BackendPort': 3210}, {},
     ['convex-selfhost:BackendPort: is not a convex-selfhost setting. Did you mean backendPort? Remove it with `pulumi config rm BackendPort`.']),
    ('restart-policy', 'dev', {'restartPolicy': 'sometimes'}, {},
     ["convex-selfhost:restartPolicy: 'sometimes' is not one of 'no', 'on-failure', 'always', 'unless-stopped'."]),
    ('rust-backtrace', 'dev', {'rustBacktrace': 'yes'}, {},
     ["convex-selfhost:rustBacktrace: 'yes' is not one of '', '0', '1', 'full'."]),
    ('boolean', 'dev', {'protectData': 'maybe'}, {},
     ["convex-selfhost:protectData: 'maybe' is not a boolean; use true or false."]),
    ('extra-env-owned', 'dev', {'extraEnv': ['INSTANCE_SECRET=x']}, {},
     ["convex-selfhost:extraEnv: INSTANCE_SECRET is owned by a typed key; set that key instead (see the README's configuration reference)."]),
    ('extra-env-shape', 'dev', {'extraEnv': ['nope']}, {},
     ['convex-selfhost:extraEnv: entry 1 is not NAME=value (a name of letters, digits and underscores, then =).']),
    ('extra-env-not-list', 'dev', {'extraEnv': 'A=1'}, {},
     ['convex-selfhost:extraEnv: is not a list; write it in the stack file as a YAML list of strings.']),
    ('tls-without-domains', 'dev', {'tlsProxy': True}, {},
     ['convex-selfhost:apiDomain: is required when tlsProxy is true; set the public domain whose DNS points at this Docker host.', "convex-selfhost:dashboardDomain: is required when tlsProxy and dashboard are true; set the dashboard's public domain."]),
    ('domain-without-tls', 'dev', {'apiDomain': 'api.example.com'}, {},
     ['convex-selfhost:apiDomain: is set but tlsProxy is false; set tlsProxy to true to serve the domains over HTTPS, or remove it.']),
    ('bad-domain', 'prod', {'apiDomain': 'https://api.example.com'}, {},
     ["convex-selfhost:apiDomain: 'https://api.example.com' is not a domain name; write it in lowercase like api.convex.example.com (no scheme, no port, punycode for international names)."]),
    ('tls-with-public-raw-ports', 'prod', {'bindAddress': '0.0.0.0'}, {},
     ['convex-selfhost:bindAddress: 0.0.0.0 publishes the raw backend ports beside the TLS proxy; keep them on 127.0.0.1 when tlsProxy is true.']),
    ('tls-and-origin', 'prod', {'cloudOrigin': 'https://x.example.com'}, {},
     ['convex-selfhost:cloudOrigin: is set together with tlsProxy; with the proxy the origins follow the domains (https://apiDomain, https://siteDomain). Remove it.']),
    ('deployments-duplicate', 'preview', {'deployments': ['pr-1', 'pr-1']}, {},
     ["convex-selfhost:deployments: 'pr-1' is listed twice; names must be unique."]),
    ('deployments-bad-name', 'preview', {'deployments': ['PR_1']}, {},
     ["convex-selfhost:deployments: deployment name 'PR_1' is not a valid instance name; use lowercase letters, digits and single dashes."]),
    ('deployments-and-secret', 'preview', {}, {'instanceSecret': '5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f'},
     ['convex-selfhost:instanceSecret: adopts or addresses one deployment and cannot be combined with deployments; remove it or the deployments list.']),
    ('deployments-and-tls', 'prod', {'deployments': ['a']}, {},
     ["convex-selfhost:tlsProxy: serves one deployment's domains and cannot be combined with deployments yet; use one stack per public deployment."]),
    ('deployments-beyond-port-range', 'preview', {'backendPort': 65530, 'sitePort': 65531}, {},
     ["convex-selfhost:deployments: deployment 'pr-102' would need host ports beyond 65535; lower the base ports."]),
    ('data-volume-name', 'dev', {'dataVolumeName': 'bad name!'}, {},
     ["convex-selfhost:dataVolumeName: 'bad name!' is not a Docker volume name (letters, digits, _ . -, starting with a letter or digit)."]),
    ('db-password-bracket', 'dev', {}, {'databaseUrl': 'postgres://u:pa[ss@db:5432'},
     ['convex-selfhost:databaseUrl: is not a valid URL; percent-encode special characters in the user and password (e.g. [ as %5B, ] as %5D, @ as %40) and check the port.']),
    ('cloud-origin-open-bracket', 'dev', {'cloudOrigin': 'https://[::1'}, {},
     ["convex-selfhost:cloudOrigin: 'https://[::1' is not a valid URL (check the brackets around an IPv6 address and the port number)."]),
    ('site-origin-close-bracket', 'dev', {'siteOrigin': 'http://]x'}, {},
     ["convex-selfhost:siteOrigin: 'http://]x' is not a valid URL (check the brackets around an IPv6 address and the port number)."]),
    ('s3-endpoint-bracket', 'dev', {'s3Region': 'us-east-1', 's3BucketPrefix': 'acme', 's3Endpoint': 'https://[::1'}, {'awsAccessKeyId': 'AKIAEXAMPLE7', 'awsSecretAccessKey': 'wJalrXUtnFEMI-secret'},
     ["convex-selfhost:s3Endpoint: 'https://[::1' is not a valid URL (check the brackets around an IPv6 address and the port number)."]),
    ('huge-port', 'dev', {'backendPort': "9" * 5000}, {},
     ["convex-selfhost:backendPort: '999999999999999999999999999999999999999999999999999999999999...' is not a whole number; set it with `pulumi config set backendPort <number>`."]),
    ('secret-extra-env-malformed', 'dev', {}, {'extraEnv': '["hunter2-not-an-entry"]'},
     ['convex-selfhost:extraEnv: entry 1 is not NAME=value (a name of letters, digits and underscores, then =).']),
    ('s3-endpoint-credentials', 'dev', {'s3Region': 'us-east-1', 's3BucketPrefix': 'acme'}, {'s3Endpoint': 'https://key:hunter2@minio:9000', 'awsAccessKeyId': 'AKIAEXAMPLE7', 'awsSecretAccessKey': 'wJalrXUtnFEMI-secret'},
     ['convex-selfhost:s3Endpoint: contains credentials (user:password@); remove them: this URL is published in outputs and to every browser.']),
    ('cloud-origin-credentials', 'dev', {}, {'cloudOrigin': 'https://user:hunter2@api.example.com'},
     ['convex-selfhost:cloudOrigin: contains credentials (user:password@); remove them: this URL is published in outputs and to every browser.']),
    ('tls-email-injection', 'prod', {'tlsEmail': 'a@b.co\n}\n:80 {\n reverse_proxy postgres:5432\n}\n{'}, {},
     ["convex-selfhost:tlsEmail: 'a@b.co\\n}\\n:80 {\\n reverse_proxy postgres:5432\\n}\\n{' is not an email address (letters, digits and ._%+- before the @, a lowercase domain after it)."]),
    ('equal-domains', 'prod', {'siteDomain': 'api.convex.example.com'}, {},
     ['convex-selfhost:siteDomain: is the same domain as apiDomain; each role needs a domain of its own (leave siteDomain empty to serve HTTP actions under https://<apiDomain>/http).']),
    ('data-volume-is-pgdata', 'prod', {'dataVolumeName': 'convex-prod-pgdata'}, {},
     ["convex-selfhost:dataVolumeName: 'convex-prod-pgdata' is a volume this stack manages for another purpose (Postgres, TLS certificates or backups); name the volume that holds the backend's /convex/data."]),
    ('db-port-out-of-range', 'dev', {}, {'databaseUrl': 'postgres://u:p@db:99999'},
     ['convex-selfhost:databaseUrl: is not a valid URL; percent-encode special characters in the user and password (e.g. [ as %5B, ] as %5D, @ as %40) and check the port.']),
    ('db-port-not-number', 'dev', {}, {'databaseUrl': 'postgres://u:p@db:abc'},
     ['convex-selfhost:databaseUrl: is not a valid URL; percent-encode special characters in the user and password (e.g. [ as %5B, ] as %5D, @ as %40) and check the port.']),
    ('db-query-string-on-an-old-release', 'dev', {'version': '00bd92723422f3bff968230c94ccdeb8c1719832'}, {'databaseUrl': 'postgres://u:p@db:5432?sslmode=require'},
     ['convex-selfhost:databaseUrl: has a query string, which the chosen version 00bd92723422 refuses (releases from 4d3b0a5 on accept connection parameters); remove it or change `version`.']),
    ('cpus-nan', 'dev', {'cpus': 'nan'}, {},
     ["convex-selfhost:cpus: 'nan' must be a number of CPUs greater than zero and at most 1024, written like 2 or 1.5 (at most 9 decimals)."]),
    ('cpus-inf', 'dev', {'cpus': 'inf'}, {},
     ["convex-selfhost:cpus: 'inf' must be a number of CPUs greater than zero and at most 1024, written like 2 or 1.5 (at most 9 decimals)."]),
    ('cpus-tiny', 'dev', {'cpus': '1e-9'}, {},
     ["convex-selfhost:cpus: '1e-9' must be a number of CPUs greater than zero and at most 1024, written like 2 or 1.5 (at most 9 decimals)."]),
    ('cpus-underscore', 'dev', {'cpus': '1_000'}, {},
     ["convex-selfhost:cpus: '1_000' must be a number of CPUs greater than zero and at most 1024, written like 2 or 1.5 (at most 9 decimals)."]),
    ('cpus-unstable', 'dev', {'cpus': '0.05'}, {},
     ["convex-selfhost:cpus: '0.05' is reported back by the docker provider as another number, which would replace the containers on every run; use one decimal more or less (e.g. 0.1 or 0.15)."]),
    ('memory-overflow', 'dev', {'memoryLimitMb': 100000000000000000000}, {},
     ['convex-selfhost:memoryLimitMb: 100000000000000000000 is out of range; use a number from 0 to 4194304 MB.']),
    ('start-timeout-overflow', 'dev', {'backendStartTimeoutSeconds': 1000000000000000}, {},
     ['convex-selfhost:backendStartTimeoutSeconds: 1000000000000000 is out of range; use a number from 10 to 3600 seconds.']),
    ('concurrency-huge', 'dev', {'maxConcurrentMutations': 100000000000000000000}, {},
     ['convex-selfhost:maxConcurrentMutations: 100000000000000000000 is out of range; use a number from 1 to 10000.']),
    ('bucket-name-invalid', 'dev', {'s3Region': 'us-east-1', 's3ExportsBucket': 'Bad_Bucket', 's3SnapshotImportsBucket': 'imports-ok', 's3ModulesBucket': '192.168.1.1', 's3FilesBucket': 'files..x', 's3SearchBucket': 'search-ok'}, {'awsAccessKeyId': 'AKIAEXAMPLE7', 'awsSecretAccessKey': 'wJalrXUtnFEMI-secret'},
     ["convex-selfhost:s3ExportsBucket: 'Bad_Bucket' is not a valid S3 bucket name: it must be 3 to 63 lowercase letters, digits, dots and dashes, starting and ending with a letter or digit.", "convex-selfhost:s3ModulesBucket: '192.168.1.1' is not a valid S3 bucket name: it must not look like an IP address.", "convex-selfhost:s3FilesBucket: 'files..x' is not a valid S3 bucket name: it must not have two dots, or a dot next to a dash, in a row."]),
    ('region-invalid', 'dev', {'s3Region': 'US East 1', 's3BucketPrefix': 'acme'}, {'awsAccessKeyId': 'AKIAEXAMPLE7', 'awsSecretAccessKey': 'wJalrXUtnFEMI-secret'},
     ["convex-selfhost:s3Region: 'US East 1' is not a region name; write it like us-east-1 (or auto for R2)."]),
    ('session-token-alone', 'dev', {'s3Region': 'us-east-1', 's3BucketPrefix': 'acme'}, {'awsSessionToken': 'tok'},
     ["convex-selfhost:awsSessionToken: is a temporary credential's third part; set awsAccessKeyId and awsSecretAccessKey with it."]),
    ('version-LATEST', 'staging', {'version': 'LATEST'}, {},
     ["convex-selfhost:version: 'LATEST' is a moving tag; pin a release tag (a commit SHA such as 652b828b5129e6cdbcaa3c20efa8d116d09ff3bf) so every `pulumi up` runs the version you previewed. Only dev stacks may use it."]),
    ('postgres-truncated-digest', 'dev', {'provisionPostgres': True, 'postgresImage': 'postgres@sha256:abc'}, {},
     ["convex-selfhost:postgresImage: 'postgres@sha256:abc' has a digest that is not sha256: followed by 64 lowercase hex digits; name an exact, pinned version, e.g. postgres:17.6-alpine."]),
    ('caddy-moving-tag', 'prod', {'caddyImage': 'caddy:Latest'}, {},
     ["convex-selfhost:caddyImage: 'caddy:Latest' uses the moving tag 'Latest'; name an exact, pinned version, e.g. caddy:2.10.2-alpine."]),
    ('extra-env-path', 'dev', {'extraEnv': ['PATH=/tmp']}, {},
     ["convex-selfhost:extraEnv: PATH belongs to the container's own environment; setting it would break the image."]),
    ('extra-env-repeated', 'dev', {'extraEnv': ['A=1', 'A=2']}, {},
     ['convex-selfhost:extraEnv: A is set twice; keep one entry.']),
    ('misspelled-namespace', 'dev', {'convex-self-host:backendPort': 1}, {},
     ["convex-self-host:backendPort: the namespace 'convex-self-host' is not 'convex-selfhost', so this key is ignored; set it as convex-selfhost:backendPort."]),
    ('ipv6-zone-id', 'dev', {'bindAddress': 'fe80::1%eth0'}, {},
     ["convex-selfhost:bindAddress: 'fe80::1%eth0' is not an IP address; use 127.0.0.1 (this host only), 0.0.0.0 (every interface) or one interface's address (no zone id)."]),
    ('dashboard-domain-without-dashboard', 'prod', {'dashboard': False}, {},
     ['convex-selfhost:dashboardDomain: is set but dashboard is false; remove it, or set dashboard to true.']),
    ('bad-pem', 'dev', {'databaseCaCert': '-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----'}, {'databaseUrl': 'postgres://u:p@db:5432'},
     ['convex-selfhost:databaseCaCert: is not PEM: give one or more certificates, each between -----BEGIN CERTIFICATE----- and -----END CERTIFICATE----- lines, and nothing else.']),
    ('backend-args-owned', 'dev', {'backendArgs': ['--instance-secret', 'x']}, {},
     ['convex-selfhost:backendArgs: --instance-secret is set by the program or a typed key; use that key instead.']),
    ('backend-args-not-flag', 'dev', {'backendArgs': ['rm -rf /']}, {},
     ["convex-selfhost:backendArgs: entry 1 is not a flag (--name or --name=value) or a flag's value (printable, no spaces)."]),
    ('log-format', 'dev', {'logFormat': 'xml'}, {},
     ["convex-selfhost:logFormat: 'xml' is not one of '', 'compact', 'pretty', 'json'."]),
    ('v8-timeout-on-old-release', 'dev', {'version': '4d3b0a5de955a258e70e3813bbff486051d88820', 'v8ActionTimeoutSeconds': 60}, {},
     ['convex-selfhost:v8ActionTimeoutSeconds: sets V8_ACTION_USER_TIMEOUT_SECS, which the chosen version 4d3b0a5de955 does not read (only releases from 0eb789f on do); remove it or change `version`.']),
    ('actions-timeout-on-new-release', 'dev', {'actionsUserTimeoutSeconds': 60}, {},
     ['convex-selfhost:actionsUserTimeoutSeconds: sets ACTIONS_USER_TIMEOUT_SECS, which the chosen version 652b828b5129 does not read (only releases up to d1ff688 do); remove it or change `version`.']),
    ('s3-without-keys-on-old-release', 'dev', {'version': '4d3b0a5de955a258e70e3813bbff486051d88820', 's3Region': 'us-east-1', 's3BucketPrefix': 'acme'}, {},
     ['convex-selfhost:awsAccessKeyId: is required by this version: releases before 0b8731e use S3 only when both AWS keys are set, and otherwise store files on local disk. Set awsAccessKeyId and awsSecretAccessKey, or upgrade `version`.']),
    ('postgres-too-few-connections', 'dev', {'provisionPostgres': True, 'postgresServerMaxConnections': 100}, {},
     ["convex-selfhost:postgresServerMaxConnections: 100 leaves no room for the backend's pool of 128 connections (postgresMaxConnections, upstream default) plus 10 spare; raise it to 138 or more, or lower postgresMaxConnections."]),
    ('pool-bigger-than-server', 'dev', {'provisionPostgres': True, 'postgresMaxConnections': 300}, {},
     ["convex-selfhost:postgresServerMaxConnections: 200 leaves no room for the backend's pool of 300 connections (postgresMaxConnections) plus 10 spare; raise it to 310 or more, or lower postgresMaxConnections."]),
    ('every-interface-without-public-host', 'dev', {'bindAddress': '0.0.0.0'}, {},
     ['convex-selfhost:publicHost: is required when bindAddress is 0.0.0.0: the URLs in the outputs and the dashboard must name this host as other machines reach it; set publicHost (a DNS name or IP) or cloudOrigin and siteOrigin.']),
    ('public-host-on-loopback', 'dev', {'publicHost': 'convex.example.com'}, {},
     ['convex-selfhost:publicHost: is set but bindAddress is a loopback address, which no other machine reaches; set bindAddress too, or remove it.']),
    ('public-host-invalid', 'dev', {'bindAddress': '0.0.0.0', 'publicHost': 'bad host!'}, {},
     ["convex-selfhost:publicHost: 'bad host!' is not a host name or IP address; write it like convex.example.com or 203.0.113.7."]),
    ('tls-email-without-tls', 'dev', {'tlsEmail': 'ops@example.com'}, {},
     ['convex-selfhost:tlsEmail: is set but tlsProxy is false; set tlsProxy to true to serve the domains over HTTPS, or remove it.']),
    ('https-equals-http', 'prod', {'httpsPort': 80}, {},
     ['convex-selfhost:httpsPort: is the same as httpPort; give each listener its own port.', 'convex-selfhost:httpsPort: host port 80 of httpsPort clashes with httpPort; give each published port its own number.']),
    ('deployment-name-secret-no-echo', 'preview', {}, {'deployments': '["Hunter2"]'},
     ['convex-selfhost:deployments: deployment name the (secret) value is not a valid instance name; use lowercase letters, digits and single dashes.']),
    ('site-origin-required-on-every-interface', 'dev', {'bindAddress': '0.0.0.0', 'cloudOrigin': 'https://api.example.com'}, {},
     ['convex-selfhost:siteOrigin: is required with cloudOrigin when bindAddress is every interface; set it (or cloudOrigin + /http).']),
    ('origin-not-ascii', 'dev', {'cloudOrigin': 'https://bücher.example.com'}, {},
     ["convex-selfhost:cloudOrigin: 'https://b\\xfccher.example.com' is not a URL: use plain ASCII without spaces (punycode for international domains)."]),
    ('origin-with-space', 'dev', {'cloudOrigin': 'https://a b.example.com'}, {},
     ["convex-selfhost:cloudOrigin: 'https://a b.example.com' is not a URL: use plain ASCII without spaces (punycode for international domains)."]),
    ('origin-with-control-character', 'dev', {'cloudOrigin': 'https://a\x01b.example.com'}, {},
     ["convex-selfhost:cloudOrigin: 'https://a\\x01b.example.com' is not a URL: use plain ASCII without spaces (punycode for international domains)."]),
    ('origin-with-zone-id', 'dev', {'cloudOrigin': 'http://[fe80::1%25eth0]:3210'}, {},
     ["convex-selfhost:cloudOrigin: 'http://[fe80::1%25eth0]:3210' is not an http(s) URL; write it like https://convex.example.com."]),
    ('database-url-with-space', 'dev', {}, {'databaseUrl': 'postgres://u:p w@db:5432'},
     ['convex-selfhost:databaseUrl: contains spaces, control or non-ASCII characters; percent-encode them.']),
    ('database-url-not-ascii', 'dev', {}, {'databaseUrl': 'postgres://ü:p@db:5432'},
     ['convex-selfhost:databaseUrl: contains spaces, control or non-ASCII characters; percent-encode them.']),
    ('bucket-reserved-prefixes', 'dev', {'s3Region': 'us-east-1', 's3ExportsBucket': 'xn--abc', 's3SnapshotImportsBucket': 'sthree-abc', 's3ModulesBucket': 'amzn-s3-demo-abc', 's3FilesBucket': 'abc-s3alias', 's3SearchBucket': 'abc.mrap'}, {'awsAccessKeyId': 'AKIAEXAMPLE7', 'awsSecretAccessKey': 'wJalrXUtnFEMI-secret'},
     ["convex-selfhost:s3ExportsBucket: 'xn--abc' is not a valid S3 bucket name: it uses a prefix or suffix S3 reserves.", "convex-selfhost:s3SnapshotImportsBucket: 'sthree-abc' is not a valid S3 bucket name: it uses a prefix or suffix S3 reserves.", "convex-selfhost:s3ModulesBucket: 'amzn-s3-demo-abc' is not a valid S3 bucket name: it uses a prefix or suffix S3 reserves.", "convex-selfhost:s3FilesBucket: 'abc-s3alias' is not a valid S3 bucket name: it uses a prefix or suffix S3 reserves.", "convex-selfhost:s3SearchBucket: 'abc.mrap' is not a valid S3 bucket name: it uses a prefix or suffix S3 reserves."]),
    ('bucket-reserved-suffixes', 'dev', {'s3Region': 'us-east-1', 's3ExportsBucket': 'abc--ol-s3', 's3SnapshotImportsBucket': 'abc--x-s3', 's3ModulesBucket': 'abc--table-s3', 's3FilesBucket': 'a.-b', 's3SearchBucket': 'a-.b'}, {'awsAccessKeyId': 'AKIAEXAMPLE7', 'awsSecretAccessKey': 'wJalrXUtnFEMI-secret'},
     ["convex-selfhost:s3ExportsBucket: 'abc--ol-s3' is not a valid S3 bucket name: it uses a prefix or suffix S3 reserves.", "convex-selfhost:s3SnapshotImportsBucket: 'abc--x-s3' is not a valid S3 bucket name: it uses a prefix or suffix S3 reserves.", "convex-selfhost:s3ModulesBucket: 'abc--table-s3' is not a valid S3 bucket name: it uses a prefix or suffix S3 reserves.", "convex-selfhost:s3FilesBucket: 'a.-b' is not a valid S3 bucket name: it must not have two dots, or a dot next to a dash, in a row.", "convex-selfhost:s3SearchBucket: 'a-.b' is not a valid S3 bucket name: it must not have two dots, or a dot next to a dash, in a row."]),
    ('s3-prefix-invalid', 'dev', {'s3Region': 'us-east-1', 's3BucketPrefix': 'Bad_Prefix'}, {'awsAccessKeyId': 'AKIAEXAMPLE7', 'awsSecretAccessKey': 'wJalrXUtnFEMI-secret'},
     ["convex-selfhost:s3BucketPrefix: 'Bad_Prefix' cannot start valid bucket names; use lowercase letters, digits, dots and dashes, at most 46 characters."]),
    ('s3-prefix-too-long', 'dev', {'s3Region': 'us-east-1', 's3BucketPrefix': 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'}, {'awsAccessKeyId': 'AKIAEXAMPLE7', 'awsSecretAccessKey': 'wJalrXUtnFEMI-secret'},
     ["convex-selfhost:s3BucketPrefix: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' cannot start valid bucket names; use lowercase letters, digits, dots and dashes, at most 46 characters."]),
    ('s3-buckets-not-distinct', 'dev', {'s3Region': 'us-east-1', 's3ExportsBucket': 'same-bucket', 's3SnapshotImportsBucket': 'same-bucket', 's3ModulesBucket': 'mod-b', 's3FilesBucket': 'fil-b', 's3SearchBucket': 'sea-b'}, {'awsAccessKeyId': 'AKIAEXAMPLE7', 'awsSecretAccessKey': 'wJalrXUtnFEMI-secret'},
     ['convex-selfhost:s3FilesBucket: the five buckets must be distinct; upstream keeps each kind of object in a bucket of its own.']),
    ('aws-access-key-malformed', 'dev', {'s3Region': 'us-east-1', 's3BucketPrefix': 'acme'}, {'awsAccessKeyId': 'AKIA-bad!', 'awsSecretAccessKey': 'wJalrXUtnFEMI-secret'},
     ['convex-selfhost:awsAccessKeyId: is not an access key id (letters and digits only).']),
    ('aws-secret-without-key', 'dev', {'s3Region': 'us-east-1', 's3BucketPrefix': 'acme'}, {'awsSecretAccessKey': 'wJalrXUtnFEMI-secret'},
     ["convex-selfhost:awsAccessKeyId: awsAccessKeyId and awsSecretAccessKey go together; set both, or neither to use the host's IAM role."]),
    ('database-host-invalid', 'dev', {}, {'databaseUrl': 'postgres://u:p@bad_host!:5432'},
     ['convex-selfhost:databaseUrl: has no valid host; write it like postgres://user:password@host.']),
    ('database-port-zero', 'dev', {}, {'databaseUrl': 'postgres://u:p@db:0'},
     ["convex-selfhost:databaseUrl: has port 0; use the database's port (1 to 65535)."]),
    ('database-fragment', 'dev', {}, {'databaseUrl': 'postgres://u:p@db:5432#frag'},
     ['convex-selfhost:databaseUrl: has a fragment (#...); remove it: a connection URL has none.']),
    ('origin-user-only', 'dev', {'cloudOrigin': 'https://user@api.example.com'}, {},
     ['convex-selfhost:cloudOrigin: contains credentials (user:password@); remove them: this URL is published in outputs and to every browser.']),
    ('origin-port-zero', 'dev', {'cloudOrigin': 'https://api.example.com:0'}, {},
     ["convex-selfhost:cloudOrigin: 'https://api.example.com:0' has port 0; use a port from 1 to 65535."]),
    ('origin-query', 'dev', {'cloudOrigin': 'https://api.example.com?x=1'}, {},
     ["convex-selfhost:cloudOrigin: 'https://api.example.com?x=1' must be an origin (scheme, host, optional port) without a path, query or fragment."]),
    ('origin-fragment', 'dev', {'cloudOrigin': 'https://api.example.com#x'}, {},
     ["convex-selfhost:cloudOrigin: 'https://api.example.com#x' must be an origin (scheme, host, optional port) without a path, query or fragment."]),
    ('origin-empty-query', 'dev', {'cloudOrigin': 'https://api.example.com?'}, {},
     ["convex-selfhost:cloudOrigin: 'https://api.example.com?' must be an origin (scheme, host, optional port) without a path, query or fragment."]),
    ('monaco-refused', 'dev', {'dashboardLoadMonacoInternally': True}, {},
     ['convex-selfhost:dashboardLoadMonacoInternally: has no effect on the published dashboard images: upstream reads NEXT_PUBLIC_LOAD_MONACO_INTERNALLY when the image is built (next.config.js), not when it runs. Remove it.']),
    ('log-size-zero', 'dev', {'logMaxSizeMb': 0}, {},
     ['convex-selfhost:logMaxSizeMb: 0 is out of range; use a number from 1 to 10240 MB.']),
    ('log-size-too-big', 'dev', {'logMaxSizeMb': 10241}, {},
     ['convex-selfhost:logMaxSizeMb: 10241 is out of range; use a number from 1 to 10240 MB.']),
    ('log-files-too-many', 'dev', {'logMaxFiles': 101}, {},
     ['convex-selfhost:logMaxFiles: 101 is out of range; use a number from 1 to 100.']),
    ('start-timeout-too-short', 'dev', {'backendStartTimeoutSeconds': 9}, {},
     ['convex-selfhost:backendStartTimeoutSeconds: 9 is out of range; use a number from 10 to 3600 seconds.']),
    ('rust-log-injection', 'dev', {'rustLog': 'info;rm -rf'}, {},
     ["convex-selfhost:rustLog: 'info;rm -rf' is not a RUST_LOG filter; use levels and targets like info or info,common=debug."]),
    ('release-version-dev', 'dev', {'releaseVersionDev': '1.0 beta'}, {},
     ['convex-selfhost:releaseVersionDev: must be a version like 1.2.3 (letters, digits, dots, plus and dashes).']),
    ('cpus-below-docker-minimum', 'dev', {'cpus': '0.009'}, {},
     ['convex-selfhost:cpus: is below 0.01, the smallest CPU share Docker accepts.']),
    ('cpus-above-limit', 'dev', {'cpus': '1025'}, {},
     ["convex-selfhost:cpus: '1025' must be a number of CPUs greater than zero and at most 1024, written like 2 or 1.5 (at most 9 decimals)."]),
]


@pytest.mark.parametrize("stack,overrides,secrets,expected",
                         [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_named_and_explained(stack, overrides, secrets, expected):
    found = problems(stack, overrides, secrets)
    assert list(found) == expected
    for value in secrets.values():
        assert not any(value in p for p in found), "a secret value was echoed"


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
    assert default_instance_name("pr-7") == "convex-pr-7"
    # Not already a slug: a short hash keeps look-alike stack names apart on one host.
    assert default_instance_name("Feature_X.1") == "convex-feature-x-1-f25a29"
    assert default_instance_name("Feature_X") != default_instance_name("feature-x")
    assert default_instance_name("feature-x") == "convex-feature-x"
    assert len(default_instance_name("x" * 300)) <= 63


@pytest.mark.parametrize("stack,name", [
    ("a--b", "convex-a-b-90827a"),  # runs of separators collapse
    ("-a-", "convex-a-a75a46"),
    ("___", "convex-stack-bda251"),  # nothing left of the name
    ("A" * 100, "convex-" + "a" * 49 + "-d82c6a"),  # 63 characters exactly
    ("B" * 48 + "_c", "convex-" + "b" * 48 + "-73e4d1"),  # no "--" at the cut
    ("a" * 55 + "-bbbb", "convex-" + "a" * 55),  # a clean slug cut at 63, no trailing dash
    ("x" * 56, "convex-" + "x" * 56),
])
def test_instance_names_from_unusual_stack_names(stack, name):
    assert default_instance_name(stack) == name and len(name) <= 63


def test_every_interface_bind_uses_the_public_host_never_loopback():
    (d,) = load("dev", {"bindAddress": "0.0.0.0", "publicHost": "convex.lan"}).deployments
    assert (d.cloud_origin, d.site_origin, d.dashboard_url) == (
        "http://convex.lan:3210", "http://convex.lan:3211", "http://convex.lan:6791")
    (d,) = load("dev", {"bindAddress": "10.0.0.5"}).deployments
    assert d.cloud_origin == "http://10.0.0.5:3210"
    (d,) = load("dev", {"bindAddress": "::", "cloudOrigin": "https://api.example.com",
                        "siteOrigin": "https://api.example.com/http"}).deployments
    assert (d.cloud_origin, d.site_origin) == ("https://api.example.com",
                                               "https://api.example.com/http")


def urls(overrides, stack="dev"):
    return [(d.cloud_origin, d.site_origin, d.dashboard_url)
            for d in load(stack, overrides).deployments]


def test_urls_of_ipv6_binds_bracket_the_address():
    assert urls({"bindAddress": "::1"}) == [
        ("http://[::1]:3210", "http://[::1]:3211", "http://[::1]:6791")]
    assert urls({"bindAddress": "::", "publicHost": "2001:db8::7"}) == [
        ("http://[2001:db8::7]:3210", "http://[2001:db8::7]:3211", "http://[2001:db8::7]:6791")]


def test_without_a_dashboard_there_is_no_dashboard_url():
    assert urls({"dashboard": False}) == [("http://127.0.0.1:3210", "http://127.0.0.1:3211", "")]
    assert urls({"dashboard": False, "dashboardDomain": ""}, "prod") == [
        ("https://api.convex.example.com", "https://site.convex.example.com", "")]


def test_given_origins_on_every_interface_leave_the_dashboard_on_this_host():
    assert urls({"bindAddress": "0.0.0.0", "cloudOrigin": "https://api.example.com",
                 "siteOrigin": "https://api.example.com/http"}) == [
        ("https://api.example.com", "https://api.example.com/http", "http://127.0.0.1:6791")]


def test_deployment_ports_may_reach_65535_and_no_further():
    ports = {"deployments": ["a", "b"], "backendPort": 65513, "sitePort": 65514,
             "dashboardPort": 65525}
    assert [d.dashboard_port for d in load("dev", ports).deployments] == [65525, 65535]
    assert problems("dev", {**ports, "dashboardPort": 65526}) == (
        "convex-selfhost:deployments: deployment 'b' would need host ports beyond 65535; "
        "lower the base ports.",)


def test_ports_of_one_deployment_may_not_clash_with_anothers():
    assert problems("dev", {"deployments": ["a", "b"], "backendPort": 3300,
                            "sitePort": 3310}) == (
        "convex-selfhost:backendPort: host port 3310 of backendPort (b) clashes with sitePort "
        "(a); give each published port its own number.",)


@pytest.mark.parametrize("volume,ok", [
    ("ab", True), ("a", False), ("a" * 128, True), ("a" * 129, False), ("a_", True),
    ("_a", False), ("9" + "".join(sorted(set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"))), True),
])
def test_data_volume_name_rules(volume, ok):
    if ok:
        assert load("dev", {"dataVolumeName": volume}).deployments[0].data_volume_name == volume
    else:
        assert problems("dev", {"dataVolumeName": volume}) == (
            f"convex-selfhost:dataVolumeName: {quote(volume)} is not a Docker volume name "
            "(letters, digits, _ . -, starting with a letter or digit).",)


def test_public_host_and_origins_together_are_refused_by_name():
    assert problems("dev", {"bindAddress": "0.0.0.0", "publicHost": "h.example.com",
                            "cloudOrigin": "https://a.example.com",
                            "siteOrigin": "https://s.example.com"}) == tuple(
        f"convex-selfhost:{key}: is set together with publicHost; use one: publicHost derives "
        "every URL from the ports." for key in ("cloudOrigin", "siteOrigin"))


def test_quoted_values_are_cut_only_beyond_sixty_characters():
    assert quote("x" * 60) == repr("x" * 60) and quote("x" * 61) == repr("x" * 60 + "...")


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
    explicit = {"s3ExportsBucket": "exp", "s3SnapshotImportsBucket": "imp",
                "s3ModulesBucket": "mod", "s3FilesBucket": "fil", "s3SearchBucket": "sea"}
    s3 = load("dev", {"s3Region": "eu-west-1", **explicit}).s3
    assert dict(s3.buckets) == {"exports": "exp", "snapshot-imports": "imp",
                                "modules": "mod", "files": "fil", "search": "sea"}


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


def test_derived_instance_names_stay_within_63_characters():
    found = problems("preview", {"instanceName": "c" * 60, "deployments": ["pr-101"]})
    assert found == ("convex-selfhost:deployments: instance name of 'pr-101' is longer than 63 "
                     "characters; shorten instanceName or the name.",)
    load("preview", {"instanceName": "c" * 56, "deployments": ["pr-101"]})  # 63: fine


def test_memory_limit_has_dockers_lower_bound():
    assert problems("dev", {"memoryLimitMb": 5}) == (
        "convex-selfhost:memoryLimitMb: Docker needs at least 6 MB; a Convex backend wants "
        "1024 or more (0: no limit).",)
    assert load("dev", {"memoryLimitMb": 6}).containers.memory_limit_mb == 6


def test_metrics_are_never_published():
    assert problems("dev", {"bindAddress": "10.0.0.5", "disableMetricsEndpoint": False}) == (
        "convex-selfhost:disableMetricsEndpoint: is false while bindAddress 10.0.0.5 publishes "
        "the backend's ports: /metrics would be public. Keep it true, or bind to 127.0.0.1.",)
    load("dev", {"disableMetricsEndpoint": False})  # loopback: reachable on the host only
    old = load("dev", {"bindAddress": "10.0.0.5",
                       "version": "4d3b0a5de955a258e70e3813bbff486051d88820"})
    assert any("always serves /metrics" in warning for warning in old.warnings)


def test_one_problem_is_worded_in_the_singular():
    with pytest.raises(ConfigError) as raised:
        load("dev", {"backendPort": 0})
    assert str(raised.value) == (
        "stack 'dev' has 1 configuration problem (nothing was changed):\n"
        "  - convex-selfhost:backendPort: 0 is out of range; use a number from 1 to 65535.")
    with pytest.raises(ConfigError) as raised:
        load("dev", {"backendPort": 0, "sitePort": 0})
    assert str(raised.value).startswith("stack 'dev' has 2 configuration problems (nothing was "
                                        "changed):\n  - convex-selfhost:backendPort: ")
    assert "\n  - convex-selfhost:sitePort: " in str(raised.value)


def test_database_url_schemes():
    for url, kind in (("postgres://u:p@db:5432", "postgres"), ("postgresql://u:p@db", "postgres"),
                      ("mysql://u:p@db:3306", "mysql"), ("MySQL://u:p@db", "mysql")):
        assert load("dev", secrets={"databaseUrl": url}).database.kind == kind, url


def test_accepted_edges_of_urls():
    (d,) = load("dev", {"cloudOrigin": "http://api.example.com:1",
                        "siteOrigin": "http://api.example.com:1/http"}).deployments
    assert (d.cloud_origin, d.site_origin) == ("http://api.example.com:1",
                                               "http://api.example.com:1/http")
    assert load("dev", secrets={"databaseUrl": "postgres://u:p@db:1"}).database.kind == "postgres"
    assert load("dev", {"cloudOrigin": "http://[::1]:3210"}).deployments[0].cloud_origin == \
        "http://[::1]:3210"


def test_secret_values_hide_in_repr_and_compare_by_value():
    assert repr(SecretValue("hunter2")) == "SecretValue(<hidden>)"
    assert SecretValue("a") == SecretValue("a") and SecretValue("a") != SecretValue("b")
    assert SecretValue("a") != "a"
    assert hash(SecretValue("a")) == hash(SecretValue("a")) != hash(SecretValue("b"))


def test_s3_prefix_length_limit_and_conflict_message():
    assert load("dev", {"s3Region": "us-east-1", "s3BucketPrefix": "a" * 46}, {
        "awsAccessKeyId": "AKIAEXAMPLE7", "awsSecretAccessKey": "secret"}).s3.buckets[
        "snapshot-imports"] == "a" * 46 + "-snapshot-imports"
    found = problems("dev", {"s3Region": "us-east-1", "s3BucketPrefix": "acme",
                             "s3FilesBucket": "fil-b", "s3SearchBucket": "sea-b"},
                     {"awsAccessKeyId": "AKIAEXAMPLE7", "awsSecretAccessKey": "secret"})
    assert found == ("convex-selfhost:s3BucketPrefix: is set together with explicit bucket keys "
                     "(s3FilesBucket, s3SearchBucket); use the prefix alone or all five bucket "
                     "keys.",)


@pytest.mark.parametrize("key", ["convex_selfhost:backendPort", "ConvexSelfhost:backendPort",
                                 "convex-selfhots:backendPort", "convex-self-host:backendPort",
                                 "c_o_n_v_e_x_s_e_l_f_h_o_s_t:backendPort",
                                 "c-o-n-v-e-x-s-e-l-f-h-o-s-t:backendPort"])
def test_namespace_typos_are_reported(key):
    namespace = key.split(":")[0]
    assert problems("dev", {key: 1}) == (
        f"{key}: the namespace '{namespace}' is not 'convex-selfhost', so this key is ignored; "
        "set it as convex-selfhost:backendPort.",)


def test_s3_region_of_32_characters_and_an_endpoint_with_a_trailing_slash():
    s3 = load("dev", {"s3Region": "a" * 32, "s3BucketPrefix": "acme",
                      "s3Endpoint": "https://s3.example.com/"}).s3
    assert (s3.region, s3.endpoint) == ("a" * 32, "https://s3.example.com")


def test_flags_values_and_extra_env_that_are_accepted():
    tuning = load("dev", {"backendArgs": ["--some-flag", "v1", "--other=x", "--bool-flag"],
                          "extraEnv": ["A=1", "B=two=2"]}).tuning
    assert tuning.backend_args == ("--some-flag", "v1", "--other=x", "--bool-flag")
    assert tuning.extra_env == (("A", "1"), ("B", "two=2"))


def test_server_max_connections_may_equal_the_pool_plus_spare():
    database = load("dev", {"provisionPostgres": True, "postgresMaxConnections": 10,
                            "postgresServerMaxConnections": 20}).database
    assert (database.pool_size, database.server_max_connections) == (10, 20)


def test_tuning_lower_bounds_are_accepted():
    tuning = load("dev", {"documentRetentionDelaySeconds": 1, "maxConcurrentV8Actions": 1,
                          "maxConcurrentNodeActions": 1, "maxConcurrentQueries": 1,
                          "maxConcurrentMutations": 1}).tuning
    assert (tuning.document_retention_delay_seconds, tuning.max_concurrent_v8_actions,
            tuning.max_concurrent_node_actions, tuning.max_concurrent_queries,
            tuning.max_concurrent_mutations) == (1, 1, 1, 1, 1)


def test_other_namespaces_and_unknown_keys():
    load("dev", {"docker:host": "ssh://deploy@host", "aws:region": "eu-west-1",
                 "convex:foo": "x"})
    assert problems("dev", {"zzzzqq": 1}) == (
        "convex-selfhost:zzzzqq: is not a convex-selfhost setting. Remove it with "
        "`pulumi config rm zzzzqq`.",)
    assert problems("dev", {"logMax": 1}) == (  # only a weak likeness: no hint
        "convex-selfhost:logMax: is not a convex-selfhost setting. Remove it with "
        "`pulumi config rm logMax`.",)
    assert problems("dev", {"BACKENDPORT": 1}) == (
        "convex-selfhost:BACKENDPORT: is not a convex-selfhost setting. Did you mean "
        "backendPort? Remove it with `pulumi config rm BACKENDPORT`.",)


def test_old_release_on_a_public_bind_warns_about_metrics():
    old = load("dev", {"bindAddress": "10.0.0.5",
                       "version": "4d3b0a5de955a258e70e3813bbff486051d88820"})
    assert old.warnings == (
        "this version always serves /metrics on the API port, which bindAddress 10.0.0.5 "
        "publishes; bind to 127.0.0.1 behind a proxy, or upgrade to a release that reads "
        "DISABLE_METRICS_ENDPOINT.",)


def test_version_warnings_word_for_word():
    assert load("dev", {"version": "latest"}).warnings == (
        "version 'latest' moves: every `pulumi up` may pick up a new release, and version "
        "checks are skipped. Pin a release tag outside dev.",)
    assert load("staging", {"version": "f" * 40}).warnings == (
        f"version '{'f' * 40}' is not a release this project knows (newest known: 652b828 of "
        "2026-08-21); version-specific checks were skipped.",)


def test_accepted_edges_of_limits():
    settings = load("dev", {"cpus": "1024", "logMaxSizeMb": 10240, "logMaxFiles": 100,
                            "backendStartTimeoutSeconds": 3600, "rustLog": ""})
    assert (settings.containers.cpus, settings.containers.log_max_size_mb,
            settings.containers.log_max_files,
            settings.containers.backend_start_timeout_seconds) == ("1024", 10240, 100, 3600)
    assert settings.tuning.rust_log == "info"
    assert load("dev", {"cpus": "0.011"}).containers.cpus == "0.011"  # 0.01 reads back 0.0


NOT_PEM = ("convex-selfhost:databaseCaCert: is not PEM: give one or more certificates, each "
           "between -----BEGIN CERTIFICATE----- and -----END CERTIFICATE----- lines, and "
           "nothing else.",)
POSTGRES = {"databaseUrl": "postgres://u:p@db:5432"}


@pytest.mark.parametrize("text", [
    CA_PEM + "extra text",  # a certificate, then something else
    "note\n" + CA_PEM,
    CA_PEM.replace("MIIB", "MIIC", 1),  # the DER length no longer matches
    CA_PEM.replace("\n8qrO", "\nAAAA8qrO", 1),  # one line longer: not the same DER
    "-----BEGIN CERTIFICATE-----\n" + base64.b64encode(b"\x30\x81\x80" + bytes(128)).decode()
    + "\n-----END CERTIFICATE-----",  # shaped like DER, not a certificate
    "-----BEGIN CERTIFICATE-----\nMIIB=AAA\n-----END CERTIFICATE-----",  # bad padding
])
def test_ca_certificate_must_be_certificates_and_nothing_else(text):
    assert problems("dev", {"databaseCaCert": text}, POSTGRES) == NOT_PEM


def test_ca_certificates_in_a_bundle_are_kept_with_one_final_line_break():
    bundle = "\n" + CA_PEM + CA_PEM.replace("\n", "\r\n") + "\n\n"
    database = load("dev", {"databaseCaCert": bundle}, POSTGRES).database
    assert database.ca_cert == CA_PEM + CA_PEM.replace("\n", "\r\n").rstrip("\r\n") + "\n"


def test_lists_may_be_empty_and_must_hold_strings():
    assert load("dev", {"backendArgs": "", "extraEnv": "  "}).tuning.backend_args == ()
    for value in ({"A": "1"}, [1], "[\"A=1\", 2]"):
        assert problems("dev", {"extraEnv": value}) == (
            "convex-selfhost:extraEnv: must be a list of strings.",)


def test_a_flag_with_a_value_holding_equals_signs_is_still_that_flag():
    assert problems("dev", {"backendArgs": ["--db=a=b"]}) == (
        "convex-selfhost:backendArgs: --db is set by the program or a typed key; use that "
        "key instead.",)
    assert problems("dev", {"backendArgs": ["value", "--flag"]}) == (
        "convex-selfhost:backendArgs: entry 1 is not a flag (--name or --name=value) or a "
        "flag's value (printable, no spaces).",)


def test_cpus_of_exactly_a_hundredth_are_refused_for_the_read_back():
    assert problems("dev", {"cpus": "0.01"}) == (
        "convex-selfhost:cpus: '0.01' is reported back by the docker provider as another "
        "number, which would replace the containers on every run; use one decimal more or "
        "less (e.g. 0.1 or 0.15).",)


def test_origins_keep_their_case_and_lose_one_trailing_slash():
    (d,) = load("dev", {"cloudOrigin": "https://API.EXAMPLE.BOX/",
                        "siteOrigin": "https://SITE.EXAMPLE.BOX/"}).deployments
    assert (d.cloud_origin, d.site_origin) == ("https://API.EXAMPLE.BOX",
                                               "https://SITE.EXAMPLE.BOX")
    s3 = load("dev", {"s3Region": "eu-west-1", "s3BucketPrefix": "acme",
                      "s3Endpoint": "https://S3.EXAMPLE.BOX/"}).s3
    assert s3.endpoint == "https://S3.EXAMPLE.BOX"


def test_bad_origins_are_quoted_without_the_trailing_slash():
    assert problems("dev", {"cloudOrigin": "ftp://api.example.com/"}) == (
        "convex-selfhost:cloudOrigin: 'ftp://api.example.com' is not an http(s) URL; write it "
        "like https://convex.example.com.",)


def test_a_site_origin_path_other_than_the_cloud_origins_http_is_refused():
    assert problems("dev", {"cloudOrigin": "https://api.example.com",
                            "siteOrigin": "https://site.example.com/http"}) == (
        "convex-selfhost:siteOrigin: 'https://site.example.com/http' has a path; a site origin "
        "is an origin of its own, or exactly the cloudOrigin followed by /http (one domain for "
        "both).",)


def test_backup_keep_without_a_schedule_is_reported_even_when_out_of_range():
    assert problems("dev", {"backupKeep": 0}) == (
        "convex-selfhost:backupKeep: 0 is out of range; use a number from 1 to 1000.",
        "convex-selfhost:backupKeep: is set but backupSchedule is empty; set a schedule "
        "(e.g. \"0 3 * * *\" for 03:00 UTC daily) or remove it.")
    assert problems("dev", {"backupKeep": "seven"}) == (
        "convex-selfhost:backupKeep: 'seven' is not a whole number; set it with "
        "`pulumi config set backupKeep <number>`.",)


def test_a_pool_size_is_for_postgres_only():
    assert problems("dev", {"postgresMaxConnections": 5},
                    {"databaseUrl": "mysql://u:p@db:3306"}) == (
        "convex-selfhost:postgresMaxConnections: sizes a Postgres pool; the database is MySQL.",)
    assert load("dev", {"postgresMaxConnections": 5}, POSTGRES).database.pool_size == 5


TLS = {"tlsProxy": True, "apiDomain": "api.example.com", "dashboardDomain": "dash.example.com",
       "siteDomain": "site.example.com"}


def test_a_bad_tls_bind_address_or_port_is_the_only_problem_reported():
    assert problems("dev", {**TLS, "tlsBindAddress": "nowhere", "httpPort": 3210}) == (
        "convex-selfhost:tlsBindAddress: 'nowhere' is not an IP address; use 127.0.0.1 (this "
        "host only), 0.0.0.0 (every interface) or one interface's address (no zone id).",)
    assert problems("dev", {**TLS, "httpPort": "eighty", "backendPort": 80}) == (
        "convex-selfhost:httpPort: 'eighty' is not a whole number; set it with `pulumi config "
        "set httpPort <number>`.",)
    assert problems("dev", {**TLS, "httpsPort": 0, "backendPort": 443}) == (
        "convex-selfhost:httpsPort: 0 is out of range; use a number from 1 to 65535.",)
    assert problems("dev", {**TLS, "httpPort": 3210}) == (
        "convex-selfhost:httpPort: host port 3210 of httpPort clashes with backendPort "
        "(convex-dev); give each published port its own number.",)


# --- no value set as a secret ever appears in a message -----------------------------------

OLD_RELEASE = "08139ef318b1898dad7731910f49ba631631c902"  # predates several settings
PUBLIC_IP = "198.51.100.77"
# One hostile value per key, each distinctive (every string carries "hunter2", every number
# is one no message holds otherwise) and each shaped to reach the deepest message of its key.
HOSTILE = {
    "instanceName": "hunter2-inst", "instanceSecret": "hunter2pw", "version": OLD_RELEASE,
    "deployments": ["hunter2-dep", "hunter2-dep"], "backendPort": 45678, "sitePort": 45679,
    "dashboardPort": 98765, "bindAddress": PUBLIC_IP, "publicHost": "hunter2.example.com",
    "cloudOrigin": "https://hunter2:pw@x", "siteOrigin": "ftp://hunter2", "dashboard": "hunter2",
    "protectData": "hunter2", "dataVolumeName": "hunter2 vol", "backendStartTimeoutSeconds": 987654,
    "restartPolicy": "hunter2", "memoryLimitMb": 987655, "cpus": "hunter2", "logMaxSizeMb": 987656,
    "logMaxFiles": 987657, "rustLog": "hunter2 !", "rustBacktrace": "hunter2", "logFormat": "hunter2",
    "disableBeacon": "hunter2", "redactLogsToClient": "hunter2", "disableMetricsEndpoint": "hunter2",
    "documentRetentionDelaySeconds": 987658987658, "maxConcurrentQueries": 987659,
    "maxConcurrentMutations": 987660, "maxConcurrentV8Actions": 987661,
    "maxConcurrentNodeActions": 987662, "v8ActionTimeoutSeconds": 987663,
    "nodeActionTimeoutSeconds": 987664, "actionsUserTimeoutSeconds": 987665,
    "httpServerTimeoutSeconds": 987666, "releaseVersionDev": "hunter2 !",
    "dashboardLoadMonacoInternally": "hunter2",
    "extraEnv": ["HUNTER2_A=1", "HUNTER2_A=2", "PATH=/hunter2", "INSTANCE_SECRET=hunter2",
                 "HUNTER2_B=x\nhunter2", "MODULE_CACHE_MAX_SIZE_BYTES=1"],
    "backendArgs": ["--instance-secret=hunter2", "hunter2 x"],
    "databaseUrl": "postgres://u:hunter2@db:5432/hunter2db?hunter2=1&sslmode=disable",
    "requireDatabaseSsl": "hunter2", "databaseCaCert": "hunter2", "postgresMaxConnections": 987667,
    "provisionPostgres": "hunter2", "postgresImage": "postgres:hunter2",
    "postgresServerMaxConnections": 987668, "backupSchedule": "hunter2pw * * * *",
    "backupKeep": 987669, "backupImage": "python:hunter2", "s3Region": "hunter2 region",
    "s3BucketPrefix": "Hunter2_prefix", "s3ExportsBucket": "Hunter2_b", "s3SnapshotImportsBucket":
    "Hunter2_c", "s3ModulesBucket": "Hunter2_d", "s3FilesBucket": "Hunter2_e",
    "s3SearchBucket": "Hunter2_f", "s3Endpoint": "hunter2://x", "s3ForcePathStyle": "hunter2",
    "s3DisableSse": "hunter2", "s3DisableChecksums": "hunter2", "awsAccessKeyId": "hunter2-key",
    "awsSecretAccessKey": "hunter2secret", "awsSessionToken": "hunter2token",
    "tlsProxy": "hunter2", "apiDomain": "hunter2 api", "siteDomain": "hunter2 site",
    "dashboardDomain": "hunter2 dash", "tlsEmail": "hunter2", "tlsBindAddress": "hunter2",
    "httpPort": 987670, "httpsPort": 987671, "caddyImage": "caddy:hunter2",
    "target": "hunter2", "hostAddress": "hunter2 host", "sshPort": 987672,
    "sshUser": "Hunter2!", "sshPrivateKey": "hunter2key", "sshHostKey": "hunter2 key",
    "backendBinary": "/hunter2/none", "backendBinaryUrl": "http://hunter2",
    "backendBinarySha256": "hunter2",
    "kubernetesNamespace": "Hunter2_ns", "kubernetesStorageClass": "Hunter2_sc",
    "kubernetesStorageSize": "hunter2", "kubernetesIngressClass": "Hunter2 class",
    "kubernetesIngressAnnotations": ["hunter2", "a=hunter2\nx"],
    "kubernetesIngressTlsSecret": "Hunter2_s", "kubernetesCertManagerIssuer": "Hunter2_i",
    "kubernetesDashboardHost": "hunter2 host",
    "backupS3Bucket": "Hunter2_bucket", "backupS3Endpoint": "ftp://hunter2",
    "backupS3Region": "hunter2 region", "backupS3Prefix": "../hunter2",
    "backupS3ForcePathStyle": "hunter2", "backupS3AccessKeyId": "hunter2-id",
    "backupS3SecretAccessKey": "hunter2-secret", "backupS3LockDays": 987673,
    "backupEncryptionKey": "hunter2key", "backupLocal": "hunter2",
}
KUBERNETES_HOSTILE = {"target": "kubernetes", **{name: value for name, value in HOSTILE.items()
                                                 if name.startswith("kubernetes")}}
# Values that are valid on their own but meet another setting in a message (a clash, a
# public bind, a pool, a release that does not read a setting, an unread knob).
HOSTILE_COMBINATIONS = [
    ("staging", {"backupSchedule": "0 3 * * *", **{name: value for name, value in HOSTILE.items()
                                                    if name.startswith(("backupS3",
                                                                        "backupEnc"))}}),
    ("staging", KUBERNETES_HOSTILE),
    ("prod", {**KUBERNETES_HOSTILE, "kubernetesIngressClass": "nginx",
              "kubernetesIngressTlsSecret": "hunter2-s", "kubernetesCertManagerIssuer": "x",
              "cloudOrigin": "https://hunter2.example.com",
              "siteOrigin": "https://hunter2.example.com"}),
    ("staging", {"backendPort": 45678, "sitePort": 45678}),
    ("staging", {"instanceName": "hunter2-inst", "dashboardPort": 3220}),
    ("preview", {"deployments": ["hunter2-a", "hunter2-b"], "backendPort": 6900}),
    ("staging", {"bindAddress": PUBLIC_IP, "disableMetricsEndpoint": False,
                 "publicHost": "hunter2.example.com"}),
    ("staging", {"bindAddress": PUBLIC_IP, "version": "4d3b0a5de955a258e70e3813bbff486051d88820",
                 "publicHost": "hunter2.example.com"}),
    ("staging", {"bindAddress": "::ffff:0.0.0.0"}),
    ("prod", {"bindAddress": PUBLIC_IP}),
    ("prod", {"httpsPort": 3230}),
    ("staging", {"provisionPostgres": True, "postgresServerMaxConnections": 47,
                 "postgresMaxConnections": 61}),
    ("staging", {"version": OLD_RELEASE, "s3Region": "us-east-1", "s3BucketPrefix": "hunter2",
                 "s3DisableSse": True, "awsAccessKeyId": "AKIAHUNTER2",
                 "awsSecretAccessKey": "hunter2secret", "v8ActionTimeoutSeconds": 61}),
    ("staging", {"extraEnv": ["MODULE_CACHE_MAX_SIZE_BYTES=1", "HUNTER2_SECRET_KEY=sk_hunter2"],
                 "backendArgs": ["--instance-name=hunter2"]}),
    ("staging", {"version": OLD_RELEASE,
                 "databaseUrl": "postgres://u:hunter2@db:5432?sslmode=require"}),
    ("staging", {"databaseUrl": "mysql://u:hunter2@db:3306?require_ssl=false&hunter2=x"}),
    ("dev", {"version": "hunter2-tag"}),
    ("staging", {"provisionPostgres": True, "postgresImage": "postgres:hunter2"}),
    ("staging", {"target": "host", "hostAddress": "-hunter2", "sshUser": "hunter2",
                 "sshPrivateKey": "hunter2key", "backendBinary": "/hunter2/missing",
                 "backendBinarySha256": "ab" * 32, "bindAddress": "::1"}),
    ("staging", {"hostAddress": "hunter2.example.com", "backendBinaryUrl": "https://hunter2"}),
]


def messages_of(stack, secrets):
    try:
        return list(load(stack, secrets=secrets).warnings)
    except ConfigError as error:
        return list(error.problems) + [str(error)]


def assert_nothing_leaks(secrets, messages):
    assert messages, "the hostile values met no check at all"
    for message in messages:
        assert "hunter2" not in message.lower(), message
        for value in secrets.values():
            if isinstance(value, int) and not isinstance(value, bool):
                assert not re.search(rf"\b{value}\b", message), message
        assert PUBLIC_IP not in message and OLD_RELEASE[:12] not in message, message


def test_every_key_is_covered_by_a_hostile_value():
    assert set(HOSTILE) == {key.name for key in KEYS}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod", "preview"])
def test_no_secret_value_appears_in_any_message_with_every_key_secret(stack):
    assert_nothing_leaks(HOSTILE, messages_of(stack, HOSTILE))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_no_secret_value_appears_in_any_message_key_by_key(name):
    for stack in ("staging", "prod"):
        messages = messages_of(stack, {name: HOSTILE[name]})
        if messages:
            assert_nothing_leaks({name: HOSTILE[name]}, messages)


@pytest.mark.parametrize("stack,secrets", HOSTILE_COMBINATIONS)
def test_no_secret_value_appears_in_messages_about_combinations(stack, secrets):
    assert_nothing_leaks(secrets, messages_of(stack, secrets))


# --- every spelling of "every interface" meets the rules 0.0.0.0 meets ------------------

EVERY_INTERFACE = ["0.0.0.0", "::ffff:0.0.0.0", "::", "::0", "0:0:0:0:0:0:0:0",
                   "0000:0000:0000:0000:0000:0000:0000:0000"]


@pytest.mark.parametrize("bind", EVERY_INTERFACE)
def test_every_interface_needs_a_public_host(bind):
    canonical = "0.0.0.0" if "." in bind else "::"
    assert problems("dev", {"bindAddress": bind}) == (
        f"convex-selfhost:publicHost: is required when bindAddress is {canonical}: the URLs in "
        "the outputs and the dashboard must name this host as other machines reach it; set "
        "publicHost (a DNS name or IP) or cloudOrigin and siteOrigin.",)
    settings = load("dev", {"bindAddress": bind, "publicHost": "convex.example.com"})
    assert settings.bind_address == canonical
    assert settings.deployments[0].cloud_origin == "http://convex.example.com:3210"


@pytest.mark.parametrize("bind", EVERY_INTERFACE)
def test_every_interface_keeps_metrics_private_and_stays_off_the_tls_proxy(bind):
    canonical = "0.0.0.0" if "." in bind else "::"
    assert problems("dev", {"bindAddress": bind, "publicHost": "convex.example.com",
                            "disableMetricsEndpoint": False}) == (
        f"convex-selfhost:disableMetricsEndpoint: is false while bindAddress {canonical} "
        "publishes the backend's ports: /metrics would be public. Keep it true, or bind to "
        "127.0.0.1.",)
    assert problems("prod", {"bindAddress": bind}) == (
        f"convex-selfhost:bindAddress: {canonical} publishes the raw backend ports beside the "
        "TLS proxy; keep them on 127.0.0.1 when tlsProxy is true.",)


def test_an_ipv4_mapped_every_interface_bind_clashes_with_any_other_bind_of_the_port():
    assert problems("prod", {"tlsBindAddress": "::ffff:0.0.0.0", "httpsPort": 3230}) == (
        "convex-selfhost:httpsPort: host port 3230 of httpsPort clashes with backendPort "
        "(convex-prod); give each published port its own number.",)


def test_ipv4_mapped_loopback_is_loopback():
    assert load("dev", {"bindAddress": "::ffff:127.0.0.1",
                        "disableMetricsEndpoint": False}).bind_address == "127.0.0.1"


@pytest.mark.parametrize("bind", ["0", "000.0.0.0", "0.0.0.00", "0x0.0.0.0", "::ffff:0.0.0.0%1"])
def test_shorthands_of_every_interface_are_not_ip_addresses(bind):
    assert problems("dev", {"bindAddress": bind}) == (
        f"convex-selfhost:bindAddress: {quote(bind)} is not an IP address; use 127.0.0.1 (this "
        "host only), 0.0.0.0 (every interface) or one interface's address (no zone id).",)


# --- credentials in extraEnv come from secret config -----------------------------------

def test_a_secret_looking_extra_env_variable_in_plain_text_is_refused():
    assert problems("dev", {"extraEnv": ["RUST_MIN_STACK=1", "STRIPE_SECRET_KEY=sk_live_x"]}) == (
        "convex-selfhost:extraEnv: STRIPE_SECRET_KEY looks like a credential, but extraEnv is "
        "stored in plain text in the stack file; remove the entry and set it again as a secret "
        "with `pulumi config set --secret --path 'extraEnv[N]' 'STRIPE_SECRET_KEY=...'` (N: its "
        "position, from 0), which encrypts it.",)
    for name in ("API_KEY", "GITHUB_TOKEN", "SMTP_PASSWORD", "SENTRY_DSN", "BASIC_AUTH_PASS",
                 "GOOGLE_CREDENTIALS", "SSH_PRIVATE"):
        assert len(problems("dev", {"extraEnv": [f"{name}=v"]})) == 1, name


def test_a_secret_looking_extra_env_variable_from_secret_config_is_accepted():
    settings = load("dev", secrets={"extraEnv": '["STRIPE_SECRET_KEY=sk_live_x", "A=1"]'})
    assert settings.tuning.extra_env == (("STRIPE_SECRET_KEY", "sk_live_x"), ("A", "1"))
    # An empty value holds no credential; a name without one is no credential either.
    load("dev", {"extraEnv": ["SENTRY_DSN=", "MONKEY_PATCH=1", "AUTHOR=x"]})


# --- databaseUrl: the connection parameters the backend passes on ----------------------

def database_problems(url, overrides=None):
    return problems("dev", overrides, {"databaseUrl": url})


@pytest.mark.parametrize("url,overrides", [
    ("postgres://u:p@db:5432?sslmode=require&connect_timeout=10&application_name=convex"
     "&options=-c%20statement_timeout%3D0&target_session_attrs=read-write&keepalives=1"
     "&keepalives_idle=30&hostaddr=10.0.0.5&channel_binding=require", {}),
    # upstream's advice for a self-signed Postgres (get-convex/convex-backend#354)
    ("postgres://u:p@db:5432/?sslmode=disable", {"requireDatabaseSsl": False}),
    ("postgresql://u:p@db?sslmode=prefer", {"requireDatabaseSsl": False}),
    ("postgres://u:p@db:5432?", {}),
    ("mysql://u:p@db:3306?require_ssl=true&verify_identity=false&compression=fast"
     "&tcp_keepalive=10000&max_allowed_packet=1048576", {}),
    ("mysql://u:p@db:3306?require_ssl=false", {"requireDatabaseSsl": False}),
])
def test_database_url_parameters_upstream_passes_on_are_accepted(url, overrides):
    settings = load("dev", overrides, {"databaseUrl": url})
    assert settings.database.url.reveal() == url


@pytest.mark.parametrize("url,overrides,expected", [
    ("postgres://u:p@db:5432?sslmode=disable", {},
     "the parameter sslmode=disable contradicts requireDatabaseSsl (true): the backend adds "
     "sslmode=require, which wins. Set requireDatabaseSsl to false to allow a connection "
     "without TLS, or remove the parameter."),
    ("postgres://u:p@db:5432?sslmode=prefer", {},
     "the parameter sslmode=prefer contradicts requireDatabaseSsl (true): the backend adds "
     "sslmode=require, which wins. Set requireDatabaseSsl to false to allow a connection "
     "without TLS, or remove the parameter."),
    ("postgres://u:p@db:5432?sslmode=verify-full", {},
     "the parameter sslmode must be one of disable, prefer, require (with TLS the backend "
     "always verifies the server's certificate, against the system's roots and "
     "databaseCaCert)."),
    ("postgres://u:p@db:5432?sslmode=disable", {"requireDatabaseSsl": False,
                                                "databaseCaCert": CA_PEM},
     "the parameter sslmode=disable turns TLS off, so databaseCaCert would never be used; "
     "remove one of them."),
    ("postgres://u:p@db:5432?dbname=convex", {},
     "the parameter dbname names a database: the backend connects to the database named after "
     "the instance (dashes become underscores), which must exist; remove it."),
    ("postgres://u:p@db:5432?search_path=app", {},
     "the parameter search_path is dropped by the backend, which uses the database's default "
     "schema; remove it."),
    ("postgres://u:p@db:5432?target_session_attrs=any", {},
     "the parameter target_session_attrs is always read-write: the backend adds "
     "target_session_attrs=read-write, which wins; remove it."),
    ("postgres://u:p@db:5432?sslrootcert=/ca.pem", {},
     "the parameter sslrootcert is not read by the backend's driver; remove it and give the CA "
     "certificate in databaseCaCert."),
    ("postgres://u:p@db:5432?password=x", {},
     "the parameter password belongs in the URL itself (user:password@host:port), not in its "
     "query; move it there."),
    ("postgres://u:p@db:5432?sslcert=/c.pem", {},
     "the parameter sslcert is not a connection parameter the backend's Postgres driver "
     "(tokio-postgres) takes; remove it. Accepted: application_name, channel_binding, "
     "connect_timeout, hostaddr, keepalives, keepalives_idle, keepalives_interval, "
     "keepalives_retries, load_balance_hosts, options, sslmode, target_session_attrs, "
     "tcp_user_timeout."),
    ("postgres://u:p@db:5432?connect_timeout=soon", {},
     "the parameter connect_timeout must be a whole number."),
    ("postgres://u:p@db:5432?hostaddr=db", {}, "the parameter hostaddr must be an IP address."),
    ("postgres://u:p@db:5432?sslmode=require&sslmode=require", {},
     "gives the parameter sslmode twice; keep one."),
    ("mysql://u:p@db:3306?verify_ca=false", {},
     "the parameter verify_ca=false contradicts requireDatabaseSsl (true): the backend adds "
     "require_ssl=true&verify_ca=true, which win. Set requireDatabaseSsl to false to relax "
     "TLS, or remove the parameter."),
    ("mysql://u:p@db:3306?require_ssl=false", {"requireDatabaseSsl": False,
                                               "databaseCaCert": CA_PEM},
     "the parameter require_ssl=false turns TLS off, so databaseCaCert would never be used; "
     "remove one of them."),
    ("mysql://u:p@db:3306?built_in_roots=false", {},
     "the parameter built_in_roots=false leaves no certificate to verify the server with; set "
     "databaseCaCert, or remove the parameter."),
    ("mysql://u:p@db:3306?pool_max=3", {},
     "the parameter pool_max is overridden by the backend's own connection pool settings; "
     "remove it."),
    ("mysql://u:p@db:3306?socket=/run/mysqld.sock", {},
     "the parameter socket connects through a Unix socket, which the backend's container does "
     "not have; remove it."),
    ("mysql://u:p@db:3306?require_ssl=yes", {},
     "the parameter require_ssl must be one of true, false."),
])
def test_database_url_parameters_that_fail_or_contradict_are_refused(url, overrides, expected):
    assert database_problems(url, overrides) == (f"convex-selfhost:databaseUrl: {expected}",)


def test_a_parameter_name_is_named_only_when_the_drivers_know_it():
    found = database_problems("postgres://u:Hunter2Pw@db:5432?Hunter2Pw=1&hunter2=")
    assert found == ("convex-selfhost:databaseUrl: a query parameter (its name is not shown: "
                     "the URL is secret) is not a connection parameter the backend's Postgres "
                     "driver (tokio-postgres) takes; remove it. Accepted: application_name, "
                     "channel_binding, connect_timeout, hostaddr, keepalives, keepalives_idle, "
                     "keepalives_interval, keepalives_retries, load_balance_hosts, options, "
                     "sslmode, target_session_attrs, tcp_user_timeout.",) * 2
    found = database_problems("postgres://u:Hunter2Pw@db:5432?options=Hunter2Pw&"
                              "application_name=Hunter2Pw&sslmode=Hunter2Pw")
    assert len(found) == 1 and not any("unter2" in p for p in found)

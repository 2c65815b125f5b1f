"""The upstream self-hosted Convex releases this project knows, and what each one reads.

Upstream tags its backend and dashboard images with the commit SHA of each release
(`ghcr.io/get-convex/convex-backend:<sha>`, same tag for the dashboard); the `release`
branch of get-convex/convex-backend names the newest. The database version is the
`DATABASE_VERSION` of `crates/migrations_model/src/lib.rs` at that commit: an upgrade
migrates forward to it, and no release can open a database of a higher version.

To add a release: append a `Release` (oldest first), and for every setting it starts
or stops reading, give it in `VERSIONED_SETTINGS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Release:
    tag: str  # full commit SHA, the image tag of backend and dashboard
    date: str  # ISO date of the release
    database_version: int
    note: str = ""

    @property
    def short(self) -> str:
        return self.tag[:7]


RELEASES: tuple[Release, ...] = (
    # From upstream's self-hosted/CHANGELOG.md, then pushes to its `release` branch
    # (each builds both images) where a setting or the database version changed.
    Release("6efab6f2b6c182b90255774d747328cfc7b80dd9", "2025-07-01", 119),
    Release("33cef775a8a6228cbacee4a09ac2c4073d62ed13", "2025-08-05", 121),
    Release("08139ef318b1898dad7731910f49ba631631c902", "2025-08-27", 121),
    Release("00bd92723422f3bff968230c94ccdeb8c1719832", "2025-09-03", 122),
    Release("4d3b0a5de955a258e70e3813bbff486051d88820", "2025-09-12", 122,
            "last CHANGELOG entry; convex npm <= 1.29.1 can deploy to it"),
    Release("ef9b6644c14012425503c9d66b50effdfc16a950", "2025-11-04", 122,
            "adds /api/deploy2/evaluate_push, which convex npm >= 1.29.2 needs"),
    Release("93422a07a9f03240be35346106de8315cd2a0a13", "2025-11-12", 123),
    Release("717fe22efc41771e9bea687c51195ad4ab460fd3", "2025-11-21", 124),
    Release("cd028ae9b6bf2f3b759ee64dece6c0df64b69591", "2025-12-23", 124,
            "HTTP_SERVER_TIMEOUT_SECONDS takes effect (was a fixed 125 s; default 300 s)"),
    Release("c6be6fe6ee83fbf9a9357efa52b35902bd27b2af", "2026-01-22", 124,
            "accepts pushes from convex npm >= 1.31.7"),
    Release("75a95a7850ebdf00d5d2f33d2942e79d969cfa02", "2026-03-05", 124,
            "DISABLE_METRICS_ENDPOINT"),
    Release("f6966f25306222be686f27de843a001bd7800c62", "2026-04-02", 124,
            "MYSQL_CA_FILE (with its TLS options fix)"),
    Release("0b8731e45077136ca23521ec11bface108aade99", "2026-04-10", 124,
            "S3 with the host's credentials (no AWS keys)"),
    Release("09e51e6a8ffdcebd9e78b117bde4df83858c73de", "2026-05-12", 125),
    Release("6cb5179b570b96f47ce7cb1821a2df4bc1b04595", "2026-06-27", 126),
    Release("d1ff6888b5df2ea6100c947b821a4e822e58e139", "2026-07-02", 126,
            "last to read ACTIONS_USER_TIMEOUT_SECS"),
    Release("0eb789ff5ef76101ac5478a003aba9a8a959ce04", "2026-07-02", 126,
            "V8_ACTION_USER_TIMEOUT_SECS and NODE_ACTION_USER_TIMEOUT_SECS"),
    Release("581e3e3a0f7d779ba49e3347260a65c561c0d531", "2026-07-14", 127),
    Release("84bd27d0ed5e6e76e347cda552bf0be832caaf63", "2026-07-14", 128),
    Release("652b828b5129e6cdbcaa3c20efa8d116d09ff3bf", "2026-08-21", 128,
            "newest release; deploy with convex npm 1.45.0"),
)
LATEST = RELEASES[-1]
DEFAULT_VERSION = LATEST.tag
# The convex npm package version released with LATEST (npm-packages/convex/package.json).
CONVEX_NPM_VERSION = "1.45.0"
# Never to be deployed: this release's database version (129) was reverted a day later;
# a database it touched stays ahead of every later release's.
WITHDRAWN = {"c4ae6015a5387a92710953206f4726f2a2d60de3": "database version 129, reverted"}


@dataclass(frozen=True)
class VersionedSetting:
    """A config key whose environment variable only some releases read."""

    key: str
    env: str
    since: Optional[str] = None  # first release tag that reads it; None: every known one
    until: Optional[str] = None  # last release tag that reads it; None: still read
    database_kind: Optional[str] = None  # applies only with this database kind


VERSIONED_SETTINGS: tuple[VersionedSetting, ...] = (
    VersionedSetting("disableMetricsEndpoint", "DISABLE_METRICS_ENDPOINT",
                     since="75a95a7850ebdf00d5d2f33d2942e79d969cfa02"),
    VersionedSetting("v8ActionTimeoutSeconds", "V8_ACTION_USER_TIMEOUT_SECS",
                     since="0eb789ff5ef76101ac5478a003aba9a8a959ce04"),
    VersionedSetting("nodeActionTimeoutSeconds", "NODE_ACTION_USER_TIMEOUT_SECS",
                     since="0eb789ff5ef76101ac5478a003aba9a8a959ce04"),
    VersionedSetting("actionsUserTimeoutSeconds", "ACTIONS_USER_TIMEOUT_SECS",
                     until="d1ff6888b5df2ea6100c947b821a4e822e58e139"),
    VersionedSetting("httpServerTimeoutSeconds", "HTTP_SERVER_TIMEOUT_SECONDS",
                     since="cd028ae9b6bf2f3b759ee64dece6c0df64b69591"),
    VersionedSetting("databaseCaCert", "MYSQL_CA_FILE",
                     since="f6966f25306222be686f27de843a001bd7800c62", database_kind="mysql"),
    # crates/aws_utils/src/lib.rs; each is a boolean ("true" switches it on), sent only
    # when the key is true.
    VersionedSetting("s3ForcePathStyle", "AWS_S3_FORCE_PATH_STYLE",
                     since="33cef775a8a6228cbacee4a09ac2c4073d62ed13"),
    VersionedSetting("s3DisableSse", "AWS_S3_DISABLE_SSE",
                     since="00bd92723422f3bff968230c94ccdeb8c1719832"),
    VersionedSetting("s3DisableChecksums", "AWS_S3_DISABLE_CHECKSUMS",
                     since="00bd92723422f3bff968230c94ccdeb8c1719832"),
)
# Before this release run_backend.sh enabled S3 only when both AWS keys were set, and
# otherwise fell back to local disk with a log line.
S3_WITHOUT_KEYS_SINCE = "0b8731e45077136ca23521ec11bface108aade99"
# Releases before this one refuse a database URL with a query string ("cluster url
# already contains query string", crates/clusters/src/lib.rs; the check went in f0ca1c0).
URL_PARAMETERS_SINCE = "4d3b0a5de955a258e70e3813bbff486051d88820"

# Knobs (crates/common/src/knobs.rs) that some known releases do not read, for
# `extraEnv`: (first release that reads them, None: the oldest known already does;
# last release that reads them, None: still read) -> names. Derived from every known
# release's sources (an env_config or env::var read anywhere under crates/); knobs a
# typed key owns are in VERSIONED_SETTINGS instead.
_KNOBS_BY_RANGE: dict[tuple[Optional[str], Optional[str]], tuple[str, ...]] = {
    (None, "6efab6f"): (
        "ENABLE_LOG_STREAMING",),
    (None, "4d3b0a5"): (
        "RETENTION_READ_CHUNK", "RETENTION_READ_PARALLEL"),
    (None, "ef9b664"): (
        "DATABASE_WORKERS_MAX_CHECKPOINT_AGE",),
    (None, "717fe22"): (
        "CLAIM_INSTANCE_TIMEOUT_SECS",),
    (None, "c6be6fe"): (
        "APPLICATION_MAX_CONCURRENT_HTTP_ACTIONS",),
    (None, "75a95a7"): (
        "HEAP_WORKER_PRINT_REPORT",),
    (None, "0b8731e"): (
        "RETENTION_DELETES_ENABLED", "RETENTION_DOCUMENT_DELETES_ENABLED",
        "RETENTION_FAIL_ALL_MULTIPLIER", "RETENTION_FAIL_ENABLED",
        "RETENTION_FAIL_START_MULTIPLIER"),
    (None, "84bd27d"): (
        "FUNRUN_INITIAL_PERMIT_TIMEOUT_MS", "MODULE_CACHE_MAX_CONCURRENCY",
        "MODULE_CACHE_MAX_SIZE_BYTES"),
    ("33cef77", "09e51e6"): (
        "SUBSCRIPTION_PROCESS_LOG_ENTRY_TRACING_THRESHOLD",),
    ("33cef77", None): (
        "INDEX_BACKFILL_WORKERS", "SEARCH_INDEXES_UNAVAILABLE_RETRY_DELAY",
        "SUBSCRIPTION_ADVANCE_LOG_TRACING_THRESHOLD",
        "SUBSCRIPTION_INVALIDATION_DELAY_MULTIPLIER",
        "SUBSCRIPTION_INVALIDATION_DELAY_THRESHOLD"),
    ("08139ef", None): (
        "DOCUMENT_RETENTION_RATE_LIMIT", "INDEX_BACKFILL_CONCURRENCY",
        "INDEX_WORKERS_MAX_BACKOFF", "INSTANCE_LOADER_INSTANCES_PER_SECOND",
        "INSTANCE_LOADER_USE_RATE_LIMITER"),
    ("ef9b664", "cd028ae"): (
        "UPSTREAM_SATURATION_TTL_SECS",),
    ("ef9b664", None): (
        "AWS_LAMBDA_STATIC_DEBOUNCE_DELAY_SECONDS", "HTTP_CACHE_SIZE",
        "INDEX_BACKFILL_PROGRESS_INTERVAL_SECONDS", "INDEX_BACKFILL_READ_SIZE",
        "MAX_SCHEDULED_JOB_ARGUMENT_SIZE_BYTES", "MAX_SEARCHLIGHT_REQUEST_SIZE",
        "MAX_SEARCHLIGHT_RESPONSE_SIZE", "TABLE_ITERATOR_MAX_RETRIES",
        "USAGE_TRACKING_WORKER_SLOW_TRACE_THRESHOLD_SECONDS", "USHER_MAX_JSON_ARGS_SIZE"),
    ("93422a0", None): (
        "SEARCH_WORKERS_MAX_CHECKPOINT_AGE", "TABLE_SUMMARY_MAX_CHECKPOINT_AGE"),
    ("717fe22", None): (
        "DELETE_TABLET_CHUNK_SIZE", "MYSQL_FALLBACK_PAGE_SIZE",
        "RETENTION_CHECKPOINT_PERIOD_SECS"),
    ("cd028ae", None): (
        "ENV_VAR_LIMIT", "NUM_SUBSCRIPTION_MANAGERS", "SNAPSHOT_LIST_TIME_LIMIT_SECONDS"),
    ("c6be6fe", None): (
        "AWS_DYNAMIC_LAMBDA_DISK_SIZE_MB", "AWS_DYNAMIC_LAMBDA_MEMORY_LIMIT_MB",
        "AWS_STATIC_LAMBDA_DISK_SIZE_MB", "AWS_STATIC_LAMBDA_MEMORY_LIMIT_MB"),
    ("75a95a7", "6cb5179"): (
        "FUNRUN_INDEX_READS_TO_CONDUCTOR_PERCENT",),
    ("75a95a7", None): (
        "AWS_LAMBDA_CLEANUP_INITIAL_JITTER_MAX_SECS", "AWS_LAMBDA_SELF_CLEANUP_ENABLED",
        "MAX_BYTES_WRITTEN_PER_SECOND", "MYSQL_DOCUMENT_ENCODING", "MYSQL_MAX_QUERY_RETRIES",
        "WRITE_THROUGHPUT_WINDOW"),
    ("f6966f2", "84bd27d"): (
        "ISOLATE_MAX_HEAP_FOR_ANALYZE",),
    ("f6966f2", None): (
        "PROPOSED_MAX_BYTES_WRITTEN_PER_SECOND", "SCHEDULER_OCC_INITIAL_BACKOFF_MS",
        "SCHEDULER_OCC_MAX_BACKOFF_MS", "SUBFUNCTIONS_IN_SAME_ISOLATE",
        "SYNC_WORKER_QUERY_RETRY_INITIAL_BACKOFF_MS",
        "SYNC_WORKER_QUERY_RETRY_MAX_BACKOFF_SECS",
        "SYNC_WORKER_UPDATE_QUERIES_RETRY_INITIAL_BACKOFF_MS",
        "SYNC_WORKER_UPDATE_QUERIES_RETRY_MAX_BACKOFF_SECS",
        "USHER_PARTITION_CACHE_MAX_ENTRIES", "USHER_SERVICE_CACHE_MAX_ENTRIES"),
    ("0b8731e", None): (
        "EXPORT_PROGRESS_UPDATE_INTERVAL_SECS", "TICKETMASTER_CLUSTER_NAME"),
    ("09e51e6", None): (
        "ANALYZE_CONCURRENCY", "AUDIT_LOG_MAX_HEAP_SIZE_BYTES", "AUDIT_LOG_MAX_LINES",
        "AUDIT_LOG_MAX_LINE_SIZE_BYTES", "AUDIT_LOG_MAX_TOTAL_SIZE_BYTES",
        "AWS_S3_MIN_IDENTITY_VALIDITY_SECS", "ENV_VAR_TOTAL_SIZE_LIMIT",
        "FUNRUN_MAX_CPU_PRESSURE", "FUNRUN_TARGET_CPU_USAGE", "INDEX_CACHE_SIZE",
        "SHOW_PII_IN_ERRORS"),
    ("6cb5179", "84bd27d"): (
        "ALLOW_FUNCTION_CONTEXT_REUSE",),
    ("6cb5179", None): (
        "ADMIN_IDENTITY_EXPIRATION_DELAY_SECS", "ADMIN_IDENTITY_REVALIDATION_DELAY_SECS",
        "APPLICATION_FUNCTION_RUNNER_ACTION_SEMAPHORE_TIMEOUT", "FUNRUN_INDEX_CACHE_QUEUE_SIZE",
        "FUNRUN_MODULE_QUEUE_SIZE", "INDEX_CACHE_VERIFY_PERCENT",
        "MAX_BACKEND_RPC_HTTP_CHUNK_SIZE", "MAX_ISOLATE_WORKERS",
        "MAX_TRANSACTION_CACHE_SIZE_BYTES", "SEND_COMMIT_MESSAGE_TIMEOUT_MILLIS",
        "SYSTEM_FUNCTION_MAX_RESULT_SIZE", "TICKETED_FUNRUN_CLUSTER_NAME", "UDF_404_ON_BAD_PATH"),
    ("581e3e3", None): (
        "APP_METRICS_SEED_GAP_FILL_DELAY_SECS", "APP_METRICS_SEED_MAX_BATCH",
        "APP_METRICS_SEED_QUERY_ID", "APP_METRICS_SEED_STARTUP_JITTER_SECS",
        "APP_METRICS_SEED_SWEEP_INTERVAL_SECS", "DATA_SYNC_BY_ID_FRESHNESS_SECONDS",
        "DATA_SYNC_MAX_ROWS_READ", "DATA_SYNC_PAGE_BYTES_LIMIT", "DATA_SYNC_PAGE_SIZE_LIMIT",
        "FINISH_PUSH_MAX_OCC_FAILURES", "INITIAL_PERSISTENCE_WRITES_BACKOFF_MS",
        "KILL_APP_METRICS_SEED_WORKER", "MAX_PERSISTENCE_WRITES_BACKOFF_MS",
        "TABLE_SUMMARY_MAX_AGE_WITH_WRITES", "USAGE_LIMIT_EVALUATE_INTERVAL_SECS"),
    ("84bd27d", None): (
        "DATA_SYNC_PROGRESS_WRITE_INTERVAL_MS", "DEPLOYMENT_USAGE_WEBHOOK_URL",
        "FUNRUN_RUN_FUNCTION_TIMEOUT_SECS"),
    ("652b828", None): (
        "AI_GATEWAY_USAGE_FIREHOSE", "COMMITTER_BATCH_WRITE_THRESHOLD",
        "COMMITTER_MAX_COMMIT_DELAY_MS", "COMMITTER_MAX_CONCURRENT_COMMITS",
        "COMMITTER_MAX_WRITE_BATCH_BYTES", "COMMITTER_MAX_WRITE_BATCH_DOCUMENTS",
        "CRON_SPLAY_SECONDS", "DEPLOY_REPORT_MIN_INTERVAL_SECS",
        "FILE_STORAGE_SIZE_MIN_DOCUMENTS_TO_RESUME", "FUNRUN_TARGET_ISOLATE_WORKER_USAGE",
        "HTTP2_CLIENT_KEEPALIVE_INTERVAL_SECONDS", "HTTP2_CLIENT_KEEPALIVE_TIMEOUT_SECONDS",
        "ISOLATE_QUEUE_CONGESTED_TIMEOUT_MS", "ISOLATE_QUEUE_IDLE_TIMEOUT_MS",
        "MAX_ZIPPED_PACKAGES_SIZE", "PROBER_PROBE_TIMEOUT", "SOURCE_MAP_CACHE_MAX_CONCURRENCY",
        "SOURCE_MAP_CACHE_MAX_SIZE_BYTES", "SOURCE_MAP_CACHE_QUEUE_SIZE",
        "USAGE_LIMIT_MAX_IN_FLIGHT_NOTIFICATIONS", "USAGE_LIMIT_NOTIFY_DRAIN_TIMEOUT_SECS"),
}
EXTRA_ENV_KNOBS = {name: span for span, names in _KNOBS_BY_RANGE.items() for name in names}

_INDEX = {release.tag: i for i, release in enumerate(RELEASES)}


def find(tag: str) -> Optional[Release]:
    """The known release with this tag (a full SHA, or an unambiguous 7+ hex prefix)."""
    if tag in _INDEX:
        return RELEASES[_INDEX[tag]]
    if len(tag) >= 7:
        matches = [r for r in RELEASES if r.tag.startswith(tag.lower())]
        if len(matches) == 1:
            return matches[0]
    return None


def reads(tag: str, setting: VersionedSetting) -> Optional[bool]:
    """Whether release `tag` reads the setting's variable; None for an unknown release."""
    return _within(tag, setting.since, setting.until)


def reads_since(tag: str, since: str) -> Optional[bool]:
    """Whether release `tag` is `since` or newer; None for an unknown release."""
    return _within(tag, since, None)


def _within(tag: str, since: Optional[str], until: Optional[str]) -> Optional[bool]:
    release = find(tag)
    if release is None:
        return None
    position = _INDEX[release.tag]
    if since is not None and position < _INDEX[find(since).tag]:
        return False
    if until is not None and position > _INDEX[find(until).tag]:
        return False
    return True


def reads_knob(tag: str, name: str) -> Optional[bool]:
    """Whether release `tag` reads knob `name`; None for an unknown release or a knob
    every known release reads (or the table does not know)."""
    if name not in EXTRA_ENV_KNOBS:
        return None
    return _within(tag, *EXTRA_ENV_KNOBS[name])


def s3_needs_keys(tag: str) -> Optional[bool]:
    release = find(tag)
    if release is None:
        return None
    return _INDEX[release.tag] < _INDEX[S3_WITHOUT_KEYS_SINCE]


def between(old: str, new: str) -> list[Release]:
    """Releases after `old` up to and including `new` (both known), oldest first."""
    return list(RELEASES[_INDEX[find(old).tag] + 1: _INDEX[find(new).tag] + 1])

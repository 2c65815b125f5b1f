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
)
# Before this release run_backend.sh enabled S3 only when both AWS keys were set, and
# otherwise fell back to local disk with a log line.
S3_WITHOUT_KEYS_SINCE = "0b8731e45077136ca23521ec11bface108aade99"
# Releases before this one refuse a database URL with a query string ("cluster url
# already contains query string", crates/clusters/src/lib.rs; the check went in f0ca1c0).
URL_PARAMETERS_SINCE = "4d3b0a5de955a258e70e3813bbff486051d88820"

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


def s3_needs_keys(tag: str) -> Optional[bool]:
    release = find(tag)
    if release is None:
        return None
    return _INDEX[release.tag] < _INDEX[S3_WITHOUT_KEYS_SINCE]


def between(old: str, new: str) -> list[Release]:
    """Releases after `old` up to and including `new` (both known), oldest first."""
    return list(RELEASES[_INDEX[find(old).tag] + 1: _INDEX[find(new).tag] + 1])

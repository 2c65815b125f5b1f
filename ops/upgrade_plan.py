"""What an upgrade crosses, which previewed changes it accepts, and how to tell from the
backend's log that it finished.

Pure functions over the release table (components/releases.py), preview events and log
lines, so the orchestration in ops/upgrade.py can be tested without a deployment.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from components import releases

# crates/migrations_model/src/lib.rs and crates/model/src/migrations.rs (upstream):
#   warn!("Executing Migration {}/{}. {}", to, DATABASE_VERSION, "Wait for log line 'Migrated N'")
#   info!("Migrated {}", new_version)
#   info!("db metadata version up to date at {}", DATABASE_VERSION)
#   warn!("persisted db metadata version is ahead at {}, this binary is at {}", ...)
#   error!("Migration worker failed, sleeping {delay:?}")
EXECUTING = re.compile(r"Executing Migration (\d+)/(\d+)")
MIGRATED = re.compile(r"\bMigrated (\d+)\b")
UP_TO_DATE = re.compile(r"db metadata version up to date at (\d+)")
AHEAD = re.compile(r"persisted db metadata version is ahead at (\d+)")
FAILED = re.compile(r"Migration worker failed|panicked|Transition too old")
MODES = ("in-place", "export-import")
NAMESPACE = "convex-selfhost"
CHANGEABLE_TYPES = {"docker:index/remoteImage:RemoteImage", "docker:index/container:Container"}
GATE_TYPE = "pulumi:index:Stash"
# The health gates of earlier releases, and the provider they ran on: the first `up` of
# this release replaces each by a Stash gate of the same name.
LEGACY_GATE_TYPE = "pulumi-python:dynamic:Resource"
LEGACY_GATE_PROVIDER = "pulumi:providers:pulumi-python"
# A deployment's network: earlier releases made it with the docker provider, this one with
# the docker CLI (components/docker/network.py), under the same resource name.
NETWORK_TYPE = "command:local:Command"
LEGACY_NETWORK_TYPE = "docker:index/network:Network"
NETWORK_PROVIDER = "pulumi:providers:command"
PROVIDER_TYPE_PREFIX = "pulumi:providers:"


class PlanError(ValueError):
    pass


@dataclass(frozen=True)
class UpgradePlan:
    old: str
    new: str
    old_release: Optional[releases.Release]
    new_release: Optional[releases.Release]
    crossed: tuple[releases.Release, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def target_database_version(self) -> Optional[int]:
        return self.new_release.database_version if self.new_release else None

    def describe(self, mode: str = "in-place") -> str:
        lines = [f"Upgrade {_name(self.old, self.old_release)} -> "
                 f"{_name(self.new, self.new_release)}"]
        if self.crossed:
            lines.append(f"Crosses {len(self.crossed)} known release(s):")
            lines += [f"  {r.date} {r.short} database {r.database_version}"
                      + (f"  ({r.note})" if r.note else "") for r in self.crossed]
        lines += [f"Note: {note}" for note in self.notes]
        lines.append(f"Steps ({mode}):")
        lines += [f"  {i}. {step}" for i, step in enumerate(steps(mode, self), start=1)]
        return "\n".join(lines)


def _name(tag: str, release: Optional[releases.Release]) -> str:
    if release is None:
        return f"{tag[:12]} (not in the release table)"
    return f"{release.short} ({release.date}, database {release.database_version})"


def plan(old: str, new: str, allow_downgrade: bool = False) -> UpgradePlan:
    """The plan from `old` to `new`; PlanError for a refused or pointless upgrade."""
    if old == new:
        raise PlanError(f"the stack already runs {new[:12]}; nothing to upgrade.")
    for tag in (old, new):
        if tag in releases.WITHDRAWN:
            raise PlanError(f"{tag[:12]} was withdrawn upstream ({releases.WITHDRAWN[tag]}).")
    old_release, new_release = releases.find(old), releases.find(new)
    if old_release is not None and old_release == new_release:  # e.g. a short and a full tag
        raise PlanError(f"the stack already runs {new[:12]}; nothing to upgrade.")
    notes = []
    if old_release is None or new_release is None:
        unknown = old if old_release is None else new
        notes.append(f"{unknown[:12]} is not in the release table: its database version and "
                     "the direction of this change cannot be checked.")
        return UpgradePlan(old, new, old_release, new_release, (), tuple(notes))
    # The table is in release order: two releases of one day and one database version
    # are still ordered.
    if releases.RELEASES.index(new_release) < releases.RELEASES.index(old_release):
        if not allow_downgrade:
            raise PlanError(
                f"{new_release.short} ({new_release.date}, database "
                f"{new_release.database_version}) is older than the running "
                f"{old_release.short} ({old_release.date}, database "
                f"{old_release.database_version}). Migrations only go forward: an older "
                "backend cannot open a database a newer one migrated, and data written since "
                "may be lost. Restore the export taken before the upgrade instead, or pass "
                "--allow-downgrade if you know the database versions match.")
        notes.append("DOWNGRADE allowed by --allow-downgrade: the database version must not "
                      "be lower than the one the data was migrated to.")
        return UpgradePlan(old, new, old_release, new_release, (), tuple(notes))
    crossed = tuple(releases.between(old, new))
    if new_release.database_version > old_release.database_version:
        notes.append(f"the backend migrates the database from version "
                     f"{old_release.database_version} to {new_release.database_version} on "
                     "its first start; migrations only go forward.")
    notes.append("no known release changed crates/model/src/migrations.rs since 2025-05-28, "
                 "so no intermediate release has to be run on the way (the rule of "
                 "upstream's older guide).")
    return UpgradePlan(old, new, old_release, new_release, crossed, tuple(notes))


def steps(mode: str, upgrade: UpgradePlan) -> list[str]:
    target = upgrade.target_database_version
    backup = ("back up: a snapshot export with file storage (the backend's export API, as "
              "scheduled backups) and the environment variables (admin API), in a private "
              "directory git cannot pick up; any failure stops here")
    check = "check that the backend accepts the admin key"
    if mode == "in-place":
        follow = (f"follow the backend log until 'db metadata version up to date at {target}'"
                  if target else "follow the backend log until the migrations report done")
        return [backup, f"set version {upgrade.new[:12]} and preview: refuse if anything but "
                        "images and containers would change", "apply", follow, check]
    return [backup, "stop external traffic to the backend (you)",
            f"bring {upgrade.new[:12]} up on a new data volume; the old one is kept for rollback",
            "`npx convex import --replace-all` the backup", "restore the environment variables "
            "(one request to the backend's /api/update_environment_variables, as `npx convex "
            "env set` makes; no value on a command line)", check]


@dataclass(frozen=True)
class MigrationResult:
    done: bool
    version: Optional[int]
    reason: str
    lines_seen: int


def follow_migrations(lines: Iterable[str], target: Optional[int], timeout: float,
                      clock: Callable[[], float] = time.monotonic,
                      progress: Callable[[str], None] = lambda _line: None) -> MigrationResult:
    """Read backend log lines until the database is at `target` (any version when None),
    a migration fails, or `timeout` seconds pass."""
    deadline = clock() + timeout
    seen = 0
    for line in lines:
        seen += 1
        if EXECUTING.search(line) or MIGRATED.search(line):
            progress(line.strip())
        if (match := UP_TO_DATE.search(line)) is not None:
            version = int(match.group(1))
            if target is None or version == target:
                return MigrationResult(True, version, f"database at version {version}", seen)
            return MigrationResult(False, version, f"database at version {version}, expected "
                                                   f"{target}", seen)
        if (match := AHEAD.search(line)) is not None:
            return MigrationResult(False, int(match.group(1)), line.strip()[:200], seen)
        if FAILED.search(line):
            return MigrationResult(False, None, line.strip()[:200], seen)
        if clock() > deadline:
            break
    return MigrationResult(False, None, f"no 'db metadata version up to date' line within "
                                        f"{timeout:.0f}s", seen)


def judge_preview(events: Iterable, changeable: frozenset = frozenset(CHANGEABLE_TYPES),
                  refuse_deletes: bool = False) -> tuple[list[str], list[str]]:
    """(refused, accepted with a reason) among the changes of a preview's engine events:
    images, containers and health-gate updates (or the `changeable` types) are what a
    version change replaces; all else is refused (with `refuse_deletes`, a changeable
    resource going away too), except a provider update that only passes the project's
    configuration, and the replacement of an earlier release's health gates by Stash
    gates and of its networks by command-made ones."""
    refused, notes = [], []
    steps = []
    for event in events:
        pre = getattr(event, "resource_pre_event", None)
        if pre is None or pre.metadata.op.value in ("same", "read"):
            continue
        steps.append((pre, pre.metadata.type, pre.metadata.op.value,
                      pre.metadata.urn.rsplit("::", 1)[-1]))
    migrated = _migrated(steps, LEGACY_GATE_TYPE, GATE_TYPE)
    if migrated:
        notes.append(f"the health gates {', '.join(sorted(migrated))} become Stash records "
                     "(the engine keeps them; nothing they watch changes by it)")
    networks = _migrated(steps, LEGACY_NETWORK_TYPE, NETWORK_TYPE)
    if networks:
        notes.append(f"the networks {', '.join(sorted(networks))} are made by the docker CLI "
                     "now, under new names; the containers move to them")
    for pre, kind, op, name in steps:
        if (kind in changeable and not (refuse_deletes and op == "delete")) or \
                (kind == GATE_TYPE and op == "update") or \
                (name in migrated and (kind, op) in ((GATE_TYPE, "create"),
                                                     (LEGACY_GATE_TYPE, "delete"))) or \
                (migrated and (kind, op) == (LEGACY_GATE_PROVIDER, "delete")) or \
                (name in networks and (kind, op) in ((NETWORK_TYPE, "create"),
                                                     (LEGACY_NETWORK_TYPE, "delete"))) or \
                (networks and (kind, op) == (NETWORK_PROVIDER, "create")):
            continue
        changed = _changed_inputs(pre.metadata)
        if kind.startswith(PROVIDER_TYPE_PREFIX) and op == "update":
            if changed and all(key.startswith(f"{NAMESPACE}:") for key in changed):
                # A dynamic provider (the earlier releases' health gates ran on one)
                # receives the project's configuration as its inputs, so a new `version`
                # updates it. That changes no resource by itself: whatever it would change
                # on one is that resource's own step, judged here too.
                notes.append(f"update {name} ({kind}) only passes the project's configuration "
                             f"to the provider ({', '.join(changed)}); nothing it manages "
                             "changes by it")
            else:
                refused.append(f"{op} {name} ({kind}: "
                               f"{', '.join(changed) if changed else 'changes unknown'})")
            continue
        refused.append(f"{op} {name} ({kind})")
    return refused, notes


def _migrated(steps: list, legacy_type: str, new_type: str) -> set[str]:
    """The names of an earlier release's resources this preview replaces by another kind
    (a delete of the one and a create of the other under the same name)."""
    created = {name for _, kind, op, name in steps if (kind, op) == (new_type, "create")}
    deleted = {name for _, kind, op, name in steps if (kind, op) == (legacy_type, "delete")}
    return created & deleted


def _changed_inputs(metadata) -> list[str]:
    """The names (never the values) of the inputs a step changes, as the engine reports
    them: its old and new inputs, else its list of diffs."""
    olds = getattr(getattr(metadata, "old", None), "inputs", None)
    news = getattr(getattr(metadata, "new", None), "inputs", None)
    if isinstance(olds, dict) and isinstance(news, dict):
        return sorted(key for key in olds.keys() | news.keys() if olds.get(key) != news.get(key))
    return sorted(getattr(metadata, "diffs", None) or [])

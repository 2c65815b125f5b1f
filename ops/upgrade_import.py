"""The export/import upgrade path: the new version on a new data volume, then the backup.

Upstream's "Option 2" (self-hosted/advanced/upgrading.md). The old data volume is
retained on the host (the program never deletes a data volume) so a rollback is a
config change away: `version` and `dataVolumeName` back to what they were, after
unprotecting the data volume's resource, which `up` protected again on the new volume (the
rollback text names all three). Deployments whose data lives in Postgres or MySQL keep it in that
database, not in the volume: they are refused here and upgraded in place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from ops.upgrade import Upgrader

NAMESPACE = "convex-selfhost"
VOLUME_TYPE = "docker:index/volume:Volume"
UNPROTECT_TIMEOUT = 300


def export_import(upgrader: Upgrader, snapshot: Path) -> None:
    from ops import backup
    from ops.upgrade import ENV_FILE, UpgradeError

    log = upgrader.log
    if upgrader.config("provisionPostgres") == "true" or upgrader.config("databaseUrl"):
        raise UpgradeError("export-import moves data between data volumes; this deployment "
                           "keeps it in Postgres/MySQL. Use --mode in-place.")
    old_volume = upgrader.config("dataVolumeName") or f"{upgrader.instance}-data"
    new_volume = f"{upgrader.instance}-data-{upgrader.new[:7]}"
    _unprotect_data_volume(upgrader)
    upgrader.set_config("version", upgrader.new)
    upgrader.set_config("dataVolumeName", new_volume)
    log(f"bringing {upgrader.new[:12]} up on volume {new_volume}; {old_volume} is kept")
    upgrader.up()
    npx(upgrader, "import", "--replace-all", "--yes", str(snapshot))
    try:
        variables = backup.read_env_file(str(snapshot.parent / ENV_FILE))
    except backup.UsageError as error:
        raise UpgradeError(f"the saved environment variables are unusable: {error}.") from None
    pairs = [(variable["name"], variable["value"]) for variable in variables]
    set_env(upgrader, pairs)
    log(f"restored the backup and {len(pairs)} environment variable(s); the old volume "
        f"{old_volume} stays until you remove it (docker volume rm {old_volume})")


def _unprotect_data_volume(upgrader: Upgrader) -> None:
    """The data volume resource is replaced (a new name); a protected one cannot be.
    Its Docker volume is retained on delete either way."""
    from ops.upgrade import REPO, UpgradeError, shell_line

    state = upgrader.stack.export_stack()
    deployment = state.deployment if hasattr(state, "deployment") else state
    resources = deployment.get("resources", []) if isinstance(deployment, dict) else []
    for resource in resources:
        urn = resource.get("urn", "")
        if resource.get("type") == VOLUME_TYPE and urn.endswith("-backend-data"):
            upgrader.log(f"unprotecting {urn.rsplit('::', 1)[-1]} in state (the volume itself "
                         "is retained)")
            command = ["pulumi", "state", "unprotect", urn, "--yes", "--stack",
                       upgrader.stack.name]
            upgrader.log(f"$ {shell_line(*command)}")
            done = upgrader.run(command, UNPROTECT_TIMEOUT, cwd=str(REPO))
            if done.returncode != 0:
                raise UpgradeError(f"could not unprotect the data volume: {json.dumps(urn)}")
            upgrader.unprotected.append(urn)


def npx(upgrader: Upgrader, *args: str) -> None:
    """`npx convex ARGS` in the app directory against this deployment."""
    from ops.upgrade import UpgradeError, shell_line

    upgrader.log(f"$ {shell_line('npx', 'convex', *args)}  (in {upgrader.app_dir})")
    env = dict(os.environ, CONVEX_SELF_HOSTED_URL=upgrader.url,
               CONVEX_SELF_HOSTED_ADMIN_KEY=upgrader.key)
    env.pop("CONVEX_DEPLOYMENT", None)  # the CLI refuses a cloud and a self-hosted target
    done = upgrader.run(["npx", "--yes", "convex", *args], upgrader.timeout,
                        cwd=upgrader.app_dir, env=env)
    if done.returncode != 0:
        raise UpgradeError(f"`npx convex {args[0]}` failed (exit {done.returncode}).")


def set_env(upgrader: Upgrader, pairs: Sequence[tuple[str, str]]) -> None:
    """Set environment variables in one request, as `npx convex env set` does, but with
    the values in the request body only: never on a command line or in the log."""
    from ops.upgrade import UpgradeError

    if not pairs:
        return
    upgrader.log(f"setting {len(pairs)} environment variable(s): "
                 + ", ".join(name for name, _ in pairs))
    status = upgrader.admin_api("/api/update_environment_variables", {
        "changes": [{"name": name, "value": value} for name, value in pairs]})
    if status != 200:
        raise UpgradeError(f"the backend refused the environment variables (HTTP {status}).")

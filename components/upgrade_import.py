"""The export/import upgrade path: the new version on a new data volume, then the backup.

Upstream's "Option 2" (self-hosted/advanced/upgrading.md). The old data volume is
retained on the host (the program never deletes a data volume) so a rollback is a
config change away. Deployments whose data lives in Postgres or MySQL keep it in that
database, not in the volume: they are refused here and upgraded in place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from components.upgrade import Upgrader

NAMESPACE = "convex-selfhost"
VOLUME_TYPE = "docker:index/volume:Volume"


def parse_env_list(text: str) -> list[tuple[str, str]]:
    """`npx convex env list` output (NAME=value lines) as pairs."""
    pairs = []
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip():
            pairs.append((name.strip(), value))
    return pairs


def export_import(upgrader: Upgrader, snapshot: Path) -> None:
    from components.upgrade import UpgradeError, _config_value

    stack, log = upgrader.stack, upgrader.log
    config = {key: item.value for key, item in stack.get_all_config().items()}
    if config.get(f"{NAMESPACE}:provisionPostgres") == "true" or config.get(
            f"{NAMESPACE}:databaseUrl"):
        raise UpgradeError("export-import moves data between data volumes; this deployment "
                           "keeps it in Postgres/MySQL. Use --mode in-place.")
    old_volume = config.get(f"{NAMESPACE}:dataVolumeName") or f"{upgrader.instance}-data"
    new_volume = f"{upgrader.instance}-data-{upgrader.new[:7]}"
    _unprotect_data_volume(upgrader)
    stack.set_config(f"{NAMESPACE}:version", _config_value(upgrader.new))
    stack.set_config(f"{NAMESPACE}:dataVolumeName", _config_value(new_volume))
    log(f"bringing {upgrader.new[:12]} up on volume {new_volume}; {old_volume} is kept")
    stack.up()
    upgrader.npx("import", "--replace-all", "--yes", str(snapshot))
    pairs = parse_env_list((snapshot.parent / "env.txt").read_text())
    upgrader.set_env(pairs)
    log(f"restored the backup and {len(pairs)} environment variable(s); the old volume "
        f"{old_volume} stays until you remove it (docker volume rm {old_volume})")


def _unprotect_data_volume(upgrader: Upgrader) -> None:
    """The data volume resource is replaced (a new name); a protected one cannot be.
    Its Docker volume is retained on delete either way."""
    state = upgrader.stack.export_stack()
    deployment = state.deployment if hasattr(state, "deployment") else state
    resources = deployment.get("resources", []) if isinstance(deployment, dict) else []
    for resource in resources:
        urn = resource.get("urn", "")
        if resource.get("type") == VOLUME_TYPE and urn.endswith("-backend-data"):
            upgrader.log(f"unprotecting {urn.rsplit('::', 1)[-1]} in state (the volume itself "
                         "is retained)")
            done = upgrader.run(["pulumi", "state", "unprotect", urn, "--yes", "--stack",
                                 upgrader.stack.name], cwd=str(Path(__file__).parents[1]))
            if done.returncode != 0:
                from components.upgrade import UpgradeError

                raise UpgradeError(f"could not unprotect the data volume: {json.dumps(urn)}")

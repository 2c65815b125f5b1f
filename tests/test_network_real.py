"""A deployment made by the release before the command-made network moves to it in one
`pulumi up`, on a real Pulumi engine and a real Docker engine (opt-in, about a minute):

    CONVEX_SELFHOST_INTEGRATION=1 ./test.sh -m integration tests/test_network_real.py -s

The earlier release's program (`__main__.py` and `components/`) comes from git (the commit
below, the last one with a `docker.Network`), so this needs the repository's history; a
shallow clone skips it.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from test_integration import (
    _assert_no_changes,
    _base_config,
    _cleanup,
    _ensure_images,
    _get,
    integration_skip_reason,
    project_copy,
)

from components.releases import DEFAULT_VERSION

REPO = Path(__file__).resolve().parents[1]
# The last commit whose deployments had a docker.Network called <instance>-net.
RELEASE_BEFORE = "35bdc02ceb11c594bf1c636da0afebce79fd5723"


PROGRAM = ("__main__.py", "components")  # what a `git pull` of the release changes


def _program_of(commit: str) -> bytes:
    done = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit,
                           *PROGRAM], capture_output=True, timeout=60)
    return done.stdout if done.returncode == 0 else b""


def _remove_program(project: Path) -> None:
    for name in PROGRAM:
        path = project / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _networks(prefix: str) -> dict[str, dict]:
    names = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}", "--filter",
                            f"name={prefix}"], capture_output=True, text=True).stdout.split()
    return {name: json.loads(subprocess.run(
        ["docker", "network", "inspect", "--format", "{{json .}}", name],
        capture_output=True, text=True).stdout) for name in names}


@pytest.mark.integration
def test_a_deployment_of_the_release_before_moves_to_the_command_made_network(tmp_path):
    reason = integration_skip_reason()
    if reason:
        pytest.skip(reason)
    old_program = _program_of(RELEASE_BEFORE)
    if not old_program:
        pytest.skip(f"opt-in test needs the repository's history (git archive {RELEASE_BEFORE[:8]} "
                    "failed: a shallow clone?)")
    _ensure_images()
    ws = project_copy(tmp_path, keep=())
    try:
        _remove_program(ws.project)
        with tarfile.open(fileobj=io.BytesIO(old_program)) as archive:
            archive.extractall(ws.project, filter="data")
        stack = ws.new_stack("net", _base_config(ws, "net", protectData="false"))
        instance = f"{ws.prefix}-net"
        ws.volumes.add(f"{instance}-data")  # retained on destroy; removed at the end
        ws.pulumi("up", "--yes", "--skip-preview", stack=stack)
        assert set(_networks(instance)) == {f"{instance}-net"}

        # This release's program, as a `git pull` brings it.
        _remove_program(ws.project)
        for name in PROGRAM:
            source = REPO / name
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, ws.project / name)
        steps = {(s["op"], s["urn"].rsplit("::", 1)[-1]) for s in ws.preview_steps(stack)
                 if s["op"] != "same"}
        assert ("create", f"{instance}-network") in steps
        assert ("delete", f"{instance}-network") in steps  # the old docker.Network
        replaced = {name for op, name in steps
                    if op in ("replace", "create-replacement", "delete-replaced")}
        assert replaced == {
            f"{instance}-backend-container", f"{instance}-dashboard-container"}
        ws.pulumi("up", "--yes", "--skip-preview", stack=stack)
        networks = _networks(instance)
        assert set(networks) == {f"{instance}-network"}
        network = networks[f"{instance}-network"]
        assert network["Labels"]["convex-selfhost.stack"] == stack
        assert {c["Name"] for c in network["Containers"].values()} == {
            f"{instance}-backend", f"{instance}-dashboard"}
        out = ws.outputs(stack)
        status, body = _get(f"{out['backendUrl']}/version")
        assert (status, body.strip()) == (200, DEFAULT_VERSION)
        _assert_no_changes(ws, stack)
        # A refresh (as ./up.sh runs it) changes nothing either.
        ws.pulumi("up", "--yes", "--skip-preview", "--refresh", "--expect-no-changes",
                  stack=stack)

        ws.pulumi("destroy", "--yes", "--skip-preview", stack=stack)
        assert _networks(instance) == {}
    finally:
        _cleanup(ws)

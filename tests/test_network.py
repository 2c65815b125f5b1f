"""DeploymentNetwork: the network's create and delete commands, run by `sh` against a fake
`docker` that keeps its networks in a directory (no engine needed)."""

import os
import subprocess
from pathlib import Path

import pytest
from harness import NETWORK, evaluate

from components.docker.network import create_script, delete_script, network_name

FAKE_DOCKER = r"""#!/bin/sh
# A docker CLI that knows only `network inspect|create|rm`; $NETS holds one file per
# network (its id), $NETS/<name>.busy marks one with containers attached.
echo "$*" >> "$NETS/calls"
[ "$1" = network ] || exit 2
eval "name=\${$#}"
no_such() { echo "Error: No such network: $name" >&2; exit 1; }
case "$2" in
inspect) [ -f "$NETS/$name" ] || no_such
         cat "$NETS/$name" ;;
create)  echo "id-$name" > "$NETS/$name"
         printf '%s\n' "$@" > "$NETS/$name.args"
         cat "$NETS/$name" ;;
rm)      [ -f "$NETS/$name" ] || no_such
         [ ! -f "$NETS/$name.busy" ] || {
             echo "Error response from daemon: network $name has active endpoints" >&2
             exit 1; }
         rm "$NETS/$name"; echo "$name" ;;
esac
"""


@pytest.fixture
def docker(tmp_path):
    bin_dir, nets = tmp_path / "bin", tmp_path / "nets"
    bin_dir.mkdir()
    nets.mkdir()
    fake = bin_dir / "docker"
    fake.write_text(FAKE_DOCKER)
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", NETS=str(nets))

    def sh(script: str) -> subprocess.CompletedProcess:
        return subprocess.run(["/bin/sh", "-c", script], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=30)
    sh.nets = nets
    return sh


def calls(nets: Path) -> list[str]:
    path = nets / "calls"
    return path.read_text().splitlines() if path.exists() else []


LABELS = {"convex-selfhost.stack": "dev", "convex-selfhost.deployment": "convex-dev",
          "convex-selfhost.role": "network"}


def test_create_makes_a_labelled_network_and_prints_its_id(docker):
    done = docker(create_script("convex-dev-network", LABELS))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "id-convex-dev-network"
    args = (docker.nets / "convex-dev-network.args").read_text().splitlines()
    assert args == ["network", "create", "--label", "convex-selfhost.stack=dev",
                    "--label", "convex-selfhost.deployment=convex-dev",
                    "--label", "convex-selfhost.role=network", "convex-dev-network"]


def test_create_adopts_an_existing_network_instead_of_making_another(docker):
    (docker.nets / "convex-dev-network").write_text("id-made-by-an-interrupted-run\n")
    done = docker(create_script("convex-dev-network", LABELS))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "id-made-by-an-interrupted-run"
    assert [c.split()[1] for c in calls(docker.nets)] == ["inspect"]


def test_delete_removes_the_network_and_accepts_one_already_gone(docker):
    docker(create_script("convex-dev-network", LABELS))
    assert docker(delete_script("convex-dev-network")).returncode == 0
    assert not (docker.nets / "convex-dev-network").exists()
    again = docker(delete_script("convex-dev-network"))
    assert again.returncode == 0 and again.stderr == ""


def test_delete_of_a_network_in_use_fails_and_says_why(docker):
    docker(create_script("convex-dev-network", LABELS))
    (docker.nets / "convex-dev-network.busy").touch()
    done = docker(delete_script("convex-dev-network"))
    assert done.returncode == 1
    assert "has active endpoints" in done.stderr
    assert (docker.nets / "convex-dev-network").exists()


def test_names_and_labels_are_never_run_as_shell(docker):
    # Instance names are validated by the settings; the scripts quote them all the same.
    hostile = {"convex-selfhost.stack": "$(touch pwned) `touch pwned2`; touch pwned3 'x'"}
    done = docker(create_script("n;touch pwned4", hostile))
    assert done.returncode == 0, done.stderr
    assert not list(docker.nets.parent.glob("pwned*"))
    args = (docker.nets / "n;touch pwned4.args").read_text().splitlines()
    assert args[3] == "convex-selfhost.stack=" + hostile["convex-selfhost.stack"]
    assert docker(delete_script("n;touch pwned4")).returncode == 0
    assert not list(docker.nets.parent.glob("pwned*"))


def test_the_network_is_named_after_the_instance_and_replaced_not_updated():
    run = evaluate("staging")
    (network,) = run.of_type(NETWORK)
    assert network_name("convex-staging") == "convex-staging-network"
    assert network.inputs["create"] == create_script("convex-staging-network", {
        "convex-selfhost.stack": "staging", "convex-selfhost.deployment": "convex-staging",
        "convex-selfhost.role": "network"})
    assert network.inputs["delete"] == delete_script("convex-staging-network")
    # A second network of the same name would clash: the old one goes first.
    assert network.delete_before_replace and "*" in network.replace_on_changes
    # The local engine: the command uses the caller's docker settings, nothing recorded.
    assert "environment" not in network.inputs

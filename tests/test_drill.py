"""ops/drill.py: the checks around the throwaway backend, with stand-in commands (the whole
drill runs for real on an engine: see the closing note / docs/contributing.md)."""

import json
import os
import shutil
import subprocess
import zipfile

import pytest
from fake_convex_export import snapshot_zip

from components.releases import DEFAULT_VERSION
from ops import drill


def snapshot(path, documents=2):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README.md", "# export\n")
        archive.writestr("t/documents.jsonl", '{"_id": "a"}\n' * documents)
    return path


class Runner:
    def __init__(self, config, fail_run=False):
        self.config, self.fail_run, self.calls = config, fail_run, []

    def __call__(self, argv, timeout, env=None):
        self.calls.append((list(argv), env))
        if argv[:3] == ["pulumi", "config", "get"]:
            value = self.config.get(argv[3])
            return subprocess.CompletedProcess(argv, 0 if value else 255, value or "", "")
        if "run" in argv:
            return subprocess.CompletedProcess(argv, 1 if self.fail_run else 0, "id\n",
                                               "docker: no such image")
        return subprocess.CompletedProcess(argv, 0, "", "")


def test_counts_come_from_the_snapshot_and_must_match_its_record(tmp_path):
    path = snapshot(tmp_path / "snapshot-20261201T030000Z.zip", 3)
    assert drill.expected_counts(path) == {"tables": 1, "documents": 3, "files": 0}
    (tmp_path / ".last-run.json").write_text(json.dumps(
        {"file": path.name, "tables": 1, "documents": 4, "files": 0}))
    with pytest.raises(drill.DrillError, match="its run record says"):
        drill.expected_counts(path)
    (tmp_path / "bad.zip").write_text("not a zip")
    with pytest.raises(drill.DrillError, match="failed verification"):
        drill.expected_counts(tmp_path / "bad.zip")


def test_other_targets_are_told_what_to_do(tmp_path):
    run = Runner({"convex-selfhost:target": "kubernetes"})
    with pytest.raises(drill.DrillError, match="scratch stack"):
        drill.drill("prod", snapshot(tmp_path / "s.zip"), run=run, say=lambda _: None)
    assert not [argv for argv, _ in run.calls if argv[0] == "docker"]


def test_the_throwaway_backend_gets_its_secret_by_environment_and_is_always_removed(tmp_path):
    run = Runner({"convex-selfhost:version": "652b828b5129e6cdbcaa3c20efa8d116d09ff3bf",
                  "docker:host": "ssh://deploy@h"}, fail_run=True)
    said = []
    with pytest.raises(drill.DrillError, match="docker run failed: docker: no such image"):
        drill.drill("prod", snapshot(tmp_path / "s.zip"), run=run, say=said.append)
    (start, env), (remove, _) = [(a, e) for a, e in run.calls if a[0] == "docker"]
    assert start[:4] == ["docker", "--host", "ssh://deploy@h", "run"]
    assert start[-1] == ("ghcr.io/get-convex/convex-backend:"
                         "652b828b5129e6cdbcaa3c20efa8d116d09ff3bf")
    secret = env["INSTANCE_SECRET"]
    assert len(secret) == 64 and secret not in " ".join(start)
    assert "-e" in start and "INSTANCE_SECRET" in start
    name = start[start.index("--name") + 1]
    assert name.startswith("convex-drill-")
    assert remove == ["docker", "--host", "ssh://deploy@h", "rm", "-f", "-v", name]
    assert said[-1] == f"drill: removed {name}"


@pytest.mark.integration
def test_a_drill_on_a_real_engine_with_the_stand_in_backend(tmp_path):
    """The whole drill against the local Docker engine and the stand-in backend image
    (tests/standins/build.sh): a throwaway backend started, the snapshot imported, exported
    again and compared, the container removed. Opt-in, as the other real-engine tests."""
    image = f"{drill.IMAGE}:{DEFAULT_VERSION}"
    if os.environ.get("CONVEX_SELFHOST_INTEGRATION") != "1" or not shutil.which("docker") or \
            subprocess.run(["docker", "image", "inspect", image],
                           capture_output=True).returncode != 0:
        pytest.skip(f"needs CONVEX_SELFHOST_INTEGRATION=1, a Docker engine and {image} "
                    "(tests/standins/build.sh)")
    # The stand-in keeps imported tables, not stored files: a snapshot with a file shows
    # the drill catching a file the restored deployment lost.
    path = tmp_path / "snapshot-20261201T030000Z.zip"
    path.write_bytes(snapshot_zip())
    with pytest.raises(drill.DrillError, match="'files': 0} after the import, the snapshot "
                                               "{'tables': 1, 'documents': 50, 'files': 1}"):
        drill.drill("no-such-stack-here", path, say=print, timeout=60)
    tables_only = tmp_path / "snapshot-20261202T030000Z.zip"
    with zipfile.ZipFile(path) as full, zipfile.ZipFile(tables_only, "w") as out:
        for name in full.namelist():
            if not name.startswith("_storage/"):
                out.writestr(name, full.read(name))
    counts = drill.drill("no-such-stack-here", tables_only, say=print, timeout=60)
    assert counts == {"tables": 1, "documents": 50, "files": 0}
    left = subprocess.run(["docker", "ps", "-a", "--filter", "label=convex-selfhost.role=drill",
                           "-q"], capture_output=True, text=True).stdout.split()
    assert left == []

"""ops/drill.py: each target's throwaway backend around the client's drill, with stand-in
commands (the whole drill runs for real against engines in the opt-in tests below, in
tests/test_host_integration.py and in docs/contributing.md)."""

import io
import json
import os
import shutil
import subprocess
import tarfile
import zipfile

import pytest
from fake_convex_export import snapshot_zip
from harness import config_json

from components.core.backups import client_files
from components.releases import DEFAULT_VERSION
from ops import backup, backup_drill, drill, drill_host, drill_kubernetes


def snapshot(path, documents=2):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README.md", "# export\n")
        archive.writestr("t/documents.jsonl", '{"_id": "a"}\n' * documents)
    return path


class Runner:
    """Answers `pulumi config --json` with CONFIG, and docker/kubectl as scripted."""

    def __init__(self, config, fail_run=False, job=None, logs=""):
        self.config, self.fail_run, self.calls = config, fail_run, []
        self.job, self.logs = job or [], logs

    def __call__(self, argv, timeout, env=None):
        self.calls.append((list(argv), env))
        done = subprocess.CompletedProcess
        if argv[:3] == ["pulumi", "config", "--json"]:
            return done(argv, 0, self.config, "")
        if argv[0] == "docker" and "run" in argv:
            return done(argv, 1 if self.fail_run else 0, "id\n", "docker: no such image")
        if argv[0] == "kubectl" and "get" in argv:
            state = self.job.pop(0) if len(self.job) > 1 else self.job[0]
            status = {"conditions": [{"type": state, "status": "True"}]} if state else {}
            return done(argv, 0, json.dumps({"status": status}), "")
        if argv[0] == "kubectl" and "logs" in argv:
            return done(argv, 0, self.logs, "")
        return done(argv, 0, "", "")


def test_the_docker_backend_gets_its_secret_by_environment_and_is_always_removed(tmp_path):
    run = Runner(config_json("prod", {"docker:host": "ssh://deploy@h"}), fail_run=True)
    said = []
    with pytest.raises(drill.DrillError, match="docker run failed: docker: no such image"):
        drill.drill("prod", snapshot(tmp_path / "s.zip"), run=run, say=said.append)
    (start, env), *removes = [(a, e) for a, e in run.calls if a[0] == "docker"]
    assert start[:4] == ["docker", "--host", "ssh://deploy@h", "run"]
    version = json.loads(run.config)["convex-selfhost:version"]["value"]
    assert start[-1] == f"ghcr.io/get-convex/convex-backend:{version}"
    assert "-p" not in start  # nothing published: the client runs beside it
    secret = env["INSTANCE_SECRET"]
    assert len(secret) == 64 and secret not in " ".join(start)
    assert "-e" in start and "INSTANCE_SECRET" in start
    name = start[start.index("--name") + 1]
    assert name.startswith("convex-drill-")
    assert [r for r, _ in removes] == [
        ["docker", "--host", "ssh://deploy@h", "rm", "-f", "-v", f"{name}-client"],
        ["docker", "--host", "ssh://deploy@h", "rm", "-f", "-v", name]]
    assert said[-1] == f"drill: removed {name}"


def test_the_client_runs_beside_the_backend_on_the_volume_or_a_streamed_file(
        tmp_path, monkeypatch):
    copied, streamed = [], []
    monkeypatch.setattr(drill, "copy_in", lambda docker, container, files, snap:
                        copied.append((container, sorted(files), snap)))
    ok = "convex-backup drill ok file=/backups/s.zip tables=1 documents=2 files=0"

    def fake_stream(argv, head, body, timeout, say, hide=()):
        streamed.append((argv, hide))
        return 0, f"drill: imported 2\n{ok}\n"
    monkeypatch.setattr(drill, "stream", fake_stream)
    run = Runner(config_json("dev", {"backupSchedule": "0 3 * * *"}))
    assert drill.drill("dev", None, run=run, say=lambda _: None) == {
        "tables": 1, "documents": 2, "files": 0}
    (backend, _), (create, env), *_ = [(a, e) for a, e in run.calls if a[0] == "docker"]
    name = backend[backend.index("--name") + 1]
    assert create[create.index("--network") + 1] == f"container:{name}"
    assert ["-v", "convex-dev-backups:/backups:ro"] == create[create.index("-v"):
                                                             create.index("-v") + 2]
    assert create[create.index("drill") + 1:create.index("drill") + 5] == [
        "--url", "http://127.0.0.1:3210", "--dest", "/backups"]
    assert {"--cap-drop", "ALL", "no-new-privileges"} <= set(create)
    key = env[backup.KEY_ENV]
    assert key.startswith(f"{name}|") and key not in " ".join(create)
    assert copied == [(f"{name}-client", sorted(client_files()), None)]
    assert streamed[0][0][-3:] == ["start", "--attach", f"{name}-client"]
    assert key in streamed[0][1]
    # --file: streamed into /drill, no volume.
    run = Runner(config_json("dev"))
    drill.drill("dev", snapshot(tmp_path / "s.zip"), run=run, say=lambda _: None)
    create = [a for a, _ in run.calls if a[:2] == ["docker", "create"]][0]
    assert "-v" not in create and "/drill/s.zip" in create
    assert copied[-1][2] == tmp_path / "s.zip"


def test_copy_in_streams_one_tar_readable_by_anyone(tmp_path, monkeypatch):
    seen = {}

    class Proc:
        def __init__(self, argv, **kwargs):
            seen["argv"] = argv
            self.stdin, self.stderr = io.BytesIO(), io.BytesIO(b"")
            self.stdin.close = lambda: None

        def wait(self):
            seen["tar"] = self.stdin.getvalue()
            return 0

        def kill(self):
            raise AssertionError("not within its time")
    monkeypatch.setattr(drill.subprocess, "Popen", Proc)
    path = snapshot(tmp_path / "snapshot-20261201T030000Z.zip")
    (tmp_path / ".last-run.json").write_text("{}")
    drill.copy_in(["docker"], "c-client", {"convex_backup.py": "print()"}, path)
    assert seen["argv"] == ["docker", "cp", "-", "c-client:/"]
    with tarfile.open(fileobj=io.BytesIO(seen["tar"])) as tar:
        members = {m.name: (m.isdir(), oct(m.mode)) for m in tar.getmembers()}
        assert tar.extractfile("drill/snapshot-20261201T030000Z.zip").read() == \
            path.read_bytes()
    assert members == {"app": (True, "0o755"), "app/convex_backup.py": (False, "0o644"),
                       "drill": (True, "0o755"),
                       "drill/snapshot-20261201T030000Z.zip": (False, "0o644"),
                       "drill/.last-run.json": (False, "0o644")}


def test_a_bad_snapshot_starts_nothing(tmp_path):
    run = Runner(config_json("prod"))
    (tmp_path / "bad.zip").write_text("not a zip")
    with pytest.raises(drill.DrillError, match="failed verification"):
        drill.drill("prod", tmp_path / "bad.zip", run=run, say=lambda _: None)
    with pytest.raises(drill.DrillError, match="keeps no local snapshots: pass --file"):
        drill.drill("prod", None, run=run, say=lambda _: None)
    assert not [argv for argv, _ in run.calls if argv[0] == "docker"]


def test_stacks_and_deployments_are_named_when_wrong(tmp_path):
    run = Runner(config_json("staging", {"deployments": ["web", "admin"]}))
    with pytest.raises(drill.DrillError, match="pass --deployment with one of web, admin"):
        drill.drill("staging", snapshot(tmp_path / "s.zip"), run=run, say=lambda _: None)
    with pytest.raises(drill.DrillError, match="--deployment 'x' is not in the stack"):
        drill.drill("staging", snapshot(tmp_path / "s.zip"), "x", run=run, say=lambda _: None)
    bad = Runner(config_json("prod", {"backendPort": "not a port"}))
    with pytest.raises(drill.DrillError, match="(?s)settings are not valid: .*backendPort"):
        drill.drill("prod", None, run=bad, say=lambda _: None)


def test_the_host_script_quotes_everything_and_carries_no_secret():
    script = drill_host.host_script("convex-drill-ab12", "/opt/convex-selfhost/it's", [
        "--dest", "/var/lib/convex-selfhost-backups/x y"], False, 300, 3600)
    assert "'/opt/convex-selfhost/it'\"'\"'s/convex-local-backend'" in script
    assert "--dest '/var/lib/convex-selfhost-backups/x y'" in script
    assert "--wait 300 --timeout 3600" in script and "cat > snapshot.zip" not in script
    uploaded = drill_host.host_script("convex-drill-ab12", "/opt/convex-selfhost/x", [], True, 1, 2)
    assert "cat > snapshot.zip" in uploaded and '--file "$dir/snapshot.zip"' in uploaded
    stdin = drill_host.host_stdin("ab" * 32, {"CONVEX_SELF_HOSTED_ADMIN_KEY": "k|1"})
    assert stdin == ("ab" * 32 + "\nCONVEX_SELF_HOSTED_ADMIN_KEY=k|1\n\n").encode()
    with pytest.raises(drill.DrillError, match="AWS_SECRET_ACCESS_KEY is empty or holds"):
        drill_host.host_stdin("s", {"AWS_SECRET_ACCESS_KEY": "a\nb"})


def test_the_host_script_runs_the_drill_and_cleans_up(tmp_path):
    """The script itself, under bash here, with a fake binary and client: the secrets
    arrive on stdin, the snapshot after them, and the directory is gone afterwards."""
    install = tmp_path / "opt"
    install.mkdir()
    (install / "convex-local-backend").write_text(
        "#!/bin/sh\necho \"backend $*\"\nexec sleep 30\n")
    (install / "convex-local-backend").chmod(0o755)
    (install / "convex_backup.py").write_text(
        "import os, sys\n"
        "print('client', sys.argv[1:], os.environ['CONVEX_SELF_HOSTED_ADMIN_KEY'])\n"
        "print(open(sys.argv[sys.argv.index('--file') + 1]).read())\n"
        "print('convex-backup drill ok file=x tables=1 documents=2 files=0')\n")
    script = drill_host.host_script("convex-drill-ab12", str(install), [], True, 5, 5)
    script = script.replace("/var/tmp/convex-drill.XXXXXX", f"{tmp_path}/d.XXXXXX")
    head = drill_host.host_stdin("ab" * 32, {"CONVEX_SELF_HOSTED_ADMIN_KEY": "the-drill-admin-key"})
    body = tmp_path / "upload.zip"
    body.write_text("the snapshot's bytes")
    status, output = drill_host.stream(["bash", "-c", script], head, body, 30, lambda _: None,
                                  hide=["the-drill-admin-key"])
    assert "the snapshot's bytes" in output
    assert status == 0, output
    assert "the-drill-admin-key" not in output and "client ['drill'" in output
    counts = backup_drill.result_counts(status, output, "here")
    assert counts == {"tables": 1, "documents": 2, "files": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["opt", "upload.zip"]  # dir gone


@pytest.fixture
def kubectl_on_path(monkeypatch):
    monkeypatch.setattr(drill_kubernetes.shutil, "which", lambda name: f"/usr/bin/{name}")


def test_without_kubectl_the_drill_says_so(monkeypatch):
    monkeypatch.setattr(drill_kubernetes.shutil, "which", lambda name: None)
    run = Runner(config_json("kubernetes"))
    with pytest.raises(drill.DrillError, match="kubectl is not on PATH"):
        drill.drill("kubernetes", None, run=run, say=lambda _: None)
    assert not [argv for argv, _ in run.calls if argv[0] == "kubectl"]


@pytest.mark.usefixtures("kubectl_on_path")
def test_a_kubernetes_drill_is_a_job_from_the_cronjob_deleted_afterwards(tmp_path):
    ok = "convex-backup drill ok file=/backups/s.zip tables=1 documents=50 files=0"
    run = Runner(config_json("kubernetes", {"kubernetes:kubeconfig": "apiVersion: v1\nkind: x",
                                            "kubernetes:context": "kind"}),
                 job=["", "", "Complete"], logs=f"drill: imported 50\n{ok}\n")
    said = []
    counts = drill.drill("kubernetes", None, run=run, say=said.append, timeout=5)
    assert counts == {"tables": 1, "documents": 50, "files": 0}
    kubectl = [argv for argv, _ in run.calls if argv[0] == "kubectl"]
    create, *gets, logs, delete = kubectl
    assert create[:2] == ["kubectl", "--kubeconfig"] and create[3:5] == ["--context", "kind"]
    assert not os.path.exists(create[2])  # the kubeconfig's text lived in a temporary file
    job = create[create.index("job") + 1]
    assert create[-1] == "--from=cronjob/convex-kubernetes-drill"
    assert job.startswith("convex-kubernetes-drill-") and len(gets) == 3
    assert logs[-3:] == [f"job/{job}", "--container", "drill"]
    assert delete[-4:-2] == ["job", job]
    assert ok in said


@pytest.mark.parametrize("state, logs, reason", [
    ("Failed", "convex-backup drill failed file=s reason=\"x\"\n", "job .* \\(Failed\\): .*x"),
    ("Complete", "", "without a result line"),
])
@pytest.mark.usefixtures("kubectl_on_path")
def test_a_failed_or_silent_job_is_a_failed_drill_and_still_deleted(state, logs, reason):
    run = Runner(config_json("kubernetes"), job=[state], logs=logs)
    with pytest.raises(drill.DrillError, match=reason):
        drill.drill("kubernetes", None, run=run, say=lambda _: None)
    assert run.calls[-1][0][-5:-2] == ["delete", "job", run.calls[-1][0][-3]]


def test_kubernetes_refuses_a_local_file(tmp_path):
    run = Runner(config_json("kubernetes"))
    with pytest.raises(drill.DrillError, match="drop --file"):
        drill.drill("kubernetes", snapshot(tmp_path / "s.zip"), run=run, say=lambda _: None)


def test_job_states():
    assert drill_kubernetes.job_state('{"status": {}}') == ""
    assert drill_kubernetes.job_state("not json") == ""
    assert drill_kubernetes.job_state(json.dumps({"status": {"conditions": [
        {"type": "SuccessCriteriaMet", "status": "True"},
        {"type": "Complete", "status": "True"}]}})) == "Complete"


@pytest.mark.integration
def test_a_drill_on_a_real_engine_with_the_stand_in_backend(tmp_path, monkeypatch):
    """The whole drill against the local Docker engine and the stand-in backend image
    (tests/standins/build.sh): a throwaway backend started, the snapshot imported, exported
    again and compared, the container removed. Opt-in, as the other real-engine tests."""
    image = f"ghcr.io/get-convex/convex-backend:{DEFAULT_VERSION}"
    if os.environ.get("CONVEX_SELFHOST_INTEGRATION") != "1" or not shutil.which("docker") or \
            subprocess.run(["docker", "image", "inspect", image],
                           capture_output=True).returncode != 0:
        pytest.skip(f"needs CONVEX_SELFHOST_INTEGRATION=1, a Docker engine and {image} "
                    "(tests/standins/build.sh)")
    config = config_json("dev")
    monkeypatch.setattr(drill, "stack_config", lambda stack, run: json.loads(config))
    # The stand-in keeps imported tables, not stored files: a snapshot with a file shows
    # the drill catching a file the restored deployment lost.
    path = tmp_path / "snapshot-20261201T030000Z.zip"
    path.write_bytes(snapshot_zip())
    with pytest.raises(drill.DrillError, match="'files': 0} after the import, the snapshot "
                                               "{'tables': 1, 'documents': 50, 'files': 1}"):
        drill.drill("dev", path, say=print, timeout=60)
    tables_only = tmp_path / "snapshot-20261202T030000Z.zip"
    with zipfile.ZipFile(path) as full, zipfile.ZipFile(tables_only, "w") as out:
        for name in full.namelist():
            if not name.startswith("_storage/"):
                out.writestr(name, full.read(name))
    counts = drill.drill("dev", tables_only, say=print, timeout=60)
    assert counts == {"tables": 1, "documents": 50, "files": 0}
    left = subprocess.run(["docker", "ps", "-a", "--filter", "label=convex-selfhost.role=drill",
                           "-q"], capture_output=True, text=True).stdout.split()
    assert left == []

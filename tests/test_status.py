"""ops/status.py: what ./status.sh reports per deployment, from stand-in commands."""

import datetime as dt
import io
import json
import subprocess

import pytest
from harness import config_json

from components.releases import DEFAULT_VERSION
from ops import status

KEY = "convex-dev|01" + "ab" * 40
IMAGE_ID = "sha256:" + "1" * 64


def state(containers, image_name=f"ghcr.io/get-convex/convex-backend:{DEFAULT_VERSION}"):
    resources = [{"type": status.IMAGE_TYPE,
                  "outputs": {"name": image_name, "imageId": IMAGE_ID}}]
    for name, role, deployment in containers:
        resources.append({"type": status.CONTAINER_TYPE, "outputs": {
            "name": name, "image": IMAGE_ID, "labels": [
                {"label": "convex-selfhost.deployment", "value": deployment},
                {"label": "convex-selfhost.role", "value": role}]}})
    return {"deployment": {"resources": resources}}


def healthy(image=IMAGE_ID, health="healthy", running=True):
    value = {"Image": image, "State": {"Running": running, "Status":
                                       "running" if running else "exited", "ExitCode": 0}}
    if health:
        value["State"]["Health"] = {"Status": health, "Log": [{"Output": "curl: (7) refused"}]}
    return [value]


class Fake:
    def __init__(self, outputs, exported, inspected, version=""):
        self.outputs, self.exported, self.inspected = outputs, exported, inspected
        self.version = version
        self.calls = []

    def __call__(self, argv, timeout):
        self.calls.append(list(argv))
        assert timeout > 0
        ok = lambda out: subprocess.CompletedProcess(argv, 0, out, "")  # noqa: E731
        if argv[:3] == ["pulumi", "stack", "output"]:
            return ok(json.dumps(self.outputs))
        if argv[:3] == ["pulumi", "stack", "export"]:
            return ok(json.dumps(self.exported))
        if argv[:3] == ["pulumi", "config", "get"]:
            if argv[3] == "convex-selfhost:version" and self.version:
                return ok(self.version + "\n")
            if argv[3] == "convex-selfhost:target" and getattr(self, "target", ""):
                return ok(self.target + "\n")
            return subprocess.CompletedProcess(argv, 255, "", "not found")
        if argv[0] == "docker":
            name = argv[-1]
            if name in self.inspected:
                return ok(json.dumps(self.inspected[name]))
            return subprocess.CompletedProcess(argv, 1, "[]", f"Error: No such container: {name}")
        raise AssertionError(argv)


class FakeBackend:
    answers = {"/version": (200, "standin"), "/api/check_admin_key": (200, "")}

    def __init__(self, url, key):
        assert key == KEY
        self.url = url

    def get(self, path, with_key):
        assert with_key == (path == "/api/check_admin_key")
        return self.answers[path]


SINGLE = {"instanceName": "convex-dev", "backendUrl": "http://127.0.0.1:3210", "adminKey": KEY}
CONTAINERS = [("convex-dev-backend", "backend", "convex-dev"),
              ("convex-dev-dashboard", "dashboard", "convex-dev")]


def run_status(fake, backend=FakeBackend):
    out = io.StringIO()
    code = status.status("dev", run=fake, backend_type=backend, out=out)
    return code, out.getvalue()


def test_a_healthy_deployment_passes_every_check_and_never_prints_the_key():
    fake = Fake(SINGLE, state(CONTAINERS), {"convex-dev-backend": healthy(),
                                            "convex-dev-dashboard": healthy()})
    code, text = run_status(fake)
    assert code == 0, text
    assert text.splitlines() == [
        "convex-dev:",
        "  ok    backend convex-dev-backend: running, healthy, the stack's image",
        "  ok    dashboard convex-dev-dashboard: running, healthy, the stack's image",
        f"  ok    Convex {DEFAULT_VERSION[:12]}, the version the stack pins",
        "  ok    backend at http://127.0.0.1:3210 answers",
        "  ok    the stack's admin key is accepted",
        "stack 'dev': all checks passed"]
    assert KEY not in text and KEY[12:] not in text


@pytest.mark.parametrize("inspected,expected", [
    ({}, "backend convex-dev-backend: missing (removed by hand?)"),
    ({"convex-dev-backend": healthy(running=False)}, "backend convex-dev-backend: not running"),
    ({"convex-dev-backend": healthy(health="unhealthy")},
     "backend convex-dev-backend: unhealthy (last probe: curl: (7) refused)"),
    ({"convex-dev-backend": healthy(image="sha256:" + "2" * 64)},
     "backend convex-dev-backend: runs image sha256:222222222222, not the stack's"),
])
def test_a_container_down_or_swapped_fails(inspected, expected):
    fake = Fake(SINGLE, state(CONTAINERS[:1]), inspected)
    code, text = run_status(fake)
    assert code == 1
    assert any(line.startswith(f"  FAIL  {expected}") for line in text.splitlines()), text
    assert text.endswith("stack 'dev': 1 check(s) failed\n")


def test_a_version_set_but_not_applied_fails():
    fake = Fake(SINGLE, state(CONTAINERS[:1]), {"convex-dev-backend": healthy()},
                version="0" * 40)
    code, text = run_status(fake)
    assert code == 1
    assert f"FAIL  the stack pins Convex 000000000000 but {DEFAULT_VERSION[:12]} is deployed" \
        in text


def test_a_refused_key_or_a_silent_backend_fails():
    class Refuses(FakeBackend):
        answers = {"/version": (200, "x"), "/api/check_admin_key": (401, f"bad key {KEY}")}

    fake = Fake(SINGLE, state(CONTAINERS[:1]), {"convex-dev-backend": healthy()})
    code, text = run_status(fake, Refuses)
    assert code == 1 and "FAIL  the stack's admin key is refused (401)" in text
    assert KEY not in text

    class Silent(FakeBackend):
        answers = {"/version": (0, "Connection refused")}

    code, text = run_status(fake, Silent)
    assert code == 1 and "does not answer /version (Connection refused)" in text


def test_every_deployment_of_a_multi_deployment_stack_is_checked():
    outputs = {"instanceName": {"a": "convex-dev-a", "b": "convex-dev-b"},
               "backendUrl": {"a": "http://127.0.0.1:3210", "b": "http://127.0.0.1:3310"},
               "adminKey": {"a": KEY, "b": KEY}}
    fake = Fake(outputs, state([("convex-dev-a-backend", "backend", "convex-dev-a"),
                                ("convex-dev-b-backend", "backend", "convex-dev-b")]),
                {"convex-dev-a-backend": healthy()})
    code, text = run_status(fake)
    assert code == 1
    assert "convex-dev-a:\n  ok    backend convex-dev-a-backend" in text
    assert "convex-dev-b:\n  FAIL  backend convex-dev-b-backend: missing" in text


def test_a_stack_that_cannot_be_read_is_exit_2(monkeypatch, capsys):
    def fails(argv, timeout):
        return subprocess.CompletedProcess(argv, 255, "", "error: no stack named 'nope' found")

    fake = Fake({}, state([]), {})
    with pytest.raises(status.StatusError, match=r"has no deployment outputs.*\./up\.sh dev"):
        status.status("dev", run=fake, backend_type=FakeBackend, out=io.StringIO())
    monkeypatch.setattr(status.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(status, "status", lambda stack: status.read_stack(stack, fails))
    assert status.main(["nope"]) == 2
    assert "cannot read the outputs of stack 'nope': error: no stack named 'nope' found" \
        in capsys.readouterr().err


HOST = {"target": "host", "hostAddress": "convex-host.example.com", "sshUser": "deploy",
        "sshHostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExample"
                      "ExampleExa", "backendBinaryUrl": "https://example.com/b.zip",
        "backendBinarySha256": "0" * 64, "dashboard": False}
RECENT = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class HostFake(Fake):
    """Also answers `pulumi config --json` with a host stack, and ssh with REMOTE."""

    def __init__(self, remote, code=0, backups=True):
        super().__init__(SINGLE, state([]), {})
        self.target, self.remote, self.code = "host", remote, code
        extra = {"backupSchedule": "0 3 * * *"} if backups else {}
        self.config = config_json(None, {**HOST, **extra}, {"sshPrivateKey": "-----BEGIN "
                                                             "OPENSSH PRIVATE KEY-----\nx"})

    def __call__(self, argv, timeout):
        if argv[:3] == ["pulumi", "config", "--json"]:
            self.calls.append(list(argv))
            return subprocess.CompletedProcess(argv, 0, self.config, "")
        if argv[0] == "ssh":
            self.calls.append(list(argv))
            return subprocess.CompletedProcess(argv, self.code, self.remote,
                                               "Host key verification failed.")
        return super().__call__(argv, timeout)


def test_a_host_target_stack_is_checked_over_ssh_and_through_its_backend():
    fake = HostFake(f"unit=active\ntimer=active\nlast=Sat 2026-12-05 03:00:00 UTC\n"
                    f"next=Sun 2026-12-06 03:00:00 UTC\nresult=success\n"
                    f"health=convex-backup health ok: last={RECENT} file=snapshot-x.zip\n")
    code, text = run_status(fake)
    assert code == 0, text
    assert "  ok    convex-dev.service is active on convex-host.example.com" in text
    assert "  ok    convex-dev-backup.timer is active (last Sat 2026-12-05 03:00:00 UTC, " \
           "next Sun 2026-12-06 03:00:00 UTC)" in text
    assert f"  ok    backups: health ok: last={RECENT} file=snapshot-x.zip" in text
    (ssh,) = [c for c in fake.calls if c[0] == "ssh"]
    assert "StrictHostKeyChecking=yes" in ssh and ssh[-2:-1] == ["convex-host.example.com"]
    assert ssh[-1].startswith("sudo -n bash -c ")
    assert not [c for c in fake.calls if c[0] == "docker"]


def test_a_failed_unit_a_failed_backup_and_an_overdue_one_fail():
    code, text = run_status(HostFake("unit=failed\ntimer=inactive\nresult=exit-code\n"
                                     "health=convex-backup health failed: last=x reason=\"y\"\n"))
    assert code == 1
    assert "FAIL  convex-dev.service is failed on convex-host.example.com" in text
    assert "FAIL  convex-dev-backup.timer is inactive: no backups are scheduled" in text
    assert "FAIL  the last backup failed (exit-code)" in text
    old = "2026-11-01T03:00:00+00:00"
    code, text = run_status(HostFake(f"unit=active\ntimer=active\nresult=success\n"
                                     f"health=convex-backup health ok: last={old} file=s\n"))
    assert code == 1 and "FAIL  backups: no successful run since the last one; one was due " \
                         "by 2026-11-03T03:35:00+00:00 (cron 0 3 * * *)" in text


def test_a_host_that_cannot_be_reached_fails_and_no_backups_means_no_backup_checks():
    code, text = run_status(HostFake("", code=255))
    assert code == 1 and "FAIL  cannot read the units on convex-host.example.com over SSH: " \
                         "Host key verification failed." in text
    code, text = run_status(HostFake("unit=active\n", backups=False))
    assert code == 0 and "backup" not in text


@pytest.fixture
def kubectl_on_path(monkeypatch):
    from ops import status_kubernetes
    monkeypatch.setattr(status_kubernetes.shutil, "which", lambda name: f"/usr/bin/{name}")


class ClusterFake(Fake):
    """A kubernetes stack: `pulumi config --json`, and kubectl answering from OBJECTS."""

    def __init__(self, objects, backups=True):
        super().__init__(SINGLE, state([]), {})
        self.target, self.objects = "kubernetes", objects
        self.config = config_json("kubernetes", None if backups else {"backupSchedule": None})

    def __call__(self, argv, timeout):
        if argv[:3] == ["pulumi", "config", "--json"]:
            self.calls.append(list(argv))
            return subprocess.CompletedProcess(argv, 0, self.config, "")
        if argv[0] == "kubectl":
            self.calls.append(list(argv))
            kind, name = argv[argv.index("get") + 1], argv[argv.index("get") + 2]
            found = self.objects.get(kind if kind == "jobs" else f"{kind}/{name}")
            if found is None:
                return subprocess.CompletedProcess(argv, 1, "", f'Error from server (NotFound): '
                                                   f'{kind} "{name}" not found')
            return subprocess.CompletedProcess(argv, 0, json.dumps(found), "")
        return super().__call__(argv, timeout)


def cluster(ready=1, success="", created="2026-12-01T00:00:00Z", suspended=False, jobs=()):
    return {"statefulset/convex-dev-backend": {"status": {"readyReplicas": ready}},
            "cronjob/convex-dev-backup": {
                "metadata": {"creationTimestamp": created}, "spec": {"suspend": suspended},
                "status": {"lastSuccessfulTime": success} if success else {}},
            "jobs": {"items": [{"metadata": {"name": name, "creationTimestamp": when,
                                             "ownerReferences": [{"kind": "CronJob",
                                                                  "name": "convex-dev-backup"}]},
                                "status": {"conditions": [{"type": state, "status": "True"}]}}
                               for name, when, state in jobs]}}


@pytest.mark.usefixtures("kubectl_on_path")
def test_a_kubernetes_stack_is_checked_with_kubectl_and_through_its_backend():
    recent = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    fake = ClusterFake(cluster(success=recent, jobs=[("b-1", recent, "Complete")]))
    code, text = run_status(fake)
    assert code == 0, text
    assert "  ok    StatefulSet convex-dev-backend has its replica ready in " \
           "convex-kubernetes" in text
    assert f"  ok    backups: CronJob convex-dev-backup, last success {recent}" in text
    kubectl = [c for c in fake.calls if c[0] == "kubectl"]
    assert kubectl[0][:3] == ["kubectl", "--namespace", "convex-kubernetes"]
    assert not [c for c in fake.calls if c[0] == "docker"]


@pytest.mark.usefixtures("kubectl_on_path")
def test_a_cluster_without_a_ready_replica_a_failed_job_or_a_late_backup_fails():
    code, text = run_status(ClusterFake(cluster(ready=0, suspended=True, jobs=[
        ("b-1", "2026-12-01T03:00:00Z", "Complete"), ("b-2", "2026-12-02T03:00:00Z", "Failed")])))
    assert code == 1
    assert "FAIL  StatefulSet convex-dev-backend has 0 ready replica(s)" in text
    assert "FAIL  CronJob convex-dev-backup is suspended" in text
    assert "FAIL  the last backup Job b-2 failed (`kubectl logs job/b-2 -n " \
           "convex-kubernetes`)" in text
    assert "FAIL  backups: no successful run since 2026-12-01T00:00:00Z; one was due by " \
           "2026-12-02T03:35:00+00:00 (cron 0 3 * * *)" in text
    code, text = run_status(ClusterFake({}))
    assert code == 1 and "cannot read StatefulSet convex-dev-backend in convex-kubernetes: " \
                         "Error from server (NotFound)" in text
    code, text = run_status(ClusterFake(cluster(), backups=False))
    assert code == 0 and "backup" not in text


def test_without_kubectl_the_cluster_check_says_so(monkeypatch):
    from ops import status_kubernetes
    monkeypatch.setattr(status_kubernetes.shutil, "which", lambda name: None)
    code, text = run_status(ClusterFake(cluster()))
    assert code == 1 and "FAIL  kubectl is not on PATH" in text


def test_a_container_docker_has_not_probed_yet_is_checked_by_its_own_healthcheck():
    """Below API 1.44 Docker's first probe comes one interval after a start; `up` no longer
    waits for it, so status runs the container's healthcheck test itself."""
    seen = {"State": {"Running": True, "Health": {"Status": "starting", "Log": []}},
            "Config": {"Healthcheck": {"Test": ["CMD-SHELL",
                                                "curl -f http://localhost:3210/version"]}},
            "Image": "sha256:abc"}
    want = status.Expected(name="convex-dev-backend", image="sha256:abc",
                           deployment="convex-dev", role="backend")
    calls, codes = [], iter([0, 22])

    def run(argv, timeout):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, next(codes), "", "curl: (7) refused")

    for line in (("  ok    backend convex-dev-backend: running, healthy, the "
                  "stack's image"),
                 ("  FAIL  backend convex-dev-backend: starting (its "
                  "healthcheck does not pass yet: curl: (7) refused)")):
        report = status.Report()
        status.check_container(want, seen, report, lambda name, found: status.healthcheck_passes(
            name, found, "ssh://deploy@h", run))
        assert report.lines == [line]
    assert calls[-1] == ["docker", "--host", "ssh://deploy@h", "exec", "convex-dev-backend",
                         "sh", "-c", "curl -f http://localhost:3210/version"]

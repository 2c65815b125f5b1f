"""ops/recover.py: what an interrupted `pulumi up` left behind is cleared or adopted."""

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from ops import recover
from ops.recover import RecoverError

NET = ("urn:pulumi:dev::convex-selfhost::convex:selfhost:Deployment"
       "$docker:index/network:Network::convex-dev-network")
BACKEND = ("urn:pulumi:dev::convex-selfhost::convex:selfhost:Deployment$convex:selfhost:Backend"
           "$docker:index/container:Container::convex-dev-backend-container")
SECRET = "urn:pulumi:dev::convex-selfhost::random:index/randomBytes:RandomBytes::convex-dev-secret"
ENCRYPTED = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
             "ciphertext": "v1:abc"}


def pending(urn, kind, name, op="creating"):
    return {"type": op, "resource": {"urn": urn, "type": kind, "custom": True,
                                     "inputs": {"name": name, "envs": ENCRYPTED} if name else {},
                                     "additionalSecretOutputs": ["envs"]}}


STATE = {"version": 3, "deployment": {"resources": [{"urn": "stack"}], "pending_operations": [
    pending(NET, "docker:index/network:Network", "convex-dev-net"),
    pending(BACKEND, "docker:index/container:Container", "convex-dev-backend"),
    pending(SECRET, "random:index/randomBytes:RandomBytes", ""),
    pending("urn:x::y", "docker:index/volume:Volume", "v", op="updating")]}}


class Fake:
    def __init__(self, state=STATE, existing=("convex-dev-backend",), fail=()):
        self.state, self.existing, self.fail = state, existing, fail
        self.calls, self.imported, self.modes = [], None, None

    def __call__(self, argv, timeout):
        argv = list(argv)
        self.calls.append(argv)
        assert timeout > 0
        done = lambda code=0, out="", err="": subprocess.CompletedProcess(argv, code, out, err)  # noqa: E731
        if argv[:2] == ["pulumi", "cancel"] and "cancel" in self.fail:
            return done(1, err="error: cannot cancel")
        if argv[:3] == ["pulumi", "stack", "export"]:
            return done(out=json.dumps(self.state))
        if argv[:3] == ["pulumi", "stack", "import"]:
            path = Path(argv[argv.index("--file") + 1])
            self.imported = json.loads(path.read_text())
            self.modes = (stat.S_IMODE(path.stat().st_mode),
                          stat.S_IMODE(path.parent.stat().st_mode))
            return done(1, err="error: bad state") if "import" in self.fail else done()
        if argv[:3] == ["pulumi", "config", "get"]:
            return done(out="ssh://deploy@h\n")
        if argv[0] == "docker":
            name = argv[-1]
            if name in self.existing:
                return done(out=f"id-of-{name}\n")
            return done(1, err=f"Error: No such object: {name}")
        return done()


def test_pending_creates_whose_objects_exist_are_adopted_the_rest_dropped(tmp_path):
    fake, said = Fake(), []
    recover.recover_pending("dev", fake, said.append, workdir=tmp_path)
    deployment = fake.imported["deployment"]
    adopted = deployment["resources"][-1]
    assert adopted["urn"] == BACKEND and adopted["id"] == "id-of-convex-dev-backend"
    assert adopted["outputs"] == adopted["inputs"]
    assert adopted["inputs"]["envs"] == ENCRYPTED  # secrets stay encrypted
    assert adopted["additionalSecretOutputs"] == ["envs"]
    assert [op["type"] for op in deployment["pending_operations"]] == ["updating"]
    assert fake.modes == (0o600, 0o700)
    assert list(tmp_path.iterdir()) == []  # the edited state is removed
    docker = [c for c in fake.calls if c[0] == "docker"]
    assert docker[0] == ["docker", "--host", "ssh://deploy@h", "inspect", "--type", "network",
                         "--format", "{{.Id}}", "--", "convex-dev-net"]
    assert ["pulumi", "refresh", "--yes", "--skip-preview", "--stack", "dev",
            "--target", BACKEND] in fake.calls
    assert said == [
        "recover: convex-dev-backend was created by the interrupted run; adopted it",
        "recover: convex-dev-network, convex-dev-secret had not been created; the next "
        "`pulumi up` creates them"]


def test_volumes_are_looked_up_by_name():
    item = recover.Pending("u", "docker:index/volume:Volume", "convex-dev-data")
    fake = Fake(existing=("convex-dev-data",))
    assert recover.docker_id(item, "", fake) == "id-of-convex-dev-data"
    assert fake.calls == [["docker", "inspect", "--type", "volume", "--format", "{{.Name}}",
                           "--", "convex-dev-data"]]


def test_nothing_pending_changes_nothing():
    fake = Fake(state={"deployment": {"resources": []}})
    recover.recover_pending("dev", fake, pytest.fail)
    assert [c[:3] for c in fake.calls] == [["pulumi", "stack", "export"]]


def test_an_engine_that_cannot_answer_stops_recovery_without_guessing():
    class Down(Fake):
        def __call__(self, argv, timeout):
            if argv[0] == "docker":
                return subprocess.CompletedProcess(argv, 1, "", "Cannot connect to the daemon")
            return super().__call__(argv, timeout)

    fake = Down()
    with pytest.raises(RecoverError, match="cannot ask Docker whether network convex-dev-net"):
        recover.recover_pending("dev", fake, print)
    assert fake.imported is None  # nothing dropped on a guess


def test_a_failed_state_import_says_what_to_do():
    with pytest.raises(RecoverError, match=r"error: bad state\. Run `pulumi refresh --stack dev`"):
        recover.recover_pending("dev", Fake(fail=("import",)), print)


# --- locks ---------------------------------------------------------------------------


@pytest.mark.parametrize("stack,parts", [
    ("dev", ("organization", "convex-selfhost", "dev")),
    ("acme/dev", ("acme", "convex-selfhost", "dev")),
    ("acme/other/dev", ("acme", "other", "dev"))])
def test_lock_directory_of_a_file_backend(stack, parts):
    assert recover.lock_dir("file:///srv/state", stack) == Path("/srv/state/.pulumi/locks",
                                                                 *parts)
    assert recover.lock_dir("file:///srv/state?no_tmp_dir=true", stack) == Path(
        "/srv/state/.pulumi/locks", *parts)
    assert recover.lock_dir("s3://bucket", stack) is None


def write_lock(root, pid, hostname="here", stack="dev"):
    directory = root / ".pulumi" / "locks" / "organization" / "convex-selfhost" / stack
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{pid}.json"
    path.write_text(json.dumps({"pid": pid, "username": "u", "hostname": hostname}))
    return path


def test_a_lock_of_a_dead_process_on_this_machine_is_cleared(tmp_path):
    write_lock(tmp_path, 4242)
    fake, said = Fake(), []
    recover.clear_stale_locks("dev", f"file://{tmp_path}", fake, said.append,
                              hostname="here", alive=lambda pid: False)
    assert fake.calls == [["pulumi", "cancel", "--yes", "--stack", "dev"]]
    assert said == ["recover: cleared the lock left by an interrupted `pulumi` run (pid 4242, "
                    "no longer running)"]


@pytest.mark.parametrize("hostname,alive", [("here", True), ("elsewhere", False)])
def test_a_live_or_foreign_lock_is_left_alone_and_named(tmp_path, hostname, alive):
    write_lock(tmp_path, 4242, hostname=hostname)
    fake = Fake()
    with pytest.raises(RecoverError) as refused:
        recover.clear_stale_locks("dev", f"file://{tmp_path}", fake, pytest.fail,
                                  hostname="here", alive=lambda pid: alive)
    assert f"pid 4242 on {hostname}" in str(refused.value)
    assert "pulumi cancel --yes --stack dev" in str(refused.value)
    assert fake.calls == []


def test_an_unreadable_lock_is_never_taken_for_stale(tmp_path):
    path = write_lock(tmp_path, 1)
    path.write_text("{not json")
    with pytest.raises(RecoverError, match="pid 0 on an unknown host"):
        recover.clear_stale_locks("dev", f"file://{tmp_path}", Fake(), print, hostname="here",
                                  alive=lambda pid: False)


def test_a_failed_cancel_is_reported(tmp_path):
    write_lock(tmp_path, 4242)
    with pytest.raises(RecoverError, match="could not clear the lock.*cannot cancel"):
        recover.clear_stale_locks("dev", f"file://{tmp_path}", Fake(fail=("cancel",)), print,
                                  hostname="here", alive=lambda pid: False)


def test_process_alive_knows_this_process_and_a_finished_one():
    assert recover.process_alive(os.getpid()) is True
    child = subprocess.Popen(["true"])
    child.wait()
    assert recover.process_alive(child.pid) is False
    assert recover.process_alive(0) is True  # unknown: assumed running
    zombie = subprocess.Popen(["true"])
    for _ in range(100):  # exited, not yet reaped (no wait): a zombie
        if open(f"/proc/{zombie.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.02)
    assert recover.process_alive(zombie.pid) is False
    zombie.wait()


def test_main_reports_errors_in_one_line(monkeypatch, capsys):
    def fails(stack, backend):
        raise RecoverError("stack 'dev' is locked")

    monkeypatch.setattr(recover, "recover", fails)
    assert recover.main(["dev"]) == 1
    assert capsys.readouterr().err == "recover: error: stack 'dev' is locked\n"

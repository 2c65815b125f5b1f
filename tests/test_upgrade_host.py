"""ops/upgrade_host.py and the host-target path of ops/upgrade.py: the new binary's
settings, what a preview may change, the journal over SSH with the pinned host key."""

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_upgrade import NEW, OLD, UPGRADE_LOG, FakeStack, backup_messages, upgrader

from components.settings.reader import SecretValue
from ops import upgrade, upgrade_host
from ops.upgrade import UpgradeError
from ops.upgrade_host import NewBinary, new_binary
from ops.upgrade_plan import plan

SHA = "ab" * 32
URL = "https://github.com/get-convex/convex-backend/releases/download/x/backend.zip"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


class HostStack(FakeStack):
    """A host-target stack whose preview replaces the binary's commands (and `changes`)."""

    def __init__(self, changes=()):
        super().__init__(changes)
        self.config.update({"convex-selfhost:target": "host",
                            "convex-selfhost:backendBinary": "/downloads/old-backend",
                            "convex-selfhost:backendBinarySha256": "cd" * 32})

    def preview(self, on_event):
        self.calls.append(("preview",))
        for op, kind, name in [("replace", "command:remote:CopyToRemote", "dev-upload"),
                               ("replace", "command:remote:Command", "dev-stage"),
                               ("update", "command:remote:Command", "dev-install"),
                               ("replace", "command:remote:Command", "dev-healthy"),
                               ("same", "random:index/randomBytes:RandomBytes", "s"),
                               *self.changes]:
            meta = SimpleNamespace(op=SimpleNamespace(value=op), type=kind, diffs=None,
                                   urn=f"urn:pulumi:dev::p::{kind}::{name}")
            on_event(SimpleNamespace(resource_pre_event=SimpleNamespace(metadata=meta)))


def test_no_binary_flag_means_none_and_every_bad_flag_is_named_at_once(tmp_path):
    assert new_binary(None, None, None) is None
    with pytest.raises(UpgradeError) as both:
        new_binary("http://example.com/b.zip", str(tmp_path / "missing"), "xyz")
    assert str(both.value) == (
        "pass exactly one of --binary-url (the release zip the host downloads) and --binary "
        "(a file you downloaded); --binary-url must be an https:// URL; --binary "
        f"{tmp_path / 'missing'} is not a file; --binary-sha256 must be the file's SHA-256 "
        "(64 hex characters: sha256sum < FILE). Nothing was changed.")
    with pytest.raises(UpgradeError, match="exactly one"):
        new_binary(None, None, SHA)
    assert new_binary(URL, None, SHA.upper()) == NewBinary(SHA, url=URL)


def test_the_new_binary_replaces_the_other_source():
    assert NewBinary(SHA, url=URL).config() == [
        ("backendBinaryUrl", URL), ("backendBinary", None), ("backendBinarySha256", SHA)]
    local = NewBinary(SHA, path="relative/backend").config()
    assert local[1] == ("backendBinary", str(Path("relative/backend").resolve()))
    assert local[0] == ("backendBinaryUrl", None)


def test_known_hosts_pins_the_stacks_host_key():
    assert upgrade_host.known_hosts_line("10.0.0.5", 22, HOST_KEY) == f"10.0.0.5 {HOST_KEY}\n"
    assert upgrade_host.known_hosts_line("h.example", 2222, HOST_KEY) == \
        f"[h.example]:2222 {HOST_KEY}\n"


def test_the_journal_command_as_root_and_through_sudo():
    assert upgrade_host.journal_command("convex-dev.service", 1700000000, "root") == (
        "journalctl --unit convex-dev.service --output cat --no-pager --since @1700000000")
    assert upgrade_host.journal_command("convex-dev.service", 5, "deploy").startswith(
        "sudo -n journalctl --unit convex-dev.service ")


def test_ssh_pins_the_host_key_and_keeps_the_private_key_in_a_private_file(monkeypatch):
    monkeypatch.setattr(upgrade_host.shutil, "which", lambda name: f"/usr/bin/{name}")
    host = SimpleNamespace(address="10.0.0.5", port=2222, user="deploy", host_key=HOST_KEY,
                           private_key=SecretValue("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"
                                                   "-----END OPENSSH PRIVATE KEY-----"))
    with upgrade_host.ssh_command(host) as ssh:
        argv = ssh("journalctl -u x")
        known = Path(next(arg for arg in argv if arg.startswith("UserKnownHostsFile="))
                     .split("=", 1)[1])
        identity = Path(argv[argv.index("-i") + 1])
        assert known.read_text() == f"[10.0.0.5]:2222 {HOST_KEY}\n"
        assert identity.stat().st_mode & 0o777 == 0o600
        assert identity.read_text().endswith("-----END OPENSSH PRIVATE KEY-----\n")
        assert (identity.parent.stat().st_mode & 0o077) == 0
    assert not identity.exists() and not known.exists()
    assert argv[:4] == ["ssh", "-o", "BatchMode=yes", "-o"]
    assert "StrictHostKeyChecking=yes" in argv and "GlobalKnownHostsFile=/dev/null" in argv
    assert argv[-5:] == ["-l", "deploy", "--", "10.0.0.5", "journalctl -u x"]
    assert "PRIVATE KEY" not in " ".join(argv)
    agent = SimpleNamespace(**{**vars(host), "private_key": None, "port": 22})
    with upgrade_host.ssh_command(agent) as ssh:
        assert "-i" not in ssh("true")


def test_ssh_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(upgrade_host.shutil, "which", lambda name: None)
    with pytest.raises(UpgradeError, match="ssh is not installed"):
        with upgrade_host.ssh_command(SimpleNamespace()):
            pass


def test_journal_lines_polls_over_ssh_and_yields_only_new_lines():
    journals = iter(["a\n", "a\nb\nc\n", "a\nb\nc\n"])
    seen = []

    def run(argv, timeout, **kwargs):
        seen.append(argv)
        return subprocess.CompletedProcess(argv, 0, next(journals))

    lines = upgrade_host.journal_lines(lambda command: ["ssh", "h", command],
                                       "convex-dev.service", "root", since_epoch=42, poll=0,
                                       sleep=lambda _s: None, run=run)
    assert [next(lines) for _ in range(6)] == ["a", "", "b", "c", "", ""]
    assert seen[0] == ["ssh", "h", "journalctl --unit convex-dev.service --output cat "
                                   "--no-pager --since @42"]


def test_host_upgrade_sets_version_and_binary_together_and_follows_the_units_journal(tmp_path):
    stack = HostStack()
    up, _ = upgrader(tmp_path, stack)
    up.binary = NewBinary(SHA, url=URL)
    up.execute("in-place")
    assert up.followed == ["convex-dev.service"]
    assert stack.calls == [("set_config", "convex-selfhost:version", NEW),
                           ("set_config", "convex-selfhost:backendBinaryUrl", URL),
                           ("remove_config", "convex-selfhost:backendBinary"),
                           ("set_config", "convex-selfhost:backendBinarySha256", SHA),
                           ("preview",), ("up",)]
    progress = [line for line in UPGRADE_LOG.splitlines()
                if "Executing Migration" in line or "Migrated " in line]
    assert up.log.messages == [
        plan(OLD, NEW).describe("in-place"), *backup_messages(up),
        f"$ pulumi config set convex-selfhost:version {NEW}",
        f"$ pulumi config set convex-selfhost:backendBinaryUrl {URL}",
        "$ pulumi config rm convex-selfhost:backendBinary",
        f"$ pulumi config set convex-selfhost:backendBinarySha256 {SHA}",
        "preview: only the binary's stage, install and health steps change; applying",
        "$ pulumi up --stack dev", "pulumi up done",
        "waiting for migrations (target database version 128)", *progress,
        "migrations done: database at version 128", "the backend accepts the admin key",
        f"upgraded dev to {NEW[:12]}; backup kept in {up.backup_dir}"]
    # The rollback puts every setting back, the removed source included.
    rollback = up.rollback_text()
    for part in (f"pulumi config set convex-selfhost:version {OLD} --stack dev",
                 "pulumi config rm convex-selfhost:backendBinaryUrl --stack dev",
                 "pulumi config set convex-selfhost:backendBinary /downloads/old-backend",
                 f"pulumi config set convex-selfhost:backendBinarySha256 {'cd' * 32}"):
        assert part in rollback


@pytest.mark.parametrize("change, shown", [
    (("delete", "command:remote:Command", "dev-install"),
     "delete dev-install (command:remote:Command)"),
    (("replace", "random:index/randomBytes:RandomBytes", "dev-instance-secret"),
     "replace dev-instance-secret (random:index/randomBytes:RandomBytes)"),
    (("replace", "docker:index/container:Container", "c"),
     "replace c (docker:index/container:Container)"),
])
def test_a_host_preview_that_removes_or_touches_more_is_refused_and_reset(tmp_path, change,
                                                                          shown):
    stack = HostStack(changes=[change])
    up, _ = upgrader(tmp_path, stack)
    up.binary = NewBinary(SHA, path=__file__)
    with pytest.raises(UpgradeError) as refused:
        up.execute("in-place")
    assert str(refused.value).startswith(
        "the preview would change more than the binary's stage, install and health steps: "
        f"{shown}. Nothing was applied; settings reset.")
    assert ("up",) not in stack.calls
    assert stack.config["convex-selfhost:version"] == OLD
    assert stack.config["convex-selfhost:backendBinary"] == "/downloads/old-backend"
    assert "convex-selfhost:backendBinaryUrl" not in stack.config


@pytest.mark.parametrize("host, binary, mode, message", [
    (True, None, "in-place", "on the host target pass the new release's binary"),
    (True, NewBinary(SHA, url=URL), "export-import", "only --mode in-place"),
    (False, NewBinary(SHA, url=URL), "in-place", "are for host-target stacks"),
])
def test_the_target_decides_which_flags_an_upgrade_needs(tmp_path, host, binary, mode,
                                                         message):
    stack = HostStack() if host else FakeStack()
    up, _ = upgrader(tmp_path, stack)
    up.binary = binary
    with pytest.raises(UpgradeError, match=message):
        up.execute(mode)
    assert stack.calls == [] and not (tmp_path / "backup" / "snapshot.zip").exists()


def test_host_settings_come_from_the_programs_own_reading(tmp_path):
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
    config = {f"convex-selfhost:{k}": SimpleNamespace(value=v, secret=k == "sshPrivateKey")
              for k, v in {"target": "host", "hostAddress": "10.0.0.5", "sshPort": "2222",
                           "sshHostKey": HOST_KEY, "sshPrivateKey": key,
                           "backendBinaryUrl": URL, "backendBinarySha256": SHA,
                           "dashboard": "false"}.items()}
    host = upgrade_host.host_settings("host", config)
    assert (host.address, host.port, host.user) == ("10.0.0.5", 2222, "root")
    assert host.private_key.reveal() == key
    config["convex-selfhost:sshHostKey"] = SimpleNamespace(value="nonsense", secret=False)
    with pytest.raises(UpgradeError) as bad:
        upgrade_host.host_settings("host", config)
    assert "sshHostKey" in str(bad.value) and "abc" not in str(bad.value)


def test_run_checks_the_binary_flags_before_anything_runs(tmp_path, capsys):
    code = upgrade.main(["run", "--stack", "host", "--to", NEW, "--binary-url",
                         "http://x/y.zip", "--binary-sha256", "12", "--backup-dir",
                         str(tmp_path / "b")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --binary-url must be an https:// URL; --binary-sha256 must")
    assert not (tmp_path / "b").exists()

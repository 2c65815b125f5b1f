"""The host target under the mock engine: what reaches the host, in which order, and what
stays secret. The real run against a systemd test host is tests/test_host_integration.py."""

import base64
import hashlib
import re
import shlex

import pytest
from harness import REPO, SAMPLE_SECRET, evaluate, is_secret_value

from components.host import unit

PRIVATE_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n"
               "-----END OPENSSH PRIVATE KEY-----")
DATABASE_URL = "postgres://convex:db-pa55word@db.internal:5432"


def commands(run):
    return {r.name.rsplit("-", 1)[-1]: r for r in run.resources
            if r.type == "command:remote:Command"}


def script(command_line: str) -> str:
    """The bash script inside `bash -c '...'` (or `sudo -n bash -c '...'`)."""
    return shlex.split(command_line)[-1]


def unit_text(install_script: str) -> str:
    b64 = re.search(r"echo (\S+) \| base64 -d > /etc/systemd/system/", install_script).group(1)
    return base64.b64decode(b64).decode()


def env_text(install_script: str) -> str:
    b64 = re.search(r"echo (\S+) \| base64 -d > /etc/convex-selfhost/", install_script).group(1)
    return base64.b64decode(b64).decode()


def test_the_example_stack_stages_installs_and_waits_in_order():
    run = evaluate("host")
    steps = commands(run)
    assert set(steps) == {"stage", "install", "healthy"}
    assert steps["stage"].urn in steps["install"].dependencies
    assert steps["install"].urn in steps["healthy"].dependencies
    for step in steps.values():
        assert {"stdout", "stderr"} <= set(step.additional_secret_outputs)
        assert is_secret_value(step.raw["connection"])
        connection = step.inputs["connection"]
        assert connection["hostKey"].startswith("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5")
        assert (connection["host"], connection["port"], connection["user"]) == (
            "convex-host.example.com", 22, "root")
    stage = script(steps["stage"].inputs["create"])
    assert "curl -fsSL --proto =https --max-time 600" in stage
    assert "sha256sum -c --quiet --strict" in stage
    # Outputs: the same names as the Docker target, secrets secret, no dashboard.
    assert set(run.outputs) == {"backendUrl", "siteUrl", "dashboardUrl", "instanceName",
                                "instanceSecret", "adminKey", "readOnlyAdminKey", "envLocal"}
    assert run.secret_outputs == {"instanceSecret", "adminKey", "readOnlyAdminKey", "envLocal"}
    assert run.outputs["dashboardUrl"] is None
    assert run.outputs["adminKey"].startswith("convex-host|")


def test_the_unit_runs_the_binary_hardened_with_the_secret_only_from_its_environment_file():
    run = evaluate("host", {"memoryLimitMb": 2048, "cpus": "1.5", "rustLog": "debug"},
                   {"instanceSecret": SAMPLE_SECRET})
    install = commands(run)["install"]
    assert install.inputs["create"] == install.inputs["update"] == "bash -s"
    text = unit_text(install.inputs["stdin"])
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert exec_start.startswith("ExecStart=/opt/convex-selfhost/convex-host/convex-local-backend ")
    assert '"--instance-secret" ${INSTANCE_SECRET}' in exec_start
    assert SAMPLE_SECRET not in text
    for line in ("DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "PrivateTmp=yes", "MemoryMax=2048M", "CPUQuota=150%", "Restart=always",
                 "EnvironmentFile=/etc/convex-selfhost/convex-host.env",
                 "StateDirectory=convex-selfhost/convex-host", "KillSignal=SIGINT"):
        assert line in text.splitlines(), line
    # The script, with the environment file, travels on stdin: a secret.
    assert is_secret_value(install.raw["stdin"])
    env = env_text(install.inputs["stdin"])
    assert f'INSTANCE_SECRET="{SAMPLE_SECRET}"' in env and 'RUST_LOG="debug"' in env
    delete = script(install.inputs["delete"])
    assert ("systemctl disable --now --quiet convex-host-backup.timer "
            "convex-host-backup.service convex-host.service") in delete
    assert "/etc/systemd/system/convex-host-backup.timer" in delete
    assert "/var/lib" not in delete  # the data directory stays


def test_an_external_database_is_a_flag_and_a_secret_environment_entry():
    run = evaluate("host", {}, {"databaseUrl": DATABASE_URL})
    install = commands(run)["install"]
    text = unit_text(install.inputs["stdin"])
    assert '"--db" "postgres-v5" "--local-storage" "storage" ${POSTGRES_URL}' in text
    assert f'POSTGRES_URL="{DATABASE_URL}"' in env_text(install.inputs["stdin"])
    assert DATABASE_URL not in text


@pytest.mark.parametrize("value,quoted", [
    ("a%20b$x", '"a%%20b$$x"'), ('say "hi"', '"say \\"hi\\""'), ("back\\slash", '"back\\\\slash"'),
    ("${INSTANCE_SECRET}", "${INSTANCE_SECRET}"), ("${A B}", '"$${A B}"'), ("-x y", '"-x y"')])
def test_values_cannot_break_out_of_a_unit_argument(value, quoted):
    # The settings refuse such values in origins and names; the unit quotes them anyway.
    assert unit._argument(value) == quoted


def test_environment_file_values_are_quoted_for_systemd():
    assert unit.env_file([("A", 'x"y\\z'), ("B", "$HOME")]) == (
        "# Written by convex-selfhost; secrets: mode 600, root only.\n"
        'A="x\\"y\\\\z"\nB="$HOME"\n')


def test_a_local_binary_is_uploaded_by_a_non_root_user_and_checked_on_the_host(tmp_path):
    binary = tmp_path / "convex-local-backend"
    binary.write_bytes(b"stand-in")
    sha = hashlib.sha256(b"stand-in").hexdigest()
    run = evaluate("host", {"backendBinaryUrl": "", "backendBinary": str(binary),
                            "backendBinarySha256": sha, "sshUser": "deploy"},
                   {"sshPrivateKey": PRIVATE_KEY})
    uploads = [r for r in run.resources if r.type == "command:remote:CopyToRemote"]
    assert len(uploads) == 1
    upload = uploads[0]
    assert upload.inputs["remotePath"] == (
        f"/var/lib/convex-selfhost-stage/convex-host-{sha[:16]}.download")
    steps = commands(run)
    assert upload.urn in steps["stage"].dependencies
    assert steps["stage"].inputs["create"].startswith("sudo -n bash -c ")
    assert "chown deploy /var/lib/convex-selfhost-stage" in steps["dir"].inputs["create"]
    assert is_secret_value(steps["install"].raw["connection"])
    assert steps["install"].inputs["connection"]["privateKey"].startswith("-----BEGIN")


@pytest.mark.parametrize("overrides", [{"deployments": ["a", "b"], "instanceName": "shop"}])
def test_each_deployment_gets_its_own_unit_and_ports(overrides):
    run = evaluate("host", overrides)
    installs = [r for r in run.resources if r.name.endswith("-install")]
    units = sorted(re.search(r"systemctl restart (\S+)", r.inputs["stdin"]).group(1)
                   for r in installs)
    assert units == ["convex-shop-a.service", "convex-shop-b.service"]
    assert run.outputs["backendUrl"] == {"a": "http://127.0.0.1:3210",
                                         "b": "http://127.0.0.1:3220"}


def test_unit_names():
    class Spec:
        instance_name = "convex-prod"

    assert unit.unit_name(Spec) == "convex-prod.service"
    Spec.instance_name = "shop"
    assert unit.unit_name(Spec) == "convex-shop.service"


def test_scheduled_backups_run_the_backup_client_from_a_timer():
    run = evaluate("host", {"backupSchedule": "15 3 * * *", "backupKeep": 5},
                   {"instanceSecret": SAMPLE_SECRET})
    stdin = commands(run)["install"].inputs["stdin"]
    units = dict((name, base64.b64decode(b64).decode()) for b64, name in
                 re.findall(r"echo (\S+) \| base64 -d > /etc/systemd/system/(\S+)\.new", stdin))
    assert set(units) == {"convex-host.service", "convex-host-backup.service",
                          "convex-host-backup.timer"}
    backup, timer = units["convex-host-backup.service"], units["convex-host-backup.timer"]
    exec_start = next(line for line in backup.splitlines() if line.startswith("ExecStart="))
    assert exec_start == (
        'ExecStart=/usr/bin/python3 "/opt/convex-selfhost/convex-host/convex_backup.py" '
        '"once" "--url" "http://127.0.0.1:3210" "--dest" '
        '%S/convex-selfhost-backups/convex-host "--keep" "5" "--timeout" "1800"')
    assert "Type=oneshot" in backup and "TimeoutStartSec=2100" in backup
    assert "[Install]" not in backup  # only the timer starts it
    assert "OnCalendar=*-*-* 03:15:00 UTC\n" in timer and "Persistent=yes" in timer
    assert "Unit=convex-host-backup.service" in timer and "WantedBy=timers.target" in timer
    assert stdin.index("systemctl enable --quiet convex-host-backup.timer") > \
        stdin.index("/etc/systemd/system/convex-host-backup.timer")
    assert "EnvironmentFile=/etc/convex-selfhost/convex-host-backup.env" in backup
    envs = [base64.b64decode(b64).decode() for b64 in
            re.findall(r"echo (\S+) \| base64 -d > /etc/convex-selfhost/", stdin)]
    assert any(env.startswith("# Written") and "CONVEX_SELF_HOSTED_ADMIN_KEY=\"convex-host|01"
               in env for env in envs)
    # The client itself is uploaded byte for byte.
    client = re.search(r"echo (\S+) \| base64 -d > /opt/convex-selfhost/convex-host/"
                       r"convex_backup.py.new", stdin).group(1)
    assert base64.b64decode(client) == (REPO / "ops" / "backup.py").read_bytes()
    assert run.outputs["adminKey"] not in str(commands(run)["install"].inputs["create"])


def test_without_a_schedule_a_former_backup_unit_is_removed():
    stdin = commands(evaluate("host"))["install"].inputs["stdin"]
    assert ("systemctl disable --now --quiet convex-host-backup.timer "
            "convex-host-backup.service") in stdin
    assert "rm -f /etc/systemd/system/convex-host-backup.service " \
        "/etc/systemd/system/convex-host-backup.timer" in stdin


@pytest.mark.parametrize("cron, expected", [
    ("15 3 * * *", ["*-*-* 03:15:00 UTC"]),
    ("*/15 * * * *", ["*-*-* *:00,15,30,45:00 UTC"]),
    ("* * * * *", ["*-*-* *:*:00 UTC"]),
    ("30 4 * 6-8 7", ["Sun *-06,07,08-* 04:30:00 UTC"]),
    # Both day fields restricted: cron runs on either, systemd needs both: two lines.
    ("0 3 1,15 * 1-5", ["Mon,Tue,Wed,Thu,Fri *-*-* 03:00:00 UTC", "*-*-01,15 03:00:00 UTC"]),
    # A day field starting with "*" makes cron take both together (as Vixie cron does).
    ("0 0 */10 * 0", ["Sun *-*-01,11,21,31 00:00:00 UTC"]),
])
def test_backup_schedules_as_on_calendar(cron, expected):
    assert unit.on_calendar(cron) == expected


def test_a_schedule_from_an_earlier_release_is_stopped_before_the_timer_takes_over():
    stdin = commands(evaluate("host", {"backupSchedule": "0 3 * * *"},
                              {"instanceSecret": SAMPLE_SECRET}))["install"].inputs["stdin"]
    assert ("if grep -qs '\"schedule\"' /etc/systemd/system/convex-host-backup.service; then\n"
            "  systemctl disable --now --quiet convex-host-backup.service || true") in stdin


def test_off_host_copies_on_a_host_flags_in_the_unit_secrets_in_its_env_file():
    key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    run = evaluate("host", {"backupSchedule": "15 3 * * *", "backupS3Bucket": "acme-backups",
                            "backupS3ForcePathStyle": True},
                   {"instanceSecret": SAMPLE_SECRET, "backupS3AccessKeyId": "AKIA-id",
                    "backupS3SecretAccessKey": "s3cr3t-key", "backupEncryptionKey": key})
    stdin = commands(run)["install"].inputs["stdin"]
    units = dict((name, base64.b64decode(b64).decode()) for b64, name in
                 re.findall(r"echo (\S+) \| base64 -d > /etc/systemd/system/(\S+)\.new", stdin))
    exec_start = next(line for line in units["convex-host-backup.service"].splitlines()
                      if line.startswith("ExecStart="))
    assert exec_start.endswith('"--s3-bucket" "acme-backups" "--s3-region" "us-east-1" '
                               '"--s3-prefix" "convex-host" "--s3-path-style" "--encrypt"')
    envs = [base64.b64decode(b64).decode() for b64 in
            re.findall(r"echo (\S+) \| base64 -d > /etc/convex-selfhost/", stdin)]
    backup_env = next(env for env in envs if "CONVEX_SELF_HOSTED_ADMIN_KEY" in env)
    for line in ('AWS_ACCESS_KEY_ID="AKIA-id"', 'AWS_SECRET_ACCESS_KEY="s3cr3t-key"',
                 f'CONVEX_BACKUP_ENCRYPTION_KEY="{key}"'):
        assert line in backup_env.splitlines()
    assert is_secret_value(commands(run)["install"].raw["stdin"])
    # Every module of the client goes beside it.
    for name in ("backup_offsite.py", "backup_crypto.py", "backup_s3.py", "backup_verify.py",
                 "backup_cron.py", "backup_drill.py", "backup_credentials.py"):
        assert f"/opt/convex-selfhost/convex-host/{name}.new" in stdin

"""ScheduledBackup: a backup container per deployment, from backupSchedule/backupKeep."""

from pathlib import Path

from harness import REPO, evaluate, is_secret_value
from test_settings import load, problems

from ops import backup


def test_backup_container_runs_the_uploaded_client_on_the_schedule():
    run = evaluate("staging", {"backupSchedule": "0 3 * * *", "backupKeep": 5})
    container = run.containers()["convex-staging-backup"]
    inputs = container.inputs
    assert inputs["command"] == ["python3", "/app/convex_backup.py", "schedule", "--url",
                                 "http://backend:3210", "--dest", "/backups", "--keep", "5",
                                 "--cron", "0 3 * * *"]
    # The client and the modules it imports, side by side.
    uploads = {u["file"]: u["content"] for u in inputs["uploads"]}
    assert uploads["/app/convex_backup.py"] == Path(backup.__file__).read_text()
    modules = ("backup_cron.py", "backup_verify.py", "backup_offsite.py", "backup_crypto.py",
               "backup_s3.py", "backup_drill.py", "backup_credentials.py")
    assert uploads == {f"/app/{name}": (REPO / "ops" / name).read_text() for name in modules
                       } | {"/app/convex_backup.py": Path(backup.__file__).read_text()}
    assert inputs["healthcheck"]["tests"] == ["CMD", "python3", "/app/convex_backup.py",
                                              "health", "--dest", "/backups"]
    assert inputs["networksAdvanced"][0]["name"] == "convex-staging-network"
    assert "ports" not in inputs
    # The admin key reaches it as a secret, and is the deployment's own.
    assert is_secret_value(container.raw["envs"]) and "envs" in container.additional_secret_outputs
    assert run.env("convex-staging-backup") == {
        "CONVEX_SELF_HOSTED_ADMIN_KEY": run.outputs["adminKey"]}
    volume = run.named("convex-staging-backup-data")
    assert volume.inputs["name"] == "convex-staging-backups"
    assert volume.protect and volume.retain_on_delete  # staging protects its data
    assert run.named("convex-staging-backend-healthy").urn in container.dependencies
    image = run.named("images-python")
    assert image.inputs["name"] == "python:3.12.7-slim-bookworm"


def test_no_schedule_no_backup_container():
    run = evaluate("staging")
    assert "convex-staging-backup" not in run.containers()
    assert not [r for r in run.resources if r.name == "images-python"]


def test_every_deployment_gets_its_own_backups():
    run = evaluate("preview", {"backupSchedule": "*/30 * * * *"})
    assert {"convex-preview-pr-101-backup", "convex-preview-pr-102-backup"} <= set(
        run.containers())
    assert not run.named("pr-101-backup-data").protect  # preview: unprotected


def test_bad_backup_settings_are_named():
    assert problems("dev", {"backupSchedule": "every day"}) == (
        "convex-selfhost:backupSchedule: 'every day' is not a 5-field cron expression: "
        + str(_cron_error("every day")) + '. Write it like "0 3 * * *" (03:00 UTC daily).',)
    assert problems("dev", {"backupKeep": 3}) == (
        'convex-selfhost:backupKeep: is set but backupSchedule is empty; set a schedule (e.g. '
        '"0 3 * * *" for 03:00 UTC daily) or remove it.',)
    assert problems("dev", {"backupSchedule": "0 3 * * *", "backupKeep": 0}) == (
        "convex-selfhost:backupKeep: 0 is out of range; use a number from 1 to 1000.",)
    assert problems("dev", {"backupSchedule": "0 3 * * *", "backupImage": "python"}) == (
        "convex-selfhost:backupImage: 'python' has no tag, so Docker resolves it to the moving "
        "tag latest; name an exact, pinned version, e.g. python:3.12.7-slim-bookworm.",)


def _cron_error(expr):
    try:
        backup.parse_cron(expr)
    except backup.CronError as error:
        return error
    raise AssertionError("expected a CronError")


def test_backup_container_gets_the_stacks_limits():
    run = evaluate("prod", {"backupSchedule": "0 3 * * *"})
    backup_container = run.containers()["convex-prod-backup"].inputs
    assert backup_container["memory"] == 4096 and backup_container["cpus"] == "2.0"
    labels = {entry["label"]: entry["value"] for entry in backup_container["labels"]}
    assert labels["convex-selfhost.stack"] == "prod" and labels["convex-selfhost.role"] == "backup"


def test_off_host_copies_add_flags_and_secret_credentials():
    key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    run = evaluate("staging", {"backupSchedule": "0 3 * * *", "backupS3Bucket": "acme-backups",
                               "backupS3Endpoint": "https://r2.example.com",
                               "backupS3Region": "auto", "backupS3Prefix": "convex",
                               "backupS3LockDays": 30, "backupLocal": False},
                   {"backupS3AccessKeyId": "AKIA-hunter2", "backupS3SecretAccessKey": "s3cr3t",
                    "backupEncryptionKey": key})
    container = run.containers()["convex-staging-backup"]
    assert container.inputs["command"][-12:] == [
        "--s3-bucket", "acme-backups", "--s3-region", "auto", "--s3-prefix",
        "convex/convex-staging", "--s3-endpoint", "https://r2.example.com", "--s3-lock-days",
        "30", "--encrypt", "--no-local"]
    assert is_secret_value(container.raw["envs"])
    env = run.env("convex-staging-backup")
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
            env["CONVEX_BACKUP_ENCRYPTION_KEY"]) == ("AKIA-hunter2", "s3cr3t", key)
    for secret in ("hunter2", "s3cr3t", key):
        assert secret not in " ".join(container.inputs["command"])


def test_off_host_settings_are_checked_at_once():
    found = problems("staging", {"backupSchedule": "0 3 * * *", "backupS3Bucket": "acme",
                                 "backupS3Endpoint": "ftp://x", "backupS3LockDays": -1,
                                 "backupS3Prefix": "a//b"},
                     secrets={"backupEncryptionKey": "hunter2", "backupS3AccessKeyId": "AKIA"})
    assert list(found) == [
        "convex-selfhost:backupS3Endpoint: 'ftp://x' is not an http(s) URL without a path or "
        "credentials, e.g. https://<account>.r2.cloudflarestorage.com.",
        "convex-selfhost:backupS3Prefix: 'a//b' is not a key prefix (letters, digits, "
        "/!_.*'()- and no empty or .. parts).",
        "convex-selfhost:backupS3AccessKeyId: and backupS3SecretAccessKey go together: set "
        "both with --secret, or neither (the backup client then uses the machine's role: a "
        "container role, or the instance's via IMDSv2).",
        "convex-selfhost:backupS3LockDays: -1 is out of range; use a number from 0 to 36500 "
        "days.",
        "convex-selfhost:backupEncryptionKey: is not 32 bytes in base64; make one with "
        "`openssl rand -base64 32` and keep a copy outside this stack."]
    # Neither key: the machine's role signs the uploads.
    backups = load("staging", {"backupSchedule": "0 3 * * *", "backupS3Bucket": "acme"}).backups
    assert backups.s3_bucket == "acme" and backups.s3_access_key_id is None
    assert list(problems("staging", {"backupS3Bucket": "acme"})) == [
        "convex-selfhost:backupS3Bucket: is set but backupSchedule is empty; set a schedule "
        "(e.g. \"0 3 * * *\" for 03:00 UTC daily) or remove it."]

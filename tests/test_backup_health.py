"""`convex-backup health`, the container's healthcheck (audit "Hardening II"): a scheduler
that stopped taking backups is unhealthy, and a new container is healthy until its own first
run, whatever an earlier container left on the volume."""

import datetime as dt
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from test_backup import MODULE, fake_clock, script_env

from ops import backup

KEY = "convex-self-hosted|" + "5ec2e7" * 10
UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


@pytest.fixture
def now(monkeypatch):
    """health's clock: [NOW], a test may move it (file times are real: tests set them)."""
    clock = [NOW]

    class FixedDatetime(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return clock[0] if tz is UTC else clock[0].astimezone(tz).replace(tzinfo=None)

    monkeypatch.setattr(backup.dt, "datetime", FixedDatetime)
    return clock


def plant(path: Path, content: dict, at: dt.datetime) -> None:
    path.write_text(json.dumps(content))
    os.utime(path, (at.timestamp(), at.timestamp()))


def scheduler(dest: Path, at: dt.datetime, cron="0 3 * * *", timeout=1800.0) -> None:
    plant(dest / ".scheduler.json", {"started": at.isoformat(), "cron": cron,
                                     "timeout": timeout}, at)


def run(dest: Path, at: dt.datetime, ok=True) -> None:
    content = {"ok": ok, "file": "snapshot-x.zip" if ok else None,
               "reason": None if ok else "export: HTTP 500", "finished": at.isoformat()}
    plant(dest / ".last-run.json", content, at)


def health(dest: Path, capsys) -> tuple[int, str]:
    code = backup.main(["health", "--dest", str(dest)])
    return code, capsys.readouterr().out


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_success_from_2020_is_not_healthy_when_the_scheduler_expects_more(tmp_path, capsys,
                                                                            now):
    scheduler(tmp_path, at("2020-01-01T00:00:00"))
    run(tmp_path, at("2020-01-01T03:10:00"))
    assert health(tmp_path, capsys) == (
        1, 'convex-backup health failed: last=2020-01-01T03:10:00+00:00 reason="no successful '
           'run since 2020-01-01T03:10:00+00:00; one was due by 2020-01-03T03:35:00+00:00 '
           '(cron 0 3 * * *, --timeout 1800s)"\n')


@pytest.mark.parametrize("last, healthy", [
    ("2026-11-26T03:20:00", True),   # today's run
    ("2026-11-25T03:20:00", True),   # today's run missed: the next one may still make it
    ("2026-11-24T03:20:00", False),  # two missed: due by 2026-11-26T03:35 (03:00 + 30 + 5 min)
])
def test_a_success_is_overdue_after_two_scheduled_times_and_the_timeout(tmp_path, capsys, now,
                                                                         last, healthy):
    scheduler(tmp_path, at("2026-11-01T00:00:00"))
    run(tmp_path, at(last))
    code, out = health(tmp_path, capsys)
    assert code == (0 if healthy else 1)
    if healthy:
        assert out == f"convex-backup health ok: last={at(last).isoformat()} file=snapshot-x.zip\n"


@pytest.mark.parametrize("last, clock, healthy", [
    ("2026-11-26T12:00:00", "2026-11-26T14:15:00", True),  # due 13:00, 14:00, + 10 + 5 min
    ("2026-11-26T12:00:00", "2026-11-26T14:15:01", False),
    ("2026-11-26T11:59:59", "2026-11-26T13:15:00", True),  # due 12:00, 13:00, + 10 + 5 min
    ("2026-11-26T11:59:59", "2026-11-26T13:15:01", False),
])
def test_the_margin_is_the_run_timeout_plus_five_minutes(tmp_path, capsys, now, last, clock,
                                                         healthy):
    scheduler(tmp_path, at("2026-11-01T00:00:00"), cron="0 * * * *", timeout=600)
    run(tmp_path, at(last))
    now[0] = at(clock)
    assert health(tmp_path, capsys)[0] == (0 if healthy else 1)


def test_a_new_container_is_healthy_until_its_own_first_run(tmp_path, capsys, now):
    run(tmp_path, at("2026-11-20T03:00:09"), ok=False)  # the old container's last run
    scheduler(tmp_path, at("2026-11-26T13:59:00"))  # the new one started a minute ago
    assert health(tmp_path, capsys) == (
        0, "convex-backup health ok: no run yet since the scheduler started at "
           "2026-11-26T13:59:00+00:00\n")
    run(tmp_path, at("2026-11-26T13:59:30"), ok=False)  # its own first run failed
    assert health(tmp_path, capsys) == (
        1, 'convex-backup health failed: last=2026-11-26T13:59:30+00:00 '
           'reason="export: HTTP 500"\n')
    run(tmp_path, at("2026-11-26T13:59:40"))
    assert health(tmp_path, capsys)[0] == 0


def test_a_new_container_that_never_runs_turns_unhealthy(tmp_path, capsys, now):
    run(tmp_path, at("2026-11-24T03:00:00"))  # the earlier container's last success
    scheduler(tmp_path, at("2026-11-24T03:05:00"))  # started then, and never ran since
    code, out = health(tmp_path, capsys)
    assert code == 1 and "no successful run since 2026-11-24T03:05:00+00:00" in out


@pytest.mark.parametrize("marker", ["{not json", '{"cron": "every day", "timeout": 60}',
                                    '{"cron": "0 3 * * *", "timeout": "x"}',
                                    '{"cron": "0 3 * * *", "timeout": -1}'])
def test_a_scheduler_file_without_a_schedule_only_dates_the_container(tmp_path, capsys, now,
                                                                      marker):
    (tmp_path / ".scheduler.json").write_text(marker)
    os.utime(tmp_path / ".scheduler.json", (at("2020-01-01T00:00:00").timestamp(),) * 2)
    assert health(tmp_path, capsys)[0] == 0
    run(tmp_path, at("2021-01-01T00:00:00"))
    assert health(tmp_path, capsys)[0] == 0


def test_without_a_scheduler_file_the_last_record_decides(tmp_path, capsys, now):
    run(tmp_path, at("2020-01-01T03:00:00"))
    assert health(tmp_path, capsys)[0] == 0  # `once` by hand: no schedule to be late for
    run(tmp_path, at("2026-11-26T03:00:00"), ok=False)
    assert health(tmp_path, capsys)[0] == 1


def test_the_scheduler_writes_its_schedule_when_it_starts(tmp_path, monkeypatch):
    clock = fake_clock(monkeypatch, lambda seconds: seconds)

    def run_once(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(backup, "run_once", run_once)
    monkeypatch.setattr(backup.signal, "signal", lambda *a: None)
    monkeypatch.setenv(backup.KEY_ENV, KEY)
    monkeypatch.setattr("sys.stdout", open(os.devnull, "w"))
    assert backup.main(["schedule", "--url", "http://b:3210", "--dest", str(tmp_path),
                        "--keep", "1", "--timeout", "90", "--cron", "*/5 * * * *"]) == 0
    marker = tmp_path / ".scheduler.json"
    assert json.loads(marker.read_text()) == {"started": "2026-11-26T02:59:00+00:00",
                                              "cron": "*/5 * * * *", "timeout": 90.0}
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600 and clock


def test_a_replaced_backup_container_passes_its_healthcheck(tmp_path):
    """As in the container: the old record fails, the new scheduler starts, the healthcheck
    runs `health` as a separate process."""
    failed = {"ok": False, "file": None, "reason": "boom", "finished": "2026-01-01T00:00:00"}
    plant(tmp_path / ".last-run.json", failed, dt.datetime.now(UTC) - dt.timedelta(hours=1))
    env = script_env(**{backup.KEY_ENV: KEY})
    check = [sys.executable, str(MODULE), "health", "--dest", str(tmp_path)]
    before = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
    assert before.returncode == 1
    argv = [sys.executable, str(MODULE), "schedule", "--url", "http://127.0.0.1:9", "--dest",
            str(tmp_path), "--keep", "3", "--cron", "0 3 * * *"]
    with subprocess.Popen(argv, env=env, text=True, stdout=subprocess.PIPE) as proc:
        proc.stdout.readline()
        after = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert after.returncode == 0, after.stdout
    assert after.stdout.startswith("convex-backup health ok: no run yet since the scheduler")

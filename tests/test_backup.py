"""ops/backup.py against a fake Convex export API on loopback (fake_convex_export.py)."""

import base64
import datetime as dt
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import fake_convex_export
import pytest
from fake_convex_export import snapshot_zip
from hypothesis import given, settings
from hypothesis import strategies as st
from test_backup_client import Flushes

from components.core.backups import client_files
from ops import backup

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "ops" / "backup.py"
KEY = "convex-self-hosted|" + "5ec2e7" * 10
UTC = dt.timezone.utc
OK_LINE = re.compile(
    r"convex-backup ok file=snapshot-\d{8}T\d{6}Z\.zip bytes=\d+ tables=\d+ documents=\d+ "
    r"files=\d+ kept=\d+ elapsed=\d+\.\ds")
FAILED_LINE = re.compile(r'convex-backup failed reason="[^"]+" elapsed=\d+\.\ds')


ENV = [{"name": "OPENAI_API_KEY", "value": "sk-test"},
       {"name": "JWT_PRIVATE_KEY", "value": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END"}]


class FakeConvex(fake_convex_export.FakeConvex):
    """The fake export API, plus the system query `npx convex env list` runs
    (npm-packages/convex/src/cli/lib/env.ts): {"status": "success", "value": [{name, value}]}."""

    def __init__(self, *args, env=ENV, **kwargs):
        super().__init__(*args, **kwargs)
        self.env = env

    def _query(self, body: bytes):
        if body and json.loads(body) == {"path": backup.ENV_QUERY, "args": {}, "format": "json"}:
            return 200, {"status": "success", "value": self.env, "logLines": []}, {}
        return super()._query(body)


@pytest.fixture(autouse=True)
def admin_key(monkeypatch):
    monkeypatch.setenv(backup.KEY_ENV, KEY)


def once(fake, dest, keep=3, timeout=5.0):
    return backup.main(["once", "--url", fake.url, "--dest", str(dest), "--keep", str(keep),
                        "--timeout", str(timeout), "--poll-interval", "0.01"])


def make_zip(path: Path) -> bytes:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README.md", f"old backup {path.name}")
    return path.read_bytes()


def old_backups(dest: Path, count: int) -> dict[str, bytes]:
    dest.mkdir(parents=True, exist_ok=True)
    return {name: make_zip(dest / name) for name in
            (f"snapshot-202001{day:02d}T030000Z.zip" for day in range(1, count + 1))}


def snapshots(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.glob("snapshot-*.zip"))


def last_run(dest: Path) -> dict:
    return json.loads((dest / ".last-run.json").read_text())


def health(dest: Path, capsys) -> tuple[int, str]:
    code = backup.main(["health", "--dest", str(dest)])
    return code, capsys.readouterr().out


# ---- once --------------------------------------------------------------------------------------

def test_success_writes_a_private_valid_zip_and_logs_one_ok_line(tmp_path, capsys):
    dest = tmp_path / "backups" / "prod"
    with FakeConvex(KEY) as fake:
        assert once(fake, dest) == 0
    out, err = capsys.readouterr()
    assert err == "" and len(out.splitlines()) == 1 and OK_LINE.fullmatch(out.strip())
    (name,) = snapshots(dest)
    assert f"file={name} bytes={len(fake.zip)} tables=1 documents=50 files=1 kept=1 " in out
    assert (dest / name).read_bytes() == fake.zip == snapshot_zip()
    assert zipfile.ZipFile(dest / name).testzip() is None
    assert stat.S_IMODE((dest / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert not list(dest.glob(".partial-*"))
    record = last_run(dest)
    assert record["ok"] is True and record["file"] == name and record["reason"] is None
    assert dt.datetime.fromisoformat(record["finished"]).tzinfo is not None
    # It took the export it asked for, not the older completed one, and decoded its start_ts.
    assert fake.downloads == [fake.exports[-1]["_id"]] != [fake.exports[0]["_id"]]
    assert record["export_id"] == fake.exports[-1]["_id"]
    assert record["start_ts"] == backup.decode_int64(fake.exports[-1]["start_ts"])
    assert set(fake.auth_headers) == {f"Convex {KEY}"}
    assert [p for m, p, s in fake.log if m == "POST" and "request" in p] == [
        "/api/export/request/zip?includeStorage=true"]
    assert health(dest, capsys) == (0, f"convex-backup health ok: last={record['finished']} "
                                       f"file={name}\n")


def test_retention_keeps_the_newest_n_and_nothing_else_is_touched(tmp_path, capsys):
    dest = tmp_path / "b"
    old = old_backups(dest, 5)
    (dest / "notes.txt").write_text("mine")
    (dest / ".partial-snapshot-20200101T000000Z.zip").write_bytes(b"left by a crash")
    with FakeConvex(KEY) as fake:
        assert once(fake, dest, keep=3) == 0
    kept = snapshots(dest)
    assert kept[:2] == sorted(old)[-2:] and len(kept) == 3 and kept[2] > max(old)
    assert "kept=3 " in capsys.readouterr().out
    assert (dest / "notes.txt").read_text() == "mine"
    assert not list(dest.glob(".partial-*"))
    for name in kept[:2]:
        assert (dest / name).read_bytes() == old[name]


@pytest.mark.parametrize("behaviour, reason", [
    ("fail", r"export kd7\d+export ended in state failed"),
    ("cut", r"download incomplete: got \d+ of \d+ bytes"),
    ("corrupt", r"downloaded file is not a valid zip"),
    ("stuck", r"export not completed within 0.15s \(state in_progress\)"),
    ("redirect", r"export status: HTTP 307"),  # not followed: it would carry the key along
])
def test_a_failed_run_keeps_every_previous_backup(tmp_path, capsys, behaviour, reason):
    dest = tmp_path / "b"
    old = old_backups(dest, 4)
    (dest / ".partial-snapshot-20200101T000000Z.zip").write_bytes(b"left by a crash")
    with FakeConvex(KEY, behaviour) as fake:
        assert once(fake, dest, keep=1, timeout=0.15 if behaviour == "stuck" else 5) == 1
    out, err = capsys.readouterr()
    assert err == "" and len(out.splitlines()) == 1 and FAILED_LINE.fullmatch(out.strip()), out
    assert re.search(reason, out)
    assert snapshots(dest) == sorted(old)  # keep=1 was not applied: the run failed
    assert all((dest / name).read_bytes() == data for name, data in old.items())
    assert sorted(p.name for p in dest.iterdir()) == sorted([*old, ".last-run.json"])
    record = last_run(dest)
    assert record["ok"] is False and record["file"] is None and re.search(reason, record["reason"])
    code, text = health(dest, capsys)
    assert code == 1 and text.startswith("convex-backup health failed") and "reason=" in text
    if behaviour in ("cut", "corrupt"):
        assert fake.downloads == [fake.exports[-1]["_id"]]
    assert not fake.requests_to("/elsewhere")


def test_an_export_already_running_is_waited_for(tmp_path, capsys):
    with FakeConvex(KEY, "in_progress", polls=3) as fake:
        running = fake.exports[-1]["_id"]
        assert once(fake, tmp_path) == 0
    assert OK_LINE.fullmatch(capsys.readouterr().out.strip())
    assert fake.requests_to("/api/export/request/zip")[0][2] == 400
    assert len(fake.exports) == 2 and fake.downloads == [running]
    assert last_run(tmp_path)["export_id"] == running


def test_first_export_ever_and_an_unreachable_backend(tmp_path, capsys):
    with FakeConvex(KEY, previous=False) as fake:
        assert once(fake, tmp_path / "a") == 0
        url = fake.url
    assert backup.main(["once", "--url", url, "--dest", str(tmp_path / "b"), "--keep", "1"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert OK_LINE.fullmatch(out[0]) and "cannot reach backend" in out[1]


@pytest.mark.parametrize("echo_auth", [False, True])
def test_a_wrong_admin_key_fails_without_echoing_any_key(tmp_path, capsys, monkeypatch,
                                                         echo_auth):
    wrong = "convex-self-hosted|" + "0badc0ffee" * 6
    monkeypatch.setenv(backup.KEY_ENV, wrong)
    with FakeConvex(KEY, echo_auth=echo_auth) as fake:
        assert once(fake, tmp_path) == 1
    out, err = capsys.readouterr()
    assert "HTTP 401 BadAdminKey" in out and len(out.splitlines()) == 1
    assert FAILED_LINE.fullmatch(out.strip()) and len(last_run(tmp_path)["reason"]) <= 200
    code, text = health(tmp_path, capsys)
    written = "".join(p.read_text() for p in tmp_path.iterdir())
    for secret in (wrong, wrong.split("|")[1][:12], KEY.split("|")[1][:12]):
        assert secret not in out + err + text + written
    assert code == 1 and fake.auth_headers == [f"Convex {wrong}"]
    assert ("Convex ***" in out) == echo_auth


# ---- arguments and environment -----------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["once", "--url", "http://127.0.0.1:9", "--dest", "{d}", "--keep", "1"],
    ["schedule", "--url", "http://127.0.0.1:9", "--dest", "{d}", "--keep", "1", "--cron", "@x"],
    ["restore", "--url", "http://127.0.0.1:9", "--file", "{d}/x.zip", "--yes"],
])
def test_a_missing_admin_key_exits_2_with_a_clear_message(tmp_path, capsys, monkeypatch, command):
    monkeypatch.delenv(backup.KEY_ENV)
    assert backup.main([a.replace("{d}", str(tmp_path)) for a in command]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == ("convex-backup: error: CONVEX_SELF_HOSTED_ADMIN_KEY is not set; "
                                 "it must hold the deployment's admin key\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--url", "ftp://h/"], "--url must be an http(s) URL"),
    (["--url", "backend:3210"], "--url must be an http(s) URL"),
    (["--url", "http://u:p@h:3210"], "must not hold credentials"),
    (["--url", "http://h:3210/?x=1"], "must not hold credentials, a query"),
    (["--keep", "0"], "--keep must be greater than 0"),
    (["--keep", "two"], "argument --keep: invalid int value"),
    (["--timeout", "nan"], "--timeout must be greater than 0"),
    (["--dest", "{d}/file"], "is not a usable directory"),
    (["--cron", "0 3 * *"], '--cron "0 3 * *": expected 5 fields'),
    (["--cron", "0 25 * * *"], "hour: 25 is out of range 0-23"),
])
def test_usage_errors_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "file").write_text("")
    values = {"--url": "http://127.0.0.1:9", "--dest": str(tmp_path / "d"), "--keep": "1"}
    command = "schedule" if "--cron" in args else "once"
    for flag, value in zip(args[::2], args[1::2], strict=True):
        values[flag] = value.replace("{d}", str(tmp_path))
    argv = [command, *[x for pair in values.items() for x in pair]]
    assert backup.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and message.split(": error: ")[-1] in err
    assert not (tmp_path / "d" / ".last-run.json").exists()


def test_health_without_a_run_and_with_a_broken_record(tmp_path, capsys):
    assert health(tmp_path / "none", capsys) == (0, "convex-backup health ok: no run yet\n")
    (tmp_path / ".last-run.json").write_text("{not json")
    code, text = health(tmp_path, capsys)
    assert code == 1 and "not a JSON object" in text


def test_decode_int64():
    def enc(n):
        return {"$integer": base64.b64encode(n.to_bytes(8, "little", signed=True)).decode()}
    assert backup.decode_int64(enc(1_764_000_000_123_456_789)) == 1_764_000_000_123_456_789
    assert backup.decode_int64(enc(-5)) == -5
    assert backup.decode_int64(42) == 42 and backup.decode_int64("7") == 7
    assert backup.decode_int64(None) is None
    assert backup.decode_int64({"$integer": "abc"}) is None and backup.decode_int64([1]) is None


# ---- cron --------------------------------------------------------------------------------------

NOW = dt.datetime(2026, 11, 26, 14, 0, tzinfo=UTC)  # a Thursday


@pytest.mark.parametrize("expr, when, expected", [
    ("0 3 * * *", NOW, "2026-11-27 03:00"),
    ("0 3 * * *", dt.datetime(2026, 11, 27, 3, 0, tzinfo=UTC), "2026-11-28 03:00"),
    ("*/15 * * * *", NOW, "2026-11-26 14:15"),
    ("*/15 * * * *", NOW.replace(minute=14, second=59), "2026-11-26 14:15"),
    ("*/15 * * * *", NOW.replace(minute=59, second=30), "2026-11-26 15:00"),
    ("0 0 1 * *", NOW, "2026-12-01 00:00"),
    ("0 0 1 * *", dt.datetime(2026, 12, 31, 23, 59), "2027-01-01 00:00"),
    ("30 2 * * 1-5", NOW, "2026-11-27 02:30"),
    ("30 2 * * 1-5", dt.datetime(2026, 11, 27, 3, 0, tzinfo=UTC), "2026-11-30 02:30"),
    ("0 0 * * 7", NOW, "2026-11-29 00:00"),
    ("0 0 * * 0", NOW, "2026-11-29 00:00"),
    ("0 0 13 * 5", NOW, "2026-11-27 00:00"),  # both restricted: the 13th OR a Friday
    ("0 0 13 * *", NOW, "2026-12-13 00:00"),
    ("0 0 */2 * 1", NOW, "2026-12-07 00:00"),  # day-of-month starts with *: both must match
    ("5,35 8-18/5 * 2,6 *", NOW, "2027-02-01 08:05"),
    ("0 0 29 2 *", NOW, "2028-02-29 00:00"),
    ("0 12 * * *", dt.datetime(2026, 11, 26, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
     "2026-11-27 12:00"),  # 17:30 UTC
    ("0 12 * * *", dt.datetime(2026, 11, 26, 13, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
     "2026-11-26 12:00"),  # 11:30 UTC
    ("0 0 * 2 *", dt.datetime(2026, 1, 31, 12, 0), "2026-02-01 00:00"),  # no month is skipped
    ("0 0 1 2 *", dt.datetime(2026, 1, 15, 12, 0), "2026-02-01 00:00"),
    ("1 0 1 2 *", dt.datetime(2026, 1, 15, 12, 0), "2026-02-01 00:01"),
    ("*/1 * * * *", NOW, "2026-11-26 14:01"),
])
def test_next_after(expr, when, expected):
    got = backup.parse_cron(expr).next_after(when)
    assert got.tzinfo == UTC and got.strftime("%Y-%m-%d %H:%M") == expected


@pytest.mark.parametrize("expr, field", [
    ("", "expected 5 fields"), ("* * * *", "expected 5 fields"),
    ("* * * * * *", "expected 5 fields"), ("60 * * * *", "minute: 60 is out of range 0-59"),
    ("*/0 * * * *", "minute: step '0'"), ("a * * * *", "minute: 'a' is not a number"),
    ("5-1 * * * *", "minute: range 5-1 is reversed"), ("0 24 * * *", "hour:"),
    ("0 0 0 * *", "day-of-month:"), ("0 0 * 13 *", "month:"), ("0 0 * * 8", "day-of-week:"),
    ("0 0 31 2 *", "day-of-month: no such day"), ("5/10 * * * *", "minute: a step needs"),
    ("0 0 * * mon", "day-of-week: 'mon'"), ("1,,2 * * * *", "minute: '' is not"),
    ("0 -1 * * *", "hour:"), ("0 0 * */ *", "month: step ''"),
])
def test_invalid_cron_expressions_name_the_field(expr, field):
    with pytest.raises(backup.CronError) as caught:
        backup.parse_cron(expr)
    assert isinstance(caught.value, ValueError) and field in str(caught.value)


@pytest.mark.parametrize("expr, message", [
    ("0 0 31 2 *", "day-of-month: no such day in the given month(s)"),
    ("1-2-3 * * * *", "minute: '2-3' is not a number"),
    ("*/x * * * *", "minute: step 'x' must be a number >= 1"),
])
def test_cron_errors_word_for_word(expr, message):
    with pytest.raises(backup.CronError) as caught:
        backup.parse_cron(expr)
    assert str(caught.value) == message


def test_naive_times_are_utc_whatever_the_local_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        schedule = backup.parse_cron("0 3 * * *")
        naive = schedule.next_after(dt.datetime(2026, 1, 1, 5, 0))
        aware = schedule.next_after(dt.datetime(2026, 1, 1, 5, 0, tzinfo=UTC))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert naive == aware == dt.datetime(2026, 1, 2, 3, 0, tzinfo=UTC)


def _matches(schedule, t):
    return (t.minute in schedule.minutes and t.hour in schedule.hours
            and t.month in schedule.months and schedule.day_matches(t))


@settings(max_examples=25, deadline=None)
@given(minutes=st.sets(st.integers(0, 59), min_size=1, max_size=4),
       hours=st.sets(st.integers(0, 23), min_size=1, max_size=3),
       weekdays=st.sets(st.integers(0, 7), min_size=1, max_size=3),
       start=st.datetimes(dt.datetime(2024, 1, 1), dt.datetime(2030, 1, 1)))
def test_next_after_is_the_first_matching_minute(minutes, hours, weekdays, start):
    expr = " ".join(",".join(map(str, sorted(s))) for s in (minutes, hours)) + " * * " + \
        ",".join(map(str, sorted(weekdays)))
    schedule = backup.parse_cron(expr)
    got = schedule.next_after(start)
    assert _matches(schedule, got) and got > start.replace(tzinfo=UTC)
    t = start.replace(tzinfo=UTC, second=0, microsecond=0) + dt.timedelta(minutes=1)
    while t < got:  # at most 8 days of minutes
        assert not _matches(schedule, t)
        t += dt.timedelta(minutes=1)


# ---- as a script, alone ------------------------------------------------------------------------

def script_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != backup.KEY_ENV}
    env.update(extra)
    return env


@pytest.mark.parametrize("standalone", [False, True])
def test_once_as_a_script_and_as_a_lone_file(tmp_path, standalone):
    script, cwd = MODULE, REPO
    if standalone:  # as uploaded into the container: its files, no package around them
        cwd = tmp_path / "app"
        cwd.mkdir()
        for name, text in client_files().items():
            (cwd / name).write_text(text)
        script = cwd / "convex_backup.py"
    dest = tmp_path / "backups"
    with FakeConvex(KEY) as fake:
        result = subprocess.run(
            [sys.executable, "-I", str(script), "once", "--url", fake.url + "/", "--dest",
             str(dest), "--keep", "2", "--poll-interval", "0.01"],
            cwd=cwd, env=script_env(**{backup.KEY_ENV: KEY}), capture_output=True, text=True,
            timeout=30)
    assert result.returncode == 0 and result.stderr == ""
    assert OK_LINE.fullmatch(result.stdout.strip()) and KEY not in result.stdout
    assert len(snapshots(dest)) == 1


def test_schedule_logs_the_next_run_and_stops_cleanly_on_sigterm(tmp_path):
    argv = [sys.executable, str(MODULE), "schedule", "--url", "http://127.0.0.1:9", "--dest",
            str(tmp_path), "--keep", "3", "--cron", "0 3 * * *"]
    with subprocess.Popen(argv, env=script_env(**{backup.KEY_ENV: KEY}), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert re.fullmatch(r'convex-backup next run=\d{4}-\d\d-\d\dT03:00:00Z cron="0 3 \* \* \*"\n',
                        first)
    assert proc.returncode == 0 and out == "convex-backup stopped\n" and err == ""
    bad = subprocess.run(argv[:-1] + ["0 3 * *"], env=script_env(**{backup.KEY_ENV: KEY}),
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and bad.stdout == "" and len(bad.stderr.splitlines()) == 1
    assert "Traceback" not in bad.stderr and "expected 5 fields" in bad.stderr


def fake_clock(monkeypatch, advance):
    """The scheduler's clock, from 2026-11-26 02:59 UTC: like the real datetime.now, a naive
    now() is local time (here UTC+9); time.sleep(s) moves the clock by advance(s)."""
    clock = [dt.datetime(2026, 11, 26, 2, 59, 0, tzinfo=UTC)]
    tokyo = dt.timezone(dt.timedelta(hours=9))

    class FakeDatetime(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return clock[0] if tz is UTC else clock[0].astimezone(tokyo).replace(tzinfo=None)

    def sleep(seconds):
        clock[0] += dt.timedelta(seconds=advance(seconds))

    monkeypatch.setattr(backup.dt, "datetime", FakeDatetime)
    monkeypatch.setattr(backup.time, "sleep", sleep)
    return clock


def test_a_scheduler_woken_early_sleeps_again_until_due(tmp_path, monkeypatch):
    """time.sleep may return early; the run still waits for the due minute, in UTC."""
    clock = fake_clock(monkeypatch, lambda seconds: min(seconds, 29.6))
    runs = []

    def run_once(*args):
        runs.append(clock[0])
        raise KeyboardInterrupt

    monkeypatch.setattr(backup, "run_once", run_once)
    monkeypatch.setattr(backup.signal, "signal", lambda *a: None)
    monkeypatch.setenv(backup.KEY_ENV, KEY)
    out = Flushes()
    monkeypatch.setattr("sys.stdout", out)
    assert backup.main(["schedule", "--url", "http://b:3210", "--dest", str(tmp_path),
                        "--keep", "1", "--cron", "0 3 * * *"]) == 0
    assert runs == [dt.datetime(2026, 11, 26, 3, 0, tzinfo=UTC)]
    lines = out.getvalue().splitlines(keepends=True)
    assert lines == ['convex-backup next run=2026-11-26T03:00:00Z cron="0 3 * * *"\n',
                     "convex-backup stopped\n"]
    # each line reaches `docker logs` at once, not when a buffer fills
    assert out.flushed_at == [len(lines[0]), len(lines[0]) + len(lines[1])]


def test_an_interrupted_command_exits_130(tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(backup, "run_once", interrupted)
    monkeypatch.setenv(backup.KEY_ENV, KEY)
    assert backup.main(["once", "--url", "http://b:3210", "--dest", str(tmp_path),
                        "--keep", "1"]) == 130


def test_health_of_a_failed_run_word_for_word(tmp_path, capsys):
    (tmp_path / ".last-run.json").write_text(json.dumps(
        {"ok": False, "finished": "2026-11-26T03:00:05+00:00", "reason": "export: HTTP 500"}))
    assert health(tmp_path, capsys) == (
        1, 'convex-backup health failed: last=2026-11-26T03:00:05+00:00 '
           'reason="export: HTTP 500"\n')


def test_schedule_sleeps_until_each_due_time_then_runs_once(tmp_path, monkeypatch, capsys):
    """The scheduler loop in process, on a fake clock: sleeps of at most 30 s until due."""
    sleeps, runs, handlers = [], [], []
    clock = fake_clock(monkeypatch, lambda seconds: sleeps.append(seconds) or seconds)

    def run_once(*args):
        runs.append((clock[0], *args))
        if len(runs) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(backup, "run_once", run_once)
    monkeypatch.setattr(backup.signal, "signal", lambda *a: handlers.append(a))
    monkeypatch.setenv(backup.KEY_ENV, KEY)
    code = backup.main(["schedule", "--url", "http://backend:3210/", "--dest", str(tmp_path),
                        "--keep", "4", "--timeout", "50", "--poll-interval", "0.5",
                        "--cron", "0 3 * * *"])
    assert code == 0
    assert handlers == [(signal.SIGTERM, signal.default_int_handler)]
    day = dt.timedelta(days=1)
    due = dt.datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    args = ("http://backend:3210", KEY, str(tmp_path), 4, 50.0, 0.5, 20 << 30, 1 << 30, None)
    assert runs == [(due, *args), (due + day, *args)]
    assert sleeps[:2] == [30.0, 30.0] and max(sleeps) == 30.0 and sum(sleeps) == 60 + 86400
    assert capsys.readouterr().out == (
        'convex-backup next run=2026-11-26T03:00:00Z cron="0 3 * * *"\n'
        'convex-backup next run=2026-11-27T03:00:00Z cron="0 3 * * *"\n'
        "convex-backup stopped\n")


# ---- restore: tests/test_restore.py, tests/test_restore_standin.py --------------------------


# ---- environment variables ---------------------------------------------------------------------

def test_each_snapshot_has_its_environment_variables_beside_it(tmp_path, capsys):
    with FakeConvex(KEY) as fake:
        assert once(fake, tmp_path) == 0
    (name,) = snapshots(tmp_path)
    env_file = tmp_path / name.replace(".zip", ".env.json")
    assert json.loads(env_file.read_text()) == sorted(ENV, key=lambda v: v["name"])
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    record = last_run(tmp_path)
    assert (record["env_file"], record["env_vars"]) == (env_file.name, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".last-run.json", env_file.name, name]
    out = capsys.readouterr().out
    assert "sk-test" not in out and "PRIVATE" not in out
    assert [p for m, p, s in fake.log if m == "POST" and p == "/api/query"]  # the system query


def test_a_deployment_without_variables_saves_an_empty_list(tmp_path):
    with FakeConvex(KEY, env=[]) as fake:
        assert once(fake, tmp_path) == 0
    (env_file,) = tmp_path.glob("snapshot-*.env.json")
    assert env_file.read_text() == "[]\n"


@pytest.mark.parametrize("env, reason", [
    (None, "environment variables: query failed (no list of names and values)"),
    ([{"name": "A"}], "environment variables: query failed (no list of names and values)"),
    ([{"name": "", "value": "x"}],
     "environment variables: query failed (no list of names and values)"),
])
def test_without_its_variables_a_run_fails_and_keeps_nothing(tmp_path, capsys, env, reason):
    with FakeConvex(KEY, env=env) as fake:
        assert once(fake, tmp_path) == 1
    assert last_run(tmp_path)["reason"] == reason
    assert sorted(p.name for p in tmp_path.iterdir()) == [".last-run.json"]
    assert fake.downloads == []


@pytest.mark.parametrize("behaviour", ["cut", "corrupt"])
def test_a_failed_download_leaves_no_environment_file(tmp_path, behaviour):
    with FakeConvex(KEY, behaviour) as fake:
        assert once(fake, tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".last-run.json"]


def test_environment_files_are_pruned_with_their_snapshots(tmp_path):
    old = old_backups(tmp_path, 3)
    for name in old:
        (tmp_path / name.replace(".zip", ".env.json")).write_text("[]")
    orphan = tmp_path / "snapshot-20191231T030000Z.env.json"  # its snapshot is gone
    orphan.write_text("[]")
    foreign = tmp_path / "snapshot-before-migration.env.json"
    foreign.write_text("mine")
    (tmp_path / "snapshot-20180101T030000Z.env.json").symlink_to(foreign)
    with FakeConvex(KEY) as fake:
        assert once(fake, tmp_path, keep=2) == 0
    newest = sorted(old)[-1]
    (mine,) = set(snapshots(tmp_path)) - set(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        ".last-run.json", newest, newest.replace(".zip", ".env.json"), mine,
        mine.replace(".zip", ".env.json"), foreign.name, "snapshot-20180101T030000Z.env.json"])
    assert foreign.read_text() == "mine"

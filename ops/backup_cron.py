"""Cron expressions for scheduled backups (standard library only): 'minute hour
day-of-month month day-of-week', in UTC, read as Vixie cron reads them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

UTC = dt.timezone.utc


class CronError(ValueError):
    """An invalid cron expression; the message names the field and the problem."""


FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12),
          ("day-of-week", 0, 7))


def _parse_field(text: str, field: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        span, slash, step = item.partition("/")
        if slash and (not step.isdigit() or int(step) < 1):
            raise CronError(f"{field}: step {step!r} must be a number >= 1")
        if slash and span != "*" and "-" not in span:
            raise CronError(f"{field}: a step needs * or a range, not {span!r}")
        bounds = [low, high] if span == "*" else span.split("-", 1)
        for number in map(str, bounds):
            if not number.isdigit():
                raise CronError(f"{field}: {number!r} is not a number")
            if not low <= int(number) <= high:
                raise CronError(f"{field}: {number} is out of range {low}-{high}")
        first, last = int(bounds[0]), int(bounds[-1])
        if first > last:
            raise CronError(f"{field}: range {span} is reversed")
        values.update(range(first, last + 1, int(step) if slash else 1))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    expr: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day-of-month or day-of-week starts with "*": both must match, else either

    def day_matches(self, day: dt.datetime) -> bool:
        dom, dow = day.day in self.days, (day.weekday() + 1) % 7 in self.weekdays
        return (dom and dow) if self.any_day else (dom or dow)

    def next_after(self, when: dt.datetime) -> dt.datetime:
        """The first matching minute strictly after WHEN, in UTC (naive WHEN is taken as UTC)."""
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        t = when.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        limit = t + dt.timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + dt.timedelta(days=32)).replace(day=1)
            elif not self.day_matches(t):
                t = t.replace(hour=0, minute=0) + dt.timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + dt.timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += dt.timedelta(minutes=1)
            else:
                return t
        raise CronError("day-of-month: no such day in the given month(s)")


def parse_cron(expr: str) -> CronSchedule:
    """Parse 'minute hour day-of-month month day-of-week' (numbers, *, a-b, a,b, */n, a-b/n)."""
    parts = expr.split()
    if len(parts) != 5:
        raise CronError("expected 5 fields (minute hour day-of-month month day-of-week), "
                        f"got {len(parts)}")
    sets = [_parse_field(part, *spec) for part, spec in zip(parts, FIELDS, strict=True)]
    schedule = CronSchedule(" ".join(parts), *sets[:4], frozenset(d % 7 for d in sets[4]),
                            parts[2].startswith("*") or parts[4].startswith("*"))
    schedule.next_after(dt.datetime(2000, 1, 1))  # raises when it can never match
    return schedule

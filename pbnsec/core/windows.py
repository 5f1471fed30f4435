"""Time Windows: weekly working hours in a practice's local wall-clock time. Pure code, no I/O."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MINUTES_PER_DAY = 24 * 60


class WindowError(ValueError):
    """A window that cannot be: a day or time out of range, or no length."""


@dataclass(frozen=True, order=True)
class Window:
    """From `start` on `day` (0 = Monday) to `end`, in minutes since local midnight.

    An end at or before the start runs overnight into the next day (Fri 22:00–Sat 02:00 is day 4, 1320, 120);
    an end of 1440 is midnight at the end of the day.
    """

    day: int
    start: int
    end: int

    def __post_init__(self):
        if not 0 <= self.day <= 6:
            raise WindowError("The day must be Monday to Sunday.")
        if not 0 <= self.start < MINUTES_PER_DAY or not 0 <= self.end <= MINUTES_PER_DAY:
            raise WindowError("Times must be between 00:00 and 24:00.")
        if self.start == self.end:
            raise WindowError("A window must not start and end at the same time.")

    @property
    def overnight(self) -> bool:
        return self.end <= self.start

    def holds(self, weekday: int, minute: int) -> bool:
        if not self.overnight:
            return weekday == self.day and self.start <= minute < self.end
        return ((weekday == self.day and minute >= self.start)
                or (weekday == (self.day + 1) % 7 and minute < self.end))

    def __str__(self) -> str:
        return f"{DAY_NAMES[self.day]} {clock(self.start)}–{clock(self.end)}"


def clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_clock(text: str) -> int:
    """'07:30' → 450; '24:00' is the end of the day. Raises WindowError for anything else."""
    hours, sep, minutes = (text or "").strip().partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2 and 1 <= len(hours) <= 2):
        raise WindowError(f"“{text}” is not a time: use HH:MM, for example 07:30.")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or value > MINUTES_PER_DAY:
        raise WindowError(f"“{text}” is not a time of day: use 00:00 to 24:00.")
    return value


def zone_of(name: str | None) -> ZoneInfo:
    """The IANA zone by name; UTC when there is none or it is unknown (a bad name must not lock everyone out)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_time(now: datetime, zone_name: str | None) -> datetime:
    """A UTC instant (naive means UTC, as stored) as wall-clock time in the zone."""
    aware = now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)
    return aware.astimezone(zone_of(zone_name))


def inside(windows: Iterable[Window], local: datetime) -> bool:
    """Whether a local wall-clock time falls in any of the windows."""
    weekday, minute = local.weekday(), local.hour * 60 + local.minute
    return any(w.holds(weekday, minute) for w in windows)


def describe(windows: Iterable[Window]) -> str:
    """'Mon–Fri 07:00–18:00, Sat 08:00–12:00': days with the same hours grouped, runs of days joined."""
    by_hours: dict[tuple[int, int], list[int]] = {}
    for w in sorted(set(windows)):
        by_hours.setdefault((w.start, w.end), []).append(w.day)
    parts = []
    for (start, end), days in sorted(by_hours.items(), key=lambda item: (min(item[1]), item[0])):
        runs, run = [], [days[0]]
        for day in days[1:]:
            if day == run[-1] + 1:
                run.append(day)
            else:
                runs.append(run)
                run = [day]
        runs.append(run)
        names = ", ".join(DAY_NAMES[r[0]] if len(r) == 1 else
                          f"{DAY_NAMES[r[0]]}, {DAY_NAMES[r[1]]}" if len(r) == 2 else
                          f"{DAY_NAMES[r[0]]}–{DAY_NAMES[r[-1]]}" for r in runs)
        parts.append(f"{names} {clock(start)}–{clock(end)}")
    return ", ".join(parts) if parts else "no hours"


@dataclass(frozen=True)
class Hours:
    """A practice's Time Windows rule: on/off, whom it applies to, its windows and its time zone."""

    enabled: bool = False
    everyone: bool = True
    role_ids: frozenset[int] = frozenset()
    user_ids: frozenset[int] = frozenset()
    windows: tuple[Window, ...] = ()
    zone: str = "UTC"

    def applies_to(self, user) -> bool:
        return self.everyone or user.role_id in self.role_ids or user.user_id in self.user_ids

    def open_at(self, now: datetime) -> bool:
        """Whether `now` (UTC) is inside the windows, read in the practice's zone."""
        return inside(self.windows, local_time(now, self.zone))

    def __str__(self) -> str:
        return f"{describe(self.windows)} ({self.zone})"

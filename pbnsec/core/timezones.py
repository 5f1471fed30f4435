"""Practice time zones: IANA names from the standard library's zoneinfo, and a stored UTC time as read there."""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_NAME = 64  # the longest IANA name is about 32 characters


class TimeZoneError(ValueError):
    """Text that is not an IANA time zone name; the message says so for a person."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@lru_cache(maxsize=1)
def zone_names() -> tuple[str, ...]:
    """Every IANA zone name this machine knows (the OS database or the tzdata package), sorted."""
    from zoneinfo import available_timezones

    return tuple(sorted(available_timezones()))


@lru_cache(maxsize=1)
def _by_lower_name() -> dict[str, str]:
    return {name.lower(): name for name in zone_names()}


def parse_time_zone(text: str) -> str:
    """The IANA name for text (case does not matter: "america/denver" is America/Denver); else TimeZoneError."""
    typed = (text or "").strip()
    if not typed:
        raise TimeZoneError("Choose a time zone, such as America/Denver.")
    name = _by_lower_name().get(typed.lower()) if len(typed) <= MAX_NAME else None
    if name is None:
        raise TimeZoneError(f"{typed[:MAX_NAME]!r} is not a time zone this server knows: choose one from the list, "
                            f"such as America/Denver or Europe/London.")
    return name


@lru_cache(maxsize=None)
def zone(name: str | None) -> ZoneInfo | timezone:
    """The zone called name; UTC for None or a name this machine does not know (never an error on a page)."""
    if not name:
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def to_local(at: datetime, name: str | None) -> datetime:
    """A stored naive UTC time as an aware time in the named zone."""
    return at.replace(tzinfo=timezone.utc).astimezone(zone(name))


def to_utc(local: datetime, name: str | None) -> datetime:
    """A naive time read on a clock in the named zone as stored UTC (naive). A time skipped by spring-forward is
    read with the offset before the change, a repeated one at its first occurrence (fold=0)."""
    return local.replace(tzinfo=zone(name)).astimezone(timezone.utc).replace(tzinfo=None)


def local_text(at: datetime, name: str | None, clock: str = "%H:%M") -> str:
    """A stored UTC time as read in the named zone: "2026-01-15 11:12 MST"."""
    local = to_local(at, name)
    return f"{local:%Y-%m-%d} {local.strftime(clock)} {abbreviation(local)}"


def abbreviation(local: datetime) -> str:
    """The zone's abbreviation at that moment (MST, MDT, CET); UTC offset digits where the zone has no letters."""
    return local.tzname() or local.strftime("%z")

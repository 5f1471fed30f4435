"""How long an approval lasts, when an allowlist entry stops matching, and how soon or long ago that is.

Pure code. Every time is naive UTC, as stored; an expiry is the first second at which the grant or entry no longer
matches (core.decision treats `expires_at <= now` as expired).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from pbnsec.core.timezones import to_utc

# The approve endpoint's `duration` values (a contract), in the order the menu offers them, with their words.
DURATIONS: dict[str, tuple[str, timedelta | None]] = {
    "8h": ("8 hours", timedelta(hours=8)),
    "1d": ("1 day", timedelta(days=1)),
    "7d": ("7 days", timedelta(days=7)),
    "30d": ("30 days", timedelta(days=30)),
    "forever": ("until revoked", None),
}
FOREVER = "forever"
CHOICES = "8h, 1d, 7d, 30d or forever"


class DurationError(ValueError):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UntilError(ValueError):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def parse_duration(text: str) -> str:
    """One of DURATIONS' keys, from a form field; DurationError for anything else."""
    key = (text or "").strip()
    if key not in DURATIONS:
        shown = key[:20] + ("…" if len(key) > 20 else "")
        raise DurationError(f"Choose how long the approval lasts: {CHOICES} (not {shown!r}).")
    return key


def duration_words(key: str) -> str:
    """"8 hours", "until revoked" … for a duration key."""
    return DURATIONS[key][0]


def expires_after(now: datetime, key: str) -> datetime | None:
    """When a grant made now for this duration expires; None for one that lasts until revoked."""
    delta = DURATIONS[key][1]
    return None if delta is None else now + delta


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    """Whether a grant or entry with this expiry no longer matches at `now` (the decision's own rule)."""
    return expires_at is not None and expires_at <= now


def _amount(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h"
    return f"{hours // 24} days"


def relative_expiry(expires_at: datetime | None, now: datetime) -> str:
    """"expires in 6 h", "expired 2 days ago", or "until revoked" for no expiry."""
    if expires_at is None:
        return "until revoked"
    seconds = (expires_at - now).total_seconds()
    if seconds > 0:
        return f"expires in {_amount(seconds)}"
    return f"expired {_amount(-seconds)} ago"


UNTIL_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")


def parse_until(text: str, time_zone: str | None = None) -> datetime | None:
    """An "until" from a form, read on the clock of time_zone (None: UTC) and returned as stored UTC: a date and
    time, or a date alone meaning to the end of that day; None when blank. UntilError when it is not one of those."""
    text = (text or "").strip()
    if not text:
        return None
    typed = None
    for form in UNTIL_FORMATS:
        try:
            typed = datetime.strptime(text[:40], form)
            break
        except ValueError:
            pass
    if typed is None:
        try:
            typed = datetime.strptime(text[:40], "%Y-%m-%d") + timedelta(days=1)
        except (ValueError, OverflowError):
            pass
    if typed is None:
        raise UntilError("Enter the date (and time, in the practice's time zone) it stops matching as YYYY-MM-DD "
                         "or YYYY-MM-DD HH:MM, or leave it empty for no end.")
    try:
        return to_utc(typed, time_zone)
    except OverflowError:
        raise UntilError("That date is out of range: enter one as YYYY-MM-DD or YYYY-MM-DD HH:MM, "
                         "or leave it empty for no end.") from None

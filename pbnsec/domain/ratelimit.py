"""Attempt counting kept in the database, so every app process sees the same counts."""
from __future__ import annotations

from datetime import timedelta

from peewee import fn

from pbnsec.db import RATE_LIMIT_LOCK, change_lock
from pbnsec.models import RateLimitHit, utcnow


def retry_after(limits: list[tuple[str, int]], window: timedelta) -> int:
    """Seconds until every key is under its limit again; 0 when none is over it."""
    since = utcnow() - window
    wait = 0
    for key, limit in limits:
        count = RateLimitHit.select(fn.COUNT(RateLimitHit.id)).where(
            (RateLimitHit.key == key) & (RateLimitHit.at > since)
        ).scalar()
        if count >= limit:
            # The window has to slide past enough old hits to bring the count under the limit.
            times = (
                RateLimitHit.select(RateLimitHit.at)
                .where((RateLimitHit.key == key) & (RateLimitHit.at > since))
                .order_by(RateLimitHit.at)
                .limit(1)
                .offset(count - limit)
            )
            freed_at = times.scalar() + window
            wait = max(wait, int((freed_at - utcnow()).total_seconds()) + 1)
    return wait


KEEP = timedelta(days=1)  # longer than any window a limit uses


def clear(key: str) -> None:
    RateLimitHit.delete().where(RateLimitHit.key == key).execute()


def acquire(limits: list[tuple[str, int]], window: timedelta) -> tuple[int, list[int]]:
    """Check every key and, when all are under their limits, count one attempt on each, in one locked step.

    Returns (seconds to wait, []) when over a limit, else (0, the ids of the hits just counted). The hits are
    provisional: release() takes them back when the attempt turns out well. Checking and counting under one
    lock means parallel attempts cannot all slip in under the limit before any of them is counted.
    """
    with change_lock(RATE_LIMIT_LOCK):
        wait = retry_after(limits, window)
        if wait:
            return wait, []
        now = utcnow()
        ids = [RateLimitHit.insert(key=key, at=now).execute() for key, _ in limits]
        RateLimitHit.delete().where(RateLimitHit.at < now - KEEP).execute()
    return 0, ids


def release(ids: list[int]) -> None:
    """Take back provisional hits (the attempt succeeded)."""
    if ids:
        RateLimitHit.delete().where(RateLimitHit.id.in_(ids)).execute()

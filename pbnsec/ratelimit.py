"""Attempt counting kept in the database, so every app process sees the same counts."""
from __future__ import annotations

from datetime import timedelta

from peewee import fn

from .db import database
from .models import RateLimitHit, utcnow


def retry_after(limits: list[tuple[str, int]], window: timedelta) -> int:
    """Seconds until every key is under its limit again; 0 when none is over it."""
    since = utcnow() - window
    wait = 0
    for key, limit in limits:
        hits = RateLimitHit.select(fn.COUNT(RateLimitHit.id), fn.MIN(RateLimitHit.at)).where(
            (RateLimitHit.key == key) & (RateLimitHit.at > since)
        )
        count, oldest = hits.scalar(as_tuple=True)
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


def record_hit(*keys: str) -> None:
    now = utcnow()
    with database.atomic():
        RateLimitHit.insert_many([{"key": k, "at": now} for k in keys]).execute()
        # Old hits can never count again; dropping them here keeps the table small without a cron job.
        RateLimitHit.delete().where(RateLimitHit.at < now - KEEP).execute()


def clear(key: str) -> None:
    RateLimitHit.delete().where(RateLimitHit.key == key).execute()

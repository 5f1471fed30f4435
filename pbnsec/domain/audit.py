"""The audit log: who did what, from which IP, when, to what."""
from __future__ import annotations

import zlib
from datetime import datetime, timedelta

from peewee import SqliteDatabase, fn

from pbnsec.db import database
from pbnsec.models import AuditEvent, utcnow

# Refusals a guesser or a stuck browser repeats many times a minute. A repeat of the same one (same practice,
# actor, IP, target and detail) within REPEAT_WINDOW of that row's first event is counted on the row.
REPEATED_ACTIONS = frozenset({
    "login_failed", "login_blocked", "login_rate_limited", "session_blocked", "password_change_failed",
})
# From the row's first event, not its last, so a steady stream still starts a new row every 15 minutes.
REPEAT_WINDOW = timedelta(minutes=15)
REPEAT_LOCK = 0x7062_6E61  # PostgreSQL advisory lock class ("pbna"): one recorder at a time per repeat


def record_by(visit, action: str, **fields) -> AuditEvent | None:
    """Record an event of a visit: its user (unless `actor`/`actor_label` say otherwise) from its IP."""
    if "actor" not in fields and "actor_label" not in fields:
        fields["actor"] = visit.user
    return record(action, actor_ip=visit.ip_text, **fields)


def record(action: str, *, practice=None, target: str = "", detail: str = "", actor=None,
           actor_label: str | None = None, actor_ip: str = "") -> AuditEvent | None:
    """Write one audit event, or count it on the row it repeats (then None)."""
    if actor_label is None:
        actor_label = actor.email if actor is not None else "anonymous"
    event = dict(action=action, practice=practice, target=target[:300], detail=detail,
                 actor_label=actor_label, actor_ip=actor_ip or "")
    if action not in REPEATED_ACTIONS:
        return AuditEvent.create(actor=actor, **event)
    with database.atomic():
        _take_turns(event)
        now = utcnow()
        if count_repeat(now=now, **event).execute():
            return None
        return AuditEvent.create(actor=actor, at=now, **event)


def _take_turns(event: dict) -> None:
    """Make parallel records of one repeat take turns, so the first inserts its row and the others count on it."""
    if isinstance(database.obj, SqliteDatabase):
        return  # the UPDATE takes SQLite's write lock and keeps it until commit: they take turns already
    # Without this, twenty guesses arriving together on PostgreSQL all find no row and insert twenty.
    practice = event["practice"]
    key = "\0".join(str(part) for part in (event["action"], getattr(practice, "id", practice), event["actor_label"],
                                          event["actor_ip"], event["target"], event["detail"]))
    # A 32-bit hash, the same in every process; two repeats sharing one only wait for each other.
    database.execute_sql("SELECT pg_advisory_xact_lock(%s, %s)", (REPEAT_LOCK, zlib.crc32(key.encode()) - 2**31))


def count_repeat(action: str, practice, actor_label: str, actor_ip: str, target: str, detail: str,
                 now: datetime):
    """The UPDATE counting one more event on the newest row it repeats (the row count says if there was one)."""
    same = ((AuditEvent.action == action) & (AuditEvent.actor_label == actor_label)
            & (AuditEvent.actor_ip == actor_ip) & (AuditEvent.at > now - REPEAT_WINDOW)
            & (AuditEvent.practice.is_null() if practice is None else AuditEvent.practice == practice)
            & (AuditEvent.target == target) & (AuditEvent.detail == detail))
    # One row only: if a race ever left two rows for one repeat, adding to both would count the event twice.
    newest = AuditEvent.select(fn.MAX(AuditEvent.id)).where(same)
    # count + 1 is computed by the database on the row as it is when locked, so a parallel repeat is never lost.
    return AuditEvent.update(count=AuditEvent.count + 1, last_at=now).where(AuditEvent.id == newest)

"""The audit log: who did what, from which IP, when, to what."""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import g, has_request_context
from flask_login import current_user
from peewee import fn

from .db import database
from .models import AuditEvent, utcnow

# Refusals a guesser or a stuck browser repeats many times a minute. A repeat of the same one (same practice,
# actor, IP, target and detail) within REPEAT_WINDOW of that row's first event is counted on the row.
REPEATED_ACTIONS = frozenset({
    "login_failed", "login_blocked", "login_rate_limited", "session_blocked", "password_change_failed",
})
# From the row's first event, not its last, so a steady stream still starts a new row every 15 minutes.
REPEAT_WINDOW = timedelta(minutes=15)


def record(action: str, *, practice=None, target: str = "", detail: str = "", actor=None,
           actor_label: str | None = None, actor_ip: str | None = None) -> AuditEvent | None:
    """Write one audit event (in a request, as the signed-in user), or count it on the row it repeats: None."""
    if has_request_context():
        if actor is None and actor_label is None and current_user.is_authenticated:
            actor = current_user._get_current_object()
        if actor_ip is None:
            actor_ip = str(g.get("client_ip") or "unknown")
    if actor_label is None:
        actor_label = actor.email if actor is not None else "anonymous"
    event = dict(action=action, practice=practice, target=target[:300], detail=detail,
                 actor_label=actor_label, actor_ip=actor_ip or "")
    if action not in REPEATED_ACTIONS:
        return AuditEvent.create(actor=actor, **event)
    now = utcnow()
    # On SQLite the UPDATE takes the write lock until commit, so a parallel repeat waits and then counts on the
    # row inserted here. On PostgreSQL two first events at once can both insert: two rows, each counted once.
    with database.atomic():
        if count_repeat(now=now, **event).execute():
            return None
        return AuditEvent.create(actor=actor, at=now, **event)


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

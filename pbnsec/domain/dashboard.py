"""The home page's dashboard: how each practice an administrator looks after stands, in a few numbers.

Three grouped queries whatever the number of practices; the restriction state comes with the access overview's
rows (the settings their decisions were made on).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import fn

from pbnsec.domain.access import PracticeAccess
from pbnsec.models import (
    ALL_PRACTICES,
    PENDING,
    AccessRequest,
    AllowlistEntry,
    AuditEvent,
    Practice,
)

BLOCKED_DAYS = 7
BLOCKED_ACTIONS = ("login_blocked", "session_blocked")


@dataclass(frozen=True)
class PracticeSummary:
    """One practice at a glance, as its security administrators see it."""

    practice: Practice
    enforced: bool  # IP restrictions on
    everyone: bool  # … for everyone (else selected roles and users)
    windows: bool  # Time Windows on
    windows_everyone: bool
    entries: int  # active, unexpired allowlist entries reaching it (its own and All practices')
    pending: int  # access requests waiting for a decision
    blocked_sign_ins: int  # refused sign-ins over the last BLOCKED_DAYS days
    blocked_sessions: int  # signed-in sessions stopped over the same days


def summaries(rows: list[PracticeAccess], now: datetime) -> list[PracticeSummary]:
    """Each practice's summary, for rows of the access overview."""
    ids = [row.practice.id for row in rows]
    if not ids:
        return []
    entries = dict(AllowlistEntry.select(AllowlistEntry.scope, fn.COUNT(AllowlistEntry.id))
                   .where(AllowlistEntry.scope.in_([*ids, ALL_PRACTICES]) & AllowlistEntry.active
                          & (AllowlistEntry.expires_at.is_null() | (AllowlistEntry.expires_at > now)))
                   .group_by(AllowlistEntry.scope).tuples())
    pending = dict(AccessRequest.select(AccessRequest.practice, fn.COUNT(AccessRequest.id))
                   .where((AccessRequest.status == PENDING) & AccessRequest.practice.in_(ids))
                   .group_by(AccessRequest.practice).tuples())
    # A row of repeats counts every repeat; one that started earlier but repeated within the days still counts.
    since = now - timedelta(days=BLOCKED_DAYS)
    blocked: dict[tuple[int, str], int] = {}
    for practice_id, action, count in (
            AuditEvent.select(AuditEvent.practice, AuditEvent.action, fn.SUM(AuditEvent.count))
            .where(AuditEvent.practice.in_(ids) & AuditEvent.action.in_(BLOCKED_ACTIONS)
                   & (fn.COALESCE(AuditEvent.last_at, AuditEvent.at) >= since))
            .group_by(AuditEvent.practice, AuditEvent.action).tuples()):
        blocked[practice_id, action] = int(count or 0)
    everywhere = entries.get(ALL_PRACTICES, 0)
    found = []
    for row in rows:
        p, settings = row.practice, row.settings
        found.append(PracticeSummary(
            practice=p,
            enforced=settings.enforced,
            everyone=settings.everyone,
            windows=settings.hours.enabled,
            windows_everyone=settings.hours.everyone,
            entries=entries.get(p.id, 0) + everywhere,
            pending=pending.get(p.id, 0),
            blocked_sign_ins=blocked.get((p.id, "login_blocked"), 0),
            blocked_sessions=blocked.get((p.id, "session_blocked"), 0)))
    return found

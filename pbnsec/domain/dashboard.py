"""The home page's dashboard: how each practice an administrator looks after stands, in a few numbers.

Three grouped queries whatever the number of practices; the restriction state comes with the practices the access
overview has already loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import fn

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


def summaries(practices: list[Practice], now: datetime) -> list[PracticeSummary]:
    """Each practice's summary. `practices` come from the access overview (their restriction and Time Windows rows
    joined as `restriction` and `time_rule`, None while never saved)."""
    ids = [p.id for p in practices]
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
    for p in practices:
        restriction, hours = getattr(p, "restriction", None), getattr(p, "time_rule", None)
        found.append(PracticeSummary(
            practice=p,
            enforced=bool(restriction and restriction.enforced),
            everyone=restriction is None or restriction.everyone,
            windows=bool(hours and hours.enabled),
            windows_everyone=hours is None or hours.everyone,
            entries=entries.get(p.id, 0) + everywhere,
            pending=pending.get(p.id, 0),
            blocked_sign_ins=blocked.get((p.id, "login_blocked"), 0),
            blocked_sessions=blocked.get((p.id, "session_blocked"), 0)))
    return found

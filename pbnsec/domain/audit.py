"""The audit log: who did what, from which IP, when, to what."""
from __future__ import annotations

import csv
import io
import itertools
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import JOIN, SqliteDatabase, fn

from pbnsec.core.text import (
    has_control_characters,
    parse_id,
    without_control_characters,
)
from pbnsec.core.timezones import to_local
from pbnsec.db import database
from pbnsec.domain.paging import MAX_PARTS, PAGE_SIZE, Cursor, among, beyond
from pbnsec.models import AuditEvent, Practice, utcnow

# Refusals a guesser or a stuck browser repeats many times a minute. A repeat of the same one (same practice,
# actor, IP, target and detail) within REPEAT_WINDOW of that row's first event is counted on the row.
REPEATED_ACTIONS = frozenset({
    "login_failed", "login_blocked", "login_rate_limited", "session_blocked", "password_change_failed",
    "gate_blocked",  # a page of a protected app and its 40 assets: one row
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


# --- reading the log: filters, pages, CSV ---

CSV_MAX_ROWS = 100_000
CSV_CHUNK = 200  # rows a statement of the download reads: few enough to be fetched by their ids, not a scan
ACTIONS = (
    "login_allowed", "login_blocked", "login_failed", "login_rate_limited", "logout", "session_blocked",
    "entry_added", "entry_edited", "entry_enabled", "entry_disabled", "entry_deleted", "settings_changed",
    "request_submitted", "request_approved", "request_rejected", "grant_revoked", "security_unlock",
    "secret_key_adopted",
    "owner_created", "demo_loaded", "practice_created", "user_created", "password_changed", "password_change_failed",
    "password_reset", "invite_used", "user_role_changed", "user_practices_changed", "user_deactivated",
    "user_reactivated", "practice_renamed", "gate_blocked",
)


@dataclass
class AuditFilter:
    practice: str = ""
    action: str = ""
    user: str = ""
    page: int = 1  # the old numbered pages (bookmarks); the pager's links go by cursor instead
    before: Cursor | None = None  # older than this row (the "Older" link)
    after: Cursor | None = None  # newer than this row (the "Newer" link)
    error: str | None = None

    @classmethod
    def from_args(cls, args, practice_ids: set[int]) -> "AuditFilter":
        f = cls(args.get("practice", "").strip(), args.get("action", "").strip(), args.get("user", "").strip()[:254])
        errors = []
        page = args.get("page", "1").strip()
        if not parse_id(page):
            errors.append(f"The page must be a whole number from 1 up, not {page[:20]!r}.")
        elif parse_id(page) > MAX_PAGE:
            errors.append(f"There is no page {parse_id(page)} to open by number: go further with Older →.")
        else:
            f.page = parse_id(page)
        for name in ("before", "after"):
            text = args.get(name, "").strip()
            if text:
                cursor = Cursor.parse(text)
                if cursor is None:
                    errors.append(f"{text[:40]!r} is not a place in the audit log: follow the Newer and Older links.")
                setattr(f, name, cursor)
        if f.practice and parse_id(f.practice) not in practice_ids:
            errors.append("Choose one of your practices.")
        if f.action and f.action not in ACTIONS:
            errors.append(f"There is no action called {f.action!r}.")
        if has_control_characters(f.user):
            errors.append("The user filter contains a control character.")
            f.user = without_control_characters(f.user)  # shown back in the form without them
        f.error = " ".join(errors) or None
        return f

    def query_args(self, **changes) -> dict:
        args = {"practice": self.practice, "action": self.action, "user": self.user}
        args.update(changes)
        return {k: v for k, v in args.items() if v not in ("", None, 1)}


MAX_PAGE = 200  # numbered pages are read with OFFSET: further back goes by cursor


def _visible_groups(f: AuditFilter, administered: Collection[int], every_practice: bool) -> list:
    """One condition per practice whose events the admin may see (practice-less ones only when they administer
    every practice): each is served by the index on (practice, at), where an OR of them all would not be."""
    if f.practice:
        return [AuditEvent.practice == parse_id(f.practice)]
    groups = [AuditEvent.practice == pid for pid in sorted(administered)]
    if every_practice:
        groups.append(AuditEvent.practice.is_null())
    if len(groups) > MAX_PARTS:
        visible = AuditEvent.practice.in_(list(administered))
        return [visible | AuditEvent.practice.is_null() if every_practice else visible]
    return groups


def _matching(f: AuditFilter):
    """The conditions of the action and user filters."""
    where = []
    if f.action:
        where.append(AuditEvent.action == f.action)
    if f.user:
        where.append(AuditEvent.actor_label.contains(f.user) | AuditEvent.target.contains(f.user))
    return where


def _window(group, f: AuditFilter, before: Cursor | None, after: Cursor | None, take: int):
    """The ids of up to `take` events of one practice next to the cursor, walked along its (practice, at) index."""
    where = [group, *_matching(f)]
    if after is not None:
        where += beyond(AuditEvent.at, AuditEvent.id, after, descending=False)
        order = (AuditEvent.at, AuditEvent.id)
    else:
        where += beyond(AuditEvent.at, AuditEvent.id, before, descending=True)
        order = (AuditEvent.at.desc(), AuditEvent.id.desc())
    return AuditEvent.select(AuditEvent.id, AuditEvent.at.alias("place")).where(*where).order_by(*order).limit(take)


def event_rows(f: AuditFilter, administered: Collection[int], every_practice: bool, size: int = PAGE_SIZE,
               before: Cursor | None = None, after: Cursor | None = None, offset: int = 0) -> list[AuditEvent]:
    """Up to `size` events an admin may see, newest first: those older than `before`, or the `size` just newer
    than `after` (still newest first), or from the newest on, skipping `offset`; with their practices (one query).

    Events of the practices they administer from here; practice-less ones only when that is every practice.
    """
    groups = _visible_groups(f, administered, every_practice)
    if not groups:
        return []
    take = offset + size
    parts = [_window(group, f, before, after, take) for group in groups]
    order = (AuditEvent.at, AuditEvent.id) if after is not None else (AuditEvent.at.desc(), AuditEvent.id.desc())
    query = (among(AuditEvent.select(AuditEvent, Practice).join(Practice, JOIN.LEFT_OUTER, on=AuditEvent.practice),
                   AuditEvent, parts, take, after is None).order_by(*order).offset(offset or None).limit(size))
    rows = list(query)
    return rows[::-1] if after is not None else rows


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]  # newest first
    newer: Cursor | None  # where the Newer link starts; None on the newest page
    older: Cursor | None  # where the Older link starts; None on the oldest page

    @property
    def everything(self) -> bool:
        """Whether these are all the events that match (then they can be counted)."""
        return self.newer is None and self.older is None


def events_page(f: AuditFilter, administered: Collection[int], every_practice: bool) -> AuditPage:
    """A page of the log: one more row is read than shown, to know whether there is a page beyond (no count)."""
    offset = (f.page - 1) * PAGE_SIZE if f.before is None and f.after is None else 0
    rows = event_rows(f, administered, every_practice, PAGE_SIZE + 1, f.before, f.after, offset)
    if f.after is not None:  # newest first; the extra row, if any, is the newest one
        more_newer, rows = len(rows) > PAGE_SIZE, rows[-PAGE_SIZE:]
        more_older = True
    else:
        more_older, rows = len(rows) > PAGE_SIZE, rows[:PAGE_SIZE]
        more_newer = f.before is not None or offset > 0
    return AuditPage(rows, _at(rows[0]) if rows and more_newer else None,
                     _at(rows[-1]) if rows and more_older else None)


def _at(event: AuditEvent) -> Cursor:
    return Cursor(event.at, event.id)


def all_events(f: AuditFilter, administered: Collection[int], every_practice: bool, chunk: int = CSV_CHUNK):
    """Every event that matches, newest first, read a chunk at a time from where the last chunk ended."""
    before = None
    while True:
        rows = event_rows(f, administered, every_practice, chunk, before)
        yield from rows
        if len(rows) < chunk:
            return
        before = _at(rows[-1])


def _cell(value) -> str:
    # A spreadsheet would run a cell starting with one of these as a formula.
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_lines(events, limit: int = CSV_MAX_ROWS, time_zone: str = "UTC"):
    """The events as CSV text, a line at a time (streamed: a large log never sits in memory).

    time_local is in the event's practice's zone, or time_zone (the practice being worked in) for an event of none.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    # Added columns come last (count and last_utc, then time_local), so a sheet or script reading the earlier
    # columns reads them as before.
    writer.writerow(["time_utc", "actor", "actor_ip", "practice", "action", "target", "detail", "count", "last_utc",
                     "time_local"])
    yield buffer.getvalue()  # the header, even when no event matches
    buffer.seek(0)
    buffer.truncate()
    for e in itertools.islice(events, limit):
        last_utc = e.last_at.isoformat() + "Z" if e.last_at else ""
        practice = e.practice.name if e.practice_id else ""
        time_local = to_local(e.at, e.practice.time_zone if e.practice_id else time_zone).isoformat()
        writer.writerow([_cell(v) for v in (e.at.isoformat() + "Z", e.actor_label, e.actor_ip, practice, e.action,
                                            e.target, e.detail, e.count, last_utc, time_local)])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()

"""The audit log: who did what, from which IP, when, to what."""
from __future__ import annotations

import csv
import io
import itertools
import re
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from peewee import JOIN, SqliteDatabase, fn

from pbnsec.core.text import (
    has_control_characters,
    parse_id,
    without_control_characters,
)
from pbnsec.core.iprules import EntryError, parse_address
from pbnsec.core.timezones import to_local, to_utc
from pbnsec.db import database
from pbnsec.domain.paging import MAX_PARTS, PAGE_SIZE, Cursor, beyond, merged_ids
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
           actor_label: str | None = None, actor_ip: str = "", subject_ip: str = "") -> AuditEvent | None:
    """Write one audit event, or count it on the row it repeats (then None). subject_ip: the IP the event is about
    (a request's, a grant's), so the log's IP filter finds the decision made from elsewhere."""
    if actor_label is None:
        actor_label = actor.email if actor is not None else "anonymous"
    event = dict(action=action, practice=practice, target=target[:300], detail=detail,
                 actor_label=actor_label, actor_ip=actor_ip or "")
    if action not in REPEATED_ACTIONS:
        return AuditEvent.create(actor=actor, subject_ip=subject_ip, **event)
    with database.atomic():
        _take_turns(event)
        now = utcnow()
        if count_repeat(now=now, **event).execute():
            return None
        return AuditEvent.create(actor=actor, at=now, subject_ip=subject_ip, **event)


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
    "app_added", "app_changed", "app_removed",
)


@dataclass
class AuditFilter:
    practice: str = ""
    action: str = ""
    user: str = ""
    page: int = 1  # the old numbered pages (bookmarks); the pager's links go by cursor instead
    before: Cursor | None = None  # older than this row (the "Older" link)
    after: Cursor | None = None  # newer than this row (the "Newer" link)
    error: str | None = None  # a value no form field gives (a tampered link): 400
    ip: str = ""  # events from this address, or about it (subject_ip), normalised once it parses
    from_date: str = ""  # YYYY-MM-DD, the first day shown, as typed
    to_date: str = ""  # YYYY-MM-DD, the last day shown, as typed
    time_zone: str = "UTC"  # the days are the practice's days
    since: datetime | None = None  # UTC: the start of the From day
    until: datetime | None = None  # UTC: the end of the To day (the start of the day after)
    field_errors: dict[str, str] = field(default_factory=dict)  # a typed IP or date that is not one, by field

    @classmethod
    def from_args(cls, args, practice_zones: Collection[int] | Mapping[int, str],
                  time_zone: str = "UTC") -> "AuditFilter":
        """The filters of a request's arguments; practice_zones are the admin's practices (with their time zones
        when a mapping: the days of the date filter are the chosen practice's, else those of time_zone)."""
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
        if f.practice and parse_id(f.practice) not in practice_zones:
            errors.append("Choose one of your practices.")
        elif f.practice and isinstance(practice_zones, Mapping):
            time_zone = practice_zones[parse_id(f.practice)]
        if f.action and f.action not in ACTIONS:
            errors.append(f"There is no action called {f.action!r}.")
        if has_control_characters(f.user):
            errors.append("The user filter contains a control character.")
            f.user = without_control_characters(f.user)  # shown back in the form without them
        f.error = " ".join(errors) or None
        f.time_zone = time_zone
        f._read_ip(args.get("ip", ""))
        f._read_days(args.get("from", ""), args.get("to", ""))
        return f

    def _read_ip(self, typed: str) -> None:
        typed = typed.strip()
        self.ip = without_control_characters(typed[:MAX_TYPED])  # as shown back in the form
        if not typed:
            return
        try:
            self.ip = str(parse_address(typed))
        except EntryError as refused:
            invalid = refused.message.endswith("is not a valid IP address or network.")
            self.field_errors["ip"] = (f"{self.ip!r} is not an IP address: type one such as 203.0.113.7 or "
                                       f"2001:db8::1." if invalid else refused.message)

    def _read_days(self, typed_from: str, typed_to: str) -> None:
        typed_from, typed_to = typed_from.strip(), typed_to.strip()
        self.from_date = without_control_characters(typed_from[:MAX_TYPED])
        self.to_date = without_control_characters(typed_to[:MAX_TYPED])
        first = _day(typed_from, "from", self.field_errors)
        last = _day(typed_to, "to", self.field_errors)
        if first and last and first > last:
            self.field_errors["to"] = f"The last day ({last}) is before the first ({first}): swap them."
            return
        if first:
            self.since = to_utc(datetime.combine(first, time()), self.time_zone)
        if last:
            self.until = to_utc(datetime.combine(last + timedelta(days=1), time()), self.time_zone)

    def query_args(self, **changes) -> dict:
        args = {"practice": self.practice, "action": self.action, "user": self.user, "ip": self.ip,
                "from": self.from_date, "to": self.to_date}
        args.update(changes)
        return {k: v for k, v in args.items() if v not in ("", None, 1)}


MAX_TYPED = 64
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)  # far enough, and a day from the end of datetime
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _day(typed: str, name: str, errors: dict[str, str]) -> date | None:
    """A YYYY-MM-DD day (what a date field sends), or None with the reason in errors[name]."""
    if not typed:
        return None
    try:
        day = date.fromisoformat(typed) if _DAY.fullmatch(typed) else None
    except ValueError:
        day = None
    if day is None:
        errors[name] = f"{typed[:MAX_TYPED]!r} is not a date: write it as YYYY-MM-DD, such as 2026-01-31."
    elif not FIRST_DAY <= day <= LAST_DAY:
        errors[name] = f"Choose a day from {FIRST_DAY} to {LAST_DAY}, not {day}."
        day = None
    return day


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
    """The conditions of the action, day and user filters (the IP filter's are _about_ip's)."""
    where = []
    if f.action:
        where.append(AuditEvent.action == f.action)
    if f.since is not None:
        where.append(AuditEvent.at >= f.since)
    if f.until is not None:
        where.append(AuditEvent.at < f.until)
    if f.user:
        where.append(AuditEvent.actor_label.contains(f.user) | AuditEvent.target.contains(f.user))
    return where


def _about_ip(f: AuditFilter) -> list:
    """The IP filter as conditions each read along an index of its own: the events from the IP, and those about it
    from elsewhere (an approval made at the office for a request from home). None: no IP filter."""
    if not f.ip:
        return [None]
    return [AuditEvent.actor_ip == f.ip, (AuditEvent.subject_ip == f.ip) & (AuditEvent.actor_ip != f.ip)]


def _windows(groups: list, f: AuditFilter, before: Cursor | None, after: Cursor | None, take: int) -> list:
    """_window for each practice and each way an event can match the IP filter."""
    return [_window(group if ip is None else group & ip, f, before, after, take)
            for group in groups for ip in _about_ip(f)]


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
    return _rows(f, administered, every_practice, size, before, after, offset)[0]


def _rows(f: AuditFilter, administered: Collection[int], every_practice: bool, size: int,
          before: Cursor | None = None, after: Cursor | None = None, offset: int = 0,
          probe: bool = False) -> tuple[list[AuditEvent], bool]:
    """event_rows, and with `probe` whether there is an event on the other side of the cursor (the one it names
    included), read in the same statement: a page that went Older knows if there is a Newer, and the other way."""
    groups = _visible_groups(f, administered, every_practice)
    if not groups:
        return [], False
    take = offset + size
    ascending = after is not None
    ids = merged_ids(_windows(groups, f, before, after, take), take, not ascending)
    if probe:
        cursor = after or before
        # Past the cursor the other way, the row it names included: at or before (at, id), or at or after it.
        other_before, other_after = ((Cursor(cursor.at, cursor.id + 1), None) if ascending
                                     else (None, Cursor(cursor.at, cursor.id - 1)))
        other_ids = merged_ids(_windows(groups, f, other_before, other_after, 1), 1, ascending)
        ids = ids.select_from(ids.c.id).union_all(other_ids.select_from(other_ids.c.id))
    page_ids = ids.alias("page_ids")
    order = (AuditEvent.at, AuditEvent.id) if ascending else (AuditEvent.at.desc(), AuditEvent.id.desc())
    query = (AuditEvent.select(AuditEvent, Practice).join(Practice, JOIN.LEFT_OUTER, on=AuditEvent.practice)
             .switch(AuditEvent).join(page_ids, on=(AuditEvent.id == page_ids.c.id))
             .order_by(*order).offset(offset or None).limit(size + probe))
    rows = list(query)
    probed = False
    if probe:
        # In the page's order the probed row, if any, comes first: it is on the near side of the cursor.
        place = (cursor.at, cursor.id)
        probed = bool(rows) and ((rows[0].at, rows[0].id) <= place if ascending else (rows[0].at, rows[0].id) >= place)
        rows = rows[1:] if probed else rows[:size]
    return (rows[::-1] if ascending else rows), probed


# Where the "Oldest" link starts: just after a time before any event, so it shows the oldest page.
BEFORE_EVERYTHING = Cursor(datetime(1, 1, 1), 1)


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
    """A page of the log, with a Newer / Older link only where that link leads to events, known without a count and
    in one statement: a row more than shown is read in the direction the page goes, and one row on the other side
    of where it starts. A place with nothing past it (bookmarked, made up) shows the newest or oldest page instead.
    """
    def read(size: int, before: Cursor | None = None, after: Cursor | None = None, offset: int = 0, probe=False):
        return _rows(f, administered, every_practice, size, before, after, offset, probe)

    if f.after is not None:
        rows, more_older = read(PAGE_SIZE + 1, after=f.after, probe=True)  # newest first: the extra row is first
        if rows:
            return _page(rows[-PAGE_SIZE:], len(rows) > PAGE_SIZE, more_older)
    elif f.before is not None:
        rows, more_newer = read(PAGE_SIZE + 1, before=f.before, probe=True)
        if rows:
            return _page(rows[:PAGE_SIZE], more_newer, len(rows) > PAGE_SIZE)
        rows, _ = read(PAGE_SIZE + 1, after=BEFORE_EVERYTHING)
        return _page(rows[-PAGE_SIZE:], len(rows) > PAGE_SIZE, False)
    offset = (f.page - 1) * PAGE_SIZE if f.after is None else 0
    rows, _ = read(PAGE_SIZE + 1, offset=offset)
    return _page(rows[:PAGE_SIZE], offset > 0, len(rows) > PAGE_SIZE)


def _page(rows: list[AuditEvent], more_newer: bool, more_older: bool) -> AuditPage:
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

    time_local is in the event's practice's zone, or time_zone (the filter's days' zone) for an event of none.
    subject_ip is the address a decision was about (an approved or rejected request's, a revoked grant's): the
    IP filter finds those events by it as well as by actor_ip.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    # Added columns come last (count and last_utc, then time_local, then subject_ip), so a sheet or script reading
    # the earlier columns reads them as before.
    writer.writerow(["time_utc", "actor", "actor_ip", "practice", "action", "target", "detail", "count", "last_utc",
                     "time_local", "subject_ip"])
    yield buffer.getvalue()  # the header, even when no event matches
    buffer.seek(0)
    buffer.truncate()
    for e in itertools.islice(events, limit):
        last_utc = e.last_at.isoformat() + "Z" if e.last_at else ""
        practice = e.practice.name if e.practice_id else ""
        time_local = to_local(e.at, e.practice.time_zone if e.practice_id else time_zone).isoformat()
        writer.writerow([_cell(v) for v in (e.at.isoformat() + "Z", e.actor_label, e.actor_ip, practice, e.action,
                                            e.target, e.detail, e.count, last_utc, time_local, e.subject_ip)])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()

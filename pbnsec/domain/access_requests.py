"""Access requests: a blocked user asks for their current IP at a practice; an administrator decides, once.

The administrator's side takes the ids of the practices they administer from where they are (the caller works
those out); a request of any other practice is not there for them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Iterable

from peewee import JOIN, IntegrityError

from pbnsec.core.durations import FOREVER, duration_words, expires_after, parse_duration
from pbnsec.core.text import has_control_characters, without_control_characters
from pbnsec.db import database
from pbnsec.domain import audit, notifications, ratelimit
from pbnsec.domain.access import AccessOverview
from pbnsec.domain.paging import MAX_PARTS, PAGE_SIZE, Cursor, among, beyond
from pbnsec.domain.signin_limits import ip_key
from pbnsec.domain.visit import Visit
from pbnsec.models import (
    APPROVED,
    PENDING,
    REJECTED,
    AccessRequest,
    Grant,
    IPRestriction,
    Membership,
    Practice,
    Role,
    User,
)

NOTE_MAX = 500
NOTE_READ = 5000  # more than this is not even looked at; the count shown for an over-long note stops here
NOTE_WHITESPACE = "\n\t"  # a note may run over several lines
REASON_MAX = 500  # a rejection's reason, shown to the user
REQUEST_WINDOW = timedelta(hours=1)
REQUEST_LIMIT_PER_USER = 10
REQUEST_LIMIT_PER_IP = 30


# --- the user's side ---

@dataclass(frozen=True)
class Submission:
    """An access-request form, checked (and, through request_access, submitted)."""

    practices: tuple[Practice, ...]  # those chosen, in name order
    note: str  # as stored; when refused, as shown back (without control characters)
    errors: dict[str, str] = field(default_factory=dict)  # by form field ("practice", "note"); empty when fine
    code: str = ""  # why it was refused: "invalid" (see errors) or "rate_limited"
    created: tuple[Practice, ...] = ()  # the practices a request was made for (one already pending is kept)


def check_submission(visit: Visit, access: AccessOverview, practice_ids: Iterable[int | None],
                     note: str) -> Submission:
    """Check what the visit's user asks for: practices they may ask for now (access.rows), a note within limits.

    `practice_ids` are those ticked (None for what was not an id at all); nothing is written.
    """
    # Browsers send a line break as CR LF; the text box counted it as one character, and so do we.
    note = note[:NOTE_READ].replace("\r\n", "\n").strip()
    errors = {}
    chosen = set(practice_ids)
    offered = {row.practice.id: row for row in access.rows}
    if not chosen:
        errors["practice"] = "Choose at least one practice to ask for access to."
    elif not chosen <= offered.keys():
        errors["practice"] = "Choose only practices you belong to."
    else:
        problems = (_why_not(row, visit.ip_text) for row in access.rows if row.practice.id in chosen)
        problem = next((p for p in problems if p), None)
        if problem:
            errors["practice"] = problem
    if has_control_characters(note, allowed=NOTE_WHITESPACE):
        note = without_control_characters(note, allowed=NOTE_WHITESPACE)
        errors["note"] = "The note cannot contain control characters (line breaks and tabs are fine)."
    elif len(note) > NOTE_MAX:
        errors["note"] = f"The note can be at most {NOTE_MAX} characters long (yours has {len(note)})."
    practices = tuple(row.practice for row in access.rows if row.practice.id in chosen)
    return Submission(practices, note, errors, "invalid" if errors else "")


def _why_not(row, ip_text: str) -> str | None:
    """Why the user may not ask for this practice from here now, else None."""
    if row.status == PENDING:
        return f"Your request for {row.practice.name} from {ip_text} is already pending."
    if row.decision.allowed:
        return f"You already have access to {row.practice.name} from {ip_text}."
    if row.status == "outside_hours":
        return (f"You are outside your working hours at {row.practice.name}: an access request does not extend "
                "working hours.")
    if not row.can_request:
        return f"{row.practice.name} does not take access requests from you right now."
    return None


def request_access(visit: Visit, access: AccessOverview, practice_ids: Iterable[int | None],
                   note: str) -> Submission:
    """Check the form, count it against the user's and the IP's hourly limits, and submit it."""
    checked = check_submission(visit, access, practice_ids, note)
    if checked.errors:
        return checked
    # Only a request that could be made is counted: a mistake does not use up the hour's allowance.
    wait, _ = ratelimit.acquire([(f"request-user:{visit.user.id}", REQUEST_LIMIT_PER_USER),
                                 (f"request-ip:{ip_key(visit.ip)}", REQUEST_LIMIT_PER_IP)], REQUEST_WINDOW)
    if wait:
        error = f"Too many access requests. Try again in {max(1, round(wait / 60))} minutes."
        return Submission(checked.practices, checked.note, {"practice": error}, "rate_limited")
    return Submission(checked.practices, checked.note, created=tuple(submit(visit, checked.practices, checked.note)))


def submit(visit: Visit, practices, note: str) -> list:
    """One pending request per practice from the visit's IP; one already pending (even from a parallel submit) is
    kept. Returns the practices a request was made for."""
    created = []
    for practice in practices:
        try:
            with database.atomic():
                request = AccessRequest.create(user=visit.user, practice=practice, ip=visit.ip_text, note=note)
                audit.record_by(visit, "request_submitted", practice=practice, target=visit.ip_text, detail=note)
                notifications.request_arrived(request, visit.now)  # mail, queued only if this commits
            created.append(practice)
        except IntegrityError:
            pass
    return created


@dataclass(frozen=True)
class Contact:
    """A security administrator a blocked user can ask: by name, and by email where the practice allows it."""

    name: str
    email: str | None


def contacts(practice_ids: Iterable[int], asking: User | None = None) -> dict[int, list[Contact]]:
    """Per practice, its active security administrators by name (other than `asking`), with their emails where
    the practice shows them on the blocked page (one query)."""
    found: dict[int, list[Contact]] = {pid: [] for pid in practice_ids}
    if not found:
        return found
    rows = (User.select(User.name, User.email, Membership.practice, IPRestriction.show_admin_emails)
            .join(Role).switch(User).join(Membership)
            .join(IPRestriction, JOIN.LEFT_OUTER, on=(IPRestriction.practice == Membership.practice))
            .where(Membership.practice.in_(list(found)) & User.active & Role.is_security_admin
                   & (User.id != (asking.id if asking is not None else 0)))
            .order_by(User.name, User.id).tuples())
    for name, email, practice_id, show_emails in rows:
        found[practice_id].append(Contact(name, email if show_emails else None))
    return found


# --- the administrator's side ---

def _with_people(shown_only: bool = False):
    """Requests with their user (and role), practice and decider, so showing one costs no further query.
    `shown_only`: only the columns a row of the list shows (a page makes 100 rows of five records each)."""
    decider = User.alias()
    columns = ((AccessRequest, User.id, User.name, User.email, User.role, Role.id, Role.name, Practice.id,
                Practice.name, Practice.time_zone, decider.id, decider.name) if shown_only
               else (AccessRequest, User, Role, Practice, decider))
    return (AccessRequest.select(*columns)
            .join(User, on=AccessRequest.user).join(Role)
            .switch(AccessRequest).join(Practice)
            .switch(AccessRequest).join(decider, JOIN.LEFT_OUTER, on=AccessRequest.decided_by))


@dataclass(frozen=True)
class Listing:
    pending: list[AccessRequest]  # oldest first, a page of them
    decided: list[AccessRequest]  # latest first, a page of them
    pending_next: Cursor | None = None  # where the next page of pending ones starts; None: this is the last
    decided_next: Cursor | None = None  # likewise for the decided ones


def _searched(query, search: str):
    """Requests whose user's name or email, or whose IP, contains the search text (any case)."""
    if not search:
        return query
    return query.join(User, on=AccessRequest.user).where(
        User.name.contains(search) | User.email.contains(search) | AccessRequest.ip.contains(search))


def _page(practice_ids: list[int], decided: bool, search: str, cursor: Cursor | None, size: int):
    """One page (and one row more, to know whether there is another) of one table: each practice's requests read
    along its (practice, status, time) index and merged; one query with whatever each row shows."""
    if not practice_ids:
        return [], None
    if decided:
        column, order = AccessRequest.decided_at, (AccessRequest.decided_at.desc(), AccessRequest.id.desc())
        status = AccessRequest.status.in_([APPROVED, REJECTED])
    else:
        column, order = AccessRequest.created_at, (AccessRequest.created_at, AccessRequest.id)
        status = AccessRequest.status == PENDING
    groups = ([AccessRequest.practice == pid for pid in practice_ids] if len(practice_ids) <= MAX_PARTS
              else [AccessRequest.practice.in_(practice_ids)])
    parts = [_searched(AccessRequest.select(AccessRequest.id, column.alias("place")), search)
             .where(group & status & column.is_null(False),
                    *beyond(column, AccessRequest.id, cursor, descending=decided))
             .order_by(*order).limit(size + 1) for group in groups]
    rows = list(among(_with_people(shown_only=True), AccessRequest, parts, size + 1, decided).order_by(*order).limit(size + 1))
    last = rows[size - 1] if len(rows) > size else None
    return rows[:size], (Cursor(getattr(last, column.name), last.id) if last is not None else None)


def listing(practice_ids: Iterable[int], decided_shown: int = PAGE_SIZE, search: str = "",
            pending_after: Cursor | None = None, decided_after: Cursor | None = None,
            pending_shown: int = PAGE_SIZE) -> Listing:
    """The requests of these practices (those whose user or IP matches `search`): a page of the pending ones, oldest
    first, and one of the decided ones, latest first, each from where its cursor says (two queries)."""
    practice_ids = sorted(practice_ids)
    pending, pending_next = _page(practice_ids, False, search, pending_after, pending_shown)
    decided, decided_next = _page(practice_ids, True, search, decided_after, decided_shown)
    return Listing(pending, decided, pending_next, decided_next)


def version(shown: Listing, pending_total: int) -> str:
    """What a request list looks like, in a few characters: it changes whenever a request shown is decided or goes,
    one arrives or is decided among those shown, or the number waiting changes (no query of its own)."""
    rows = [f"{r.id}:{r.status}" for r in (*shown.pending, *shown.decided)]
    return hashlib.sha256(f"{','.join(rows)}|{shown.pending_next}|{shown.decided_next}|{pending_total}"
                          .encode()).hexdigest()[:16]


def pending_count(practice_ids: Iterable[int]) -> int:
    """How many requests of these practices wait for a decision."""
    return AccessRequest.select().where(
        (AccessRequest.status == PENDING) & AccessRequest.practice.in_(list(practice_ids))).count()


def decidable(request_id: int, practice_ids: Iterable[int]) -> AccessRequest | None:
    """A request of one of these practices, with its people; None when there is no such request among them."""
    return _with_people().where((AccessRequest.id == request_id)
                                & AccessRequest.practice.in_(list(practice_ids))).first()


def default_durations(practice_ids: Iterable[int]) -> dict[int, str]:
    """How long a one-click approval lasts, per practice (one without a setting: until revoked)."""
    found = {pid: FOREVER for pid in practice_ids}
    for row in IPRestriction.select(IPRestriction.practice, IPRestriction.default_duration).where(
            IPRestriction.practice.in_(list(found))):
        found[row.practice_id] = row.default_duration
    return found


class ReasonError(ValueError):
    """A rejection's reason that cannot be stored; `message` says why, for the administrator."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def parse_reason(text: str) -> str:
    """A rejection's reason as stored (trimmed; empty: none given), or ReasonError."""
    reason = (text or "")[:NOTE_READ].strip()
    if has_control_characters(reason):
        raise ReasonError("The reason cannot contain control characters.")
    if len(reason) > REASON_MAX:
        raise ReasonError(f"The reason can be at most {REASON_MAX} characters long (yours has {len(reason)}).")
    return reason


@dataclass(frozen=True)
class Decided:
    request: AccessRequest  # as it stands now, with its user (and role), practice and decider
    won: bool  # this call made the decision; False when someone decided first (request.decided_by says who)


def decide(visit: Visit, request_id: int, status: str, practice_ids: Iterable[int],
           duration: str | None = None, reason: str = "") -> Decided | None:
    """Approve or reject a pending request of one of these practices as the visit's user; of many racing calls,
    exactly one wins. None when there is no such request among these practices.

    An approval lasts `duration` (a core.durations key; None: the practice's default): its grant expires that
    long after the visit's now. A duration that is none of those raises DurationError, and a rejection's reason
    (optional, shown to the user) that is too long or holds a control character raises ReasonError, before
    anything is read or written.
    """
    if status not in (APPROVED, REJECTED):
        raise ValueError(f"a request is approved or rejected, not {status!r}")
    if duration is not None:
        duration = parse_duration(duration)
    reason = parse_reason(reason) if status == REJECTED else ""
    practice_ids = list(practice_ids)
    with database.atomic():
        # The write comes first and only touches a pending row: of many racing clicks, one wins. It also
        # checks the practice, so nothing is read before it and the row is read once, after it.
        won = (AccessRequest.update(status=status, decided_by=visit.user.id, decided_at=visit.now, reason=reason)
               .where((AccessRequest.id == request_id) & (AccessRequest.status == PENDING)
                      & AccessRequest.practice.in_(practice_ids))
               .execute()) == 1
        # Read with the practice's default duration, so approving costs no further query.
        request = (_with_people().select_extend(IPRestriction.default_duration)
                   .switch(AccessRequest)
                   .join(IPRestriction, JOIN.LEFT_OUTER, on=(IPRestriction.practice == AccessRequest.practice),
                         attr="restriction")
                   .where((AccessRequest.id == request_id) & AccessRequest.practice.in_(practice_ids)).first())
        if request is None:  # none of these practices' (or the requester's account is gone: cascaded away)
            return None
        if won:
            detail = f"request #{request.id}"
            if status == APPROVED:
                restriction = getattr(request, "restriction", None)  # no row: the practice never changed a setting
                duration = duration or getattr(restriction, "default_duration", None) or FOREVER
                expires_at = expires_after(visit.now, duration)
                # A grant of an earlier approval (expired, kept for the record) is renewed by this one.
                (Grant.insert(user=request.user_id, practice=request.practice_id, ip=request.ip, request=request.id,
                              created_by=visit.user.id, created_at=visit.now, expires_at=expires_at)
                 .on_conflict(conflict_target=[Grant.user, Grant.practice, Grant.ip],
                              update={Grant.request: request.id, Grant.created_by: visit.user.id,
                                      Grant.created_at: visit.now, Grant.expires_at: expires_at})
                 .execute())
                detail += f"; duration: {duration_words(duration)}"
                if expires_at is not None:
                    detail += f" (expires {expires_at:%Y-%m-%d %H:%M} UTC)"
            elif reason:
                detail += f"; reason: {reason}"
            audit.record_by(visit, f"request_{status}", practice=request.practice_id,
                            target=f"{request.user.email} from {request.ip}", detail=detail, subject_ip=request.ip)
            notifications.request_decided(request, visit.now)  # mail to the requester, queued only if this commits
    return Decided(request, won)

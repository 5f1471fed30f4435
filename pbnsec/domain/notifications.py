"""Notifications about access requests: who gets a mail, when, and what it says.

request_arrived and request_decided are called inside the transaction of their event, so a mail is queued (an
outbox row) only when the event commits; pbnsec.mailer sends it afterwards. What a mail says is put together when
it is sent (compose), so a "requests waiting" mail lists what is still pending then, and one row per
administrator stands for every request that arrives before it goes out.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import JOIN, fn

from pbnsec.core.mail import header_text, quoted
from pbnsec.core.timezones import abbreviation, to_local
from pbnsec.models import (
    APPROVED,
    PENDING,
    REQUEST_DECIDED,
    REQUESTS_WAITING,
    SENDING,
    SENT,
    AccessRequest,
    Grant,
    Membership,
    OutboxMail,
    Practice,
    Role,
    User,
)

LISTED_MOST = 50  # a "requests waiting" mail lists this many requests, then says how many more there are


@dataclass(frozen=True)
class MailSettings:
    mail_from: str  # the From of every mail
    base_url: str | None  # where people open pbnsec; None: mails name the page instead of linking to it
    batch: timedelta  # at most one "requests waiting" mail per administrator this often


_settings: MailSettings | None = None  # None: mail is off and nothing is queued
_queued = threading.local()


def configure(settings: MailSettings | None) -> None:
    """Switch mail on with these settings, or off (None); the app factory calls it from PBNSEC_SMTP_URL & co."""
    global _settings
    _settings = settings


def settings() -> MailSettings | None:
    return _settings


def take_queued() -> bool:
    """Whether this thread queued a mail since it last asked (the web layer then wakes the sender)."""
    queued = getattr(_queued, "yes", False)
    _queued.yes = False
    return queued


# --- queued with the event ---

def security_admins_of(practice_id: int):
    """The active security administrators (Owners, Admins) who are members of the practice."""
    return (User.select(User.id).join(Role).switch(User).join(Membership)
            .where((Membership.practice == practice_id) & Role.is_security_admin & User.active))


def request_arrived(request: AccessRequest, now: datetime) -> int:
    """Queue a "requests waiting" mail to each administrator of the request's practice who has none waiting;
    returns how many were queued. It goes out at once, or `batch` after the last one they were sent."""
    if _settings is None:
        return 0
    admins = [u.id for u in security_admins_of(request.practice_id) if u.id != request.user_id]
    if not admins:
        return 0
    last_sent = dict(
        OutboxMail.select(OutboxMail.recipient, fn.MAX(fn.COALESCE(OutboxMail.sent_at, OutboxMail.last_attempt_at)))
        .where((OutboxMail.kind == REQUESTS_WAITING) & OutboxMail.status.in_([SENT, SENDING])
               & OutboxMail.recipient.in_(admins))
        .group_by(OutboxMail.recipient).tuples())
    rows = [{"kind": REQUESTS_WAITING, "recipient": admin, "created_at": now,
             "send_after": max(now, _as_time(last_sent[admin]) + _settings.batch) if last_sent.get(admin) else now}
            for admin in admins]
    # An administrator who already has one waiting keeps it (the unique index on waiting ones): it will list
    # this request too.
    OutboxMail.insert_many(rows).on_conflict_ignore().execute()
    _queued.yes = True
    return len(rows)


def request_decided(request: AccessRequest, now: datetime) -> bool:
    """Queue the mail telling the requester their request was decided (not to a deactivated user)."""
    if _settings is None or not request.user.active:
        return False
    OutboxMail.create(kind=REQUEST_DECIDED, recipient=request.user_id, request=request.id, created_at=now,
                      send_after=now)
    _queued.yes = True
    return True


def _as_time(value) -> datetime:
    """MAX() over a DATETIME column comes back as text from SQLite."""
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


# --- what a mail says, when it is sent ---

@dataclass(frozen=True)
class Composed:
    to_name: str
    to_address: str
    subject: str
    body: str


@dataclass(frozen=True)
class Skipped:
    reason: str  # why there is nothing to send


def compose(mail: OutboxMail) -> Composed | Skipped:
    """The mail as it is to be sent now, or why nothing is sent (deactivated, nothing pending any more)."""
    recipient = User.select(User, Role).join(Role).where(User.id == mail.recipient_id).first()
    if recipient is None or not recipient.active:
        return Skipped("the recipient is deactivated")
    if mail.kind == REQUESTS_WAITING:
        return _requests_waiting(recipient)
    if mail.kind == REQUEST_DECIDED:
        return _request_decided(recipient, mail.request_id)
    return Skipped(f"unknown kind of mail {mail.kind!r}")


def _local(at: datetime, practice: Practice) -> str:
    local = to_local(at, practice.time_zone)
    return f"{local:%Y-%m-%d %H:%M} {abbreviation(local)}"


def _link(path: str, words: str) -> str:
    base = _settings.base_url if _settings is not None else None
    return f"{words}:\n{base}{path}" if base else f"{words} (the page {path} of pbnsec)."


def _requests_waiting(admin: User) -> Composed | Skipped:
    if not admin.role.is_security_admin:
        return Skipped("the recipient is no longer a security administrator")
    theirs = Membership.select(Membership.practice).where(Membership.user == admin.id)
    pending = (AccessRequest.select(AccessRequest, User, Role, Practice)
               .join(User, on=AccessRequest.user).join(Role).switch(AccessRequest).join(Practice)
               .where((AccessRequest.status == PENDING) & AccessRequest.practice.in_(theirs))
               .order_by(Practice.name, AccessRequest.created_at, AccessRequest.id))
    listed = list(pending.limit(LISTED_MOST + 1))
    if not listed:
        return Skipped("no request is pending any more")
    total = pending.count() if len(listed) > LISTED_MOST else len(listed)
    listed = listed[:LISTED_MOST]
    if total == 1:
        one = listed[0]
        subject = f"pbnsec: access request from {header_text(one.user.name, 60)} for {one.practice.name}"
    else:
        subject = f"pbnsec: {total} access requests wait for your decision"
    lines = [f"Hello {header_text(admin.name, 100)},", "",
             "An access request waits for your decision:" if total == 1
             else f"{total} access requests wait for your decision:"]
    practice = None
    for r in listed:
        if r.practice_id != getattr(practice, "id", None):
            practice = r.practice
            lines += ["", header_text(practice.name, 100)]
        lines.append(f"  * {header_text(r.user.name, 100)} ({header_text(r.user.role.name, 50)}, {r.user.email})")
        lines.append(f"    from {r.ip}, asked {_local(r.created_at, practice)}")
        if r.note:
            lines += ["    Note:", quoted(r.note)]
    if total > len(listed):
        lines += ["", f"… and {total - len(listed)} more."]
    lines += ["", _link("/security/requests", f"Approve or reject {'it' if total == 1 else 'them'} in pbnsec under "
                                               "Security Management › IP Access Requests")]
    minutes = int(_settings.batch.total_seconds() // 60) if _settings is not None else 0
    lines += ["", "This mail lists every request still pending in the practices you administer"
              + (f"; you get at most one every {minutes} minutes." if minutes else ".")]
    return Composed(admin.name, admin.email, subject, "\n".join(lines))


def _request_decided(user: User, request_id: int) -> Composed | Skipped:
    decider = User.alias()
    request = (AccessRequest.select(AccessRequest, Practice, decider).join(Practice).switch(AccessRequest)
               .join(decider, JOIN.LEFT_OUTER, on=AccessRequest.decided_by)
               .where((AccessRequest.id == request_id) & (AccessRequest.user == user.id)).first())
    if request is None or request.status == PENDING:
        return Skipped("the request is gone or no longer decided")
    practice = request.practice
    who = header_text(request.decided_by.name, 100) if request.decided_by_id else "an administrator"
    when = _local(request.decided_at, practice) if request.decided_at else "just now"
    where = f"{header_text(practice.name, 100)} from {request.ip}"
    lines = [f"Hello {header_text(user.name, 100)},", ""]
    if request.status == APPROVED:
        subject = f"pbnsec: your access request for {practice.name} was approved"
        grant = Grant.select(Grant.expires_at).where(Grant.request == request.id).first()
        lines.append(f"{who} approved your access request for {where} on {when}.")
        if grant is not None and grant.expires_at is not None:
            lines.append(f"The approval lasts until {_local(grant.expires_at, practice)}.")
        else:
            lines.append("The approval lasts until an administrator revokes it.")
        lines += ["", _link("/login", f"Sign in from {request.ip} to continue")]
    else:
        subject = f"pbnsec: your access request for {practice.name} was rejected"
        lines.append(f"{who} rejected your access request for {where} on {when}.")
        reason = getattr(request, "reason", "") or ""
        if reason.strip():
            lines += ["Reason:", quoted(reason)]
        else:
            lines.append(f"No reason was given; an administrator of {header_text(practice.name, 100)} can tell you "
                         "more.")
        lines += ["", _link("/access-requests", "Your access requests")]
    return Composed(user.name, user.email, subject, "\n".join(lines))

"""People: security administrators add, reset, change and deactivate the people of their practices.

Every operation takes the visit and the practices its user administers from where they are (the web passes
`administered_practices()`; the server console, a visit without a user, passes every practice and is bound by no
role). The rules, checked under change_lock() so racing administrators leave one consistent result:

- an administrator manages a person only when every practice of that person is one they administer from here:
  an Admin of practice A never changes anything for someone who also works in practice B (the Owner of both does);
- nobody manages a person whose role is above their own, or grants a role above their own (Role.position: the
  Owner, 0, is highest);
- nobody deactivates themselves or changes their own role or practices here (that is how one locks oneself out),
  and the last active Owner is never deactivated or given another role.

A refused change is a Refusal (code and message) and changes nothing; every change is audited in each practice of
the person, so each practice's administrators see what happened to their people.
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import IntegrityError, fn
from werkzeug.security import generate_password_hash

from pbnsec.core.text import parse_id, without_control_characters
from pbnsec.db import change_lock, database
from pbnsec.domain import audit, sessions
from pbnsec.domain.access import Refusal
from pbnsec.domain.users import (
    PASSWORD_HASH,
    AccountError,
    check_password_for,
    create_user,
    find_role,
    generate_password,
    typed_practice_name,
)
from pbnsec.domain.visit import Visit
from pbnsec.models import AuditEvent, Invite, Membership, Practice, Role, SignIn, User

INVITE_LIFETIME = timedelta(hours=72)
PAGE_SIZE = 50
SEARCH_MAX = 100
ONE_TIME_PASSWORD, INVITE_LINK = "password", "invite"
HOW = (ONE_TIME_PASSWORD, INVITE_LINK)


def _refuse(visit: Visit, code: str, message: str) -> Refusal:
    """A refused change to a person: codes not_yours (403 on the web), invalid_choice, last_owner, yourself,
    inactive, conflict, unchanged."""
    return Refusal(message, visit.practice.id if visit.practice is not None else 0, False, advice="", code=code)


def _audit(visit: Visit, action: str, practice_id, target: str, detail: str = "") -> None:
    """One audit event of the visit; the server console is recorded as "cli" from "local"."""
    if visit.user is None:
        audit.record(action, actor_label="cli", actor_ip="local", practice=practice_id, target=target, detail=detail)
    else:
        audit.record_by(visit, action, practice=practice_id, target=target, detail=detail)


def _record(visit: Visit, action: str, user: User, practice_ids, detail: str = "") -> None:
    """Audit a change to a person once in each of the practices concerned."""
    for practice_id in sorted(set(practice_ids)) or [None]:
        _audit(visit, action, practice_id, user.email, detail)


def _position(visit: Visit) -> int:
    """How high the visit's user stands (lower is higher); the console stands above everyone."""
    return visit.user.role.position if visit.user is not None else -1


def practice_ids_of(user: User) -> set[int]:
    return {m.practice_id for m in Membership.select(Membership.practice).where(Membership.user == user)}


def grantable_roles(visit: Visit) -> list[Role]:
    """The roles the visit's user may give: their own and those below it."""
    return list(Role.select().where(Role.position >= _position(visit)).order_by(Role.position))


def manage_refusal(visit: Visit, administered: Collection[Practice], user: User) -> Refusal | None:
    """Why the visit's user may not change this person at all, else None."""
    ids = {p.id for p in administered}
    outside = practice_ids_of(user) - ids
    if outside:
        names = ", ".join(p.name for p in Practice.select().where(Practice.id.in_(list(outside)))
                          .order_by(Practice.name))
        return _refuse(visit, "not_yours", f"{user.name} also works in {names}, which you do not administer from "
                                           "here: only an administrator of all their practices can change them.")
    if user.role.position < _position(visit):
        return _refuse(visit, "not_yours", f"{user.name} is {user.role.name}, above your role: you cannot change them.")
    return None


# --- the list ---

@dataclass(frozen=True)
class PersonRow:
    user: User
    practices: list[Practice]
    last_sign_in_at: datetime | None
    last_sign_in_ip: str
    last_sign_in_practice: int | None  # where it was: its time is shown in that practice's zone
    manageable: bool


@dataclass(frozen=True)
class PeoplePage:
    rows: list[PersonRow]
    search: str
    page: int
    pages: int
    total: int


def _visible(administered: Collection[Practice]):
    """People with at least one membership in these practices."""
    ids = [p.id for p in administered]
    return User.select(User.id).join(Membership).where(Membership.practice.in_(ids))


def list_people(visit: Visit, administered: Sequence[Practice], search: str = "", page: int = 1) -> PeoplePage:
    """The people of the administered practices, by name, a page at a time: search matches name or email."""
    # Control characters match no name or email (and NUL cannot even be sent to PostgreSQL): searched without them.
    search = " ".join(without_control_characters(search or "").split())[:SEARCH_MAX]
    query = User.select(User, Role).join(Role).where(User.id.in_(_visible(administered)))
    if search:
        query = query.where(User.name.contains(search) | User.email.contains(search))
    total = query.count()
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    users = list(query.order_by(fn.LOWER(User.name), User.id).paginate(page, PAGE_SIZE))
    ids = [u.id for u in users]
    names = {p.id: p for p in Practice.select()}
    memberships: dict[int, list[Practice]] = {i: [] for i in ids}
    for m in Membership.select().where(Membership.user.in_(ids)):
        memberships[m.user_id].append(names[m.practice_id])
    # The last allowed sign-in each, in a practice administered from here (what happens elsewhere is not theirs).
    latest = (AuditEvent.select(fn.MAX(AuditEvent.id))
              .where((AuditEvent.action == "login_allowed") & AuditEvent.actor.in_(ids)
                     & AuditEvent.practice.in_([p.id for p in administered]))
              .group_by(AuditEvent.actor))
    last = {e.actor_id: e for e in AuditEvent.select().where(AuditEvent.id.in_(latest))} if ids else {}
    administered_ids = {p.id for p in administered}
    rows = []
    for user in users:
        practices = sorted(memberships[user.id], key=lambda p: p.name)
        event = last.get(user.id)
        manageable = ({p.id for p in practices} <= administered_ids and user.role.position >= _position(visit))
        rows.append(PersonRow(user, practices, event.at if event else None, event.actor_ip if event else "",
                              event.practice_id if event else None, manageable))
    return PeoplePage(rows, search, page, pages, total)


def find_person(administered: Collection[Practice], user_id) -> User | None:
    """A person of the administered practices, by an id from a URL or form; else None."""
    user_id = parse_id(user_id)
    if user_id is None:
        return None
    return (User.select(User, Role).join(Role)
            .where((User.id == user_id) & User.id.in_(_visible(administered))).first())


def find_by_email(email: str) -> User | None:
    return User.select(User, Role).join(Role).where(User.email == (email or "").strip().lower()).first()


# --- passwords and invites ---

@dataclass(frozen=True)
class Issued:
    """A new password shown once, or an invite link's token (only its hash is stored), for a person."""

    user: User
    password: str | None = None
    invite_token: str | None = None
    expires_at: datetime | None = None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _issue(visit: Visit, user: User, how: str) -> Issued:
    """Inside the caller's transaction: a one-time password (to change at first sign-in) or an invite link.

    Either way the person's sign-ins end and earlier unused links stop working.
    """
    Invite.update(used_at=visit.now).where((Invite.user == user) & Invite.used_at.is_null()).execute()
    sessions.end_others(user, keep=None)
    if how == ONE_TIME_PASSWORD:
        password = generate_password()
        User.update(password_hash=generate_password_hash(password, method=PASSWORD_HASH),
                    must_change_password=True).where(User.id == user.id).execute()
        return Issued(user, password=password)
    token = secrets.token_urlsafe(32)
    expires = visit.now + INVITE_LIFETIME
    # Until the link is used nobody knows a password that works: not the administrator, not an old one.
    User.update(password_hash=generate_password_hash(secrets.token_urlsafe(32), method=PASSWORD_HASH),
                must_change_password=False).where(User.id == user.id).execute()
    Invite.create(token_hash=_token_hash(token), user=user, created_by=visit.user, created_at=visit.now,
                  expires_at=expires)
    return Issued(user, invite_token=token, expires_at=expires)


def _how_refusal(visit: Visit, how: str) -> Refusal | None:
    if how not in HOW:
        return _refuse(visit, "invalid_choice", "Choose a one-time password or an invite link.")
    return None


def _chosen_practices(visit: Visit, administered: Collection[Practice], practice_ids) -> list[Practice] | Refusal:
    ids = [parse_id(p) for p in practice_ids or ()]
    mine = {p.id: p for p in administered}
    if not ids:
        return _refuse(visit, "invalid_choice", "Choose at least one practice.")
    if any(i not in mine for i in ids):
        return _refuse(visit, "invalid_choice", "Choose among the practices you administer from here.")
    return [mine[i] for i in dict.fromkeys(ids)]


def _chosen_role(visit: Visit, role_name: str) -> Role | Refusal:
    try:
        role = find_role(role_name)
    except AccountError as exc:
        return _refuse(visit, "invalid_choice", str(exc))
    if role.position < _position(visit):
        return _refuse(visit, "invalid_choice", f"You cannot give the role {role.name}: it is above your own.")
    return role


def add_person(visit: Visit, administered: Collection[Practice], email: str, name: str, role_name: str,
               practice_ids, how: str) -> Issued | Refusal:
    """Add an active person with a one-time password or an invite link (create_user's rules for the rest)."""
    practices = _chosen_practices(visit, administered, practice_ids)
    if isinstance(practices, Refusal):
        return practices
    role = _chosen_role(visit, role_name)
    if isinstance(role, Refusal):
        return role
    refusal = _how_refusal(visit, how)
    if refusal:
        return refusal
    try:
        with change_lock():
            user, password = create_user(email, name, role.name, [p.name for p in practices])
            issued = _issue(visit, user, how) if how == INVITE_LINK else Issued(user, password=password)
            _record(visit, "user_created", user, [p.id for p in practices],
                    f"role: {role.name}; {'invite link' if how == INVITE_LINK else 'one-time password'}")
    except AccountError as exc:
        if User.select().where(User.email == (email or "").strip().lower()).exists():
            # The same words whichever practices the account is in: that is not this administrator's to learn.
            return _refuse(visit, "invalid_choice", f"An account with the email {email.strip().lower()!r} already "
                           "exists. If they work at your practice, find them in People; if not, an Owner can add "
                           "your practice to their account.")
        return _refuse(visit, "invalid_choice", str(exc))
    return issued


def reset_password(visit: Visit, administered: Collection[Practice], user: User, how: str) -> Issued | Refusal:
    """A new one-time password or invite link for the person; their sign-ins end."""
    refusal = _how_refusal(visit, how)
    if refusal:
        return refusal
    with change_lock():
        user = User.select(User, Role).join(Role).where(User.id == user.id).get()  # as it is now, under the lock
        refusal = manage_refusal(visit, administered, user)
        if refusal is None and visit.user is not None and visit.user.id == user.id:
            refusal = _refuse(visit, "yourself", "Change your own password under Password.")
        if refusal is None and not user.active:
            refusal = _refuse(visit, "inactive", f"{user.name} is deactivated: reactivate them first.")
        if refusal:
            return refusal
        issued = _issue(visit, user, how)
        _record(visit, "password_reset", user, practice_ids_of(user),
                "invite link" if how == INVITE_LINK else "one-time password")
    return issued


@dataclass(frozen=True)
class InviteCheck:
    invite: Invite | None
    error: str | None = None
    status: int = 200  # what the web answers: 404 unknown, 410 used or expired, 403 deactivated


ASK_AGAIN = "Ask your administrator for a new one."


def check_invite(token: str, now: datetime) -> InviteCheck:
    """The invite behind a link, or why it cannot be used (unknown, used, expired, account deactivated)."""
    invite = None
    if isinstance(token, str) and 20 <= len(token) <= 100:
        invite = Invite.select(Invite, User).join(User).where(Invite.token_hash == _token_hash(token)).first()
    if invite is None:
        return InviteCheck(None, f"This invite link is not valid. {ASK_AGAIN}", 404)
    if invite.used_at is not None:
        return InviteCheck(None, f"This invite link was already used, or replaced by a newer one. {ASK_AGAIN}", 410)
    if invite.expires_at <= now:
        return InviteCheck(None, f"This invite link has expired (links last 72 hours). {ASK_AGAIN}", 410)
    if not invite.user.active:
        return InviteCheck(None, "This account is deactivated. Ask your administrator.", 403)
    return InviteCheck(invite)


def accept_invite(visit: Visit, token: str, new: str, repeat: str) -> dict[str, str]:
    """Set the invited person's password once; returns field errors (form: "new", "repeat"; link: "link")."""
    found = check_invite(token, visit.now)
    if found.error:
        return {"link": found.error}
    user = found.invite.user
    try:
        check_password_for(user, (new or "")[:1024])
    except AccountError as exc:
        return {"new": str(exc)}
    if new != repeat:
        return {"repeat": "The two passwords differ."}
    with database.atomic():
        # Only the first of two racing submissions uses the link.
        used = Invite.update(used_at=visit.now).where((Invite.id == found.invite.id) & Invite.used_at.is_null()
                                                      & (Invite.expires_at > visit.now)).execute()
        if not used:
            return {"link": "This invite link was used or withdrawn a moment ago. If you set your password, sign in "
                            "with it; otherwise ask your administrator for a new one."}
        User.update(password_hash=generate_password_hash(new, method=PASSWORD_HASH),
                    must_change_password=False).where(User.id == user.id).execute()
        sessions.end_others(user, keep=None)
        for practice_id in sorted(practice_ids_of(user)) or [None]:
            audit.record_by(visit, "invite_used", actor=user, target=user.email, practice=practice_id)
    return {}


# --- role, practices, deactivation ---

def _active_owners() -> int:
    return User.select().join(Role).where(User.active & (Role.name == "Owner")).count()


def set_role(visit: Visit, administered: Collection[Practice], user: User, role_name: str) -> User | Refusal:
    """Give the person another role (never above the visit's user's own; never the last active Owner's)."""
    role = _chosen_role(visit, role_name)
    if isinstance(role, Refusal):
        return role
    with change_lock():
        user = User.select(User, Role).join(Role).where(User.id == user.id).get()  # as it is now, under the lock
        refusal = manage_refusal(visit, administered, user)
        if refusal:
            return refusal
        if visit.user is not None and visit.user.id == user.id:
            return _refuse(visit, "yourself", "You cannot change your own role: another administrator can.")
        if role.id == user.role_id:
            return _refuse(visit, "unchanged", f"{user.name} is already {role.name}.")
        if user.role.name == "Owner" and user.active and _active_owners() <= 1:
            return _refuse(visit, "last_owner", f"{user.name} is the last active Owner: make someone else Owner "
                                                "first.")
        before = user.role.name
        User.update(role=role).where((User.id == user.id) & (User.role == user.role_id)).execute()
        _record(visit, "user_role_changed", user, practice_ids_of(user), f"{before} → {role.name}")
    return User.select(User, Role).join(Role).where(User.id == user.id).get()


def set_practices(visit: Visit, administered: Collection[Practice], user: User, practice_ids) -> User | Refusal:
    """Make the person a member of exactly these practices, all among those administered from here."""
    practices = _chosen_practices(visit, administered, practice_ids)
    if isinstance(practices, Refusal):
        return practices
    with change_lock():
        refusal = manage_refusal(visit, administered, user)  # under the lock: their practices as they are now
        if refusal:
            return refusal
        if visit.user is not None and visit.user.id == user.id:
            return _refuse(visit, "yourself", "You cannot change your own practices: another administrator can.")
        before, after = practice_ids_of(user), {p.id for p in practices}
        if before == after:
            return _refuse(visit, "unchanged", f"{user.name} is already in exactly these practices.")
        Membership.delete().where((Membership.user == user) & Membership.practice.not_in(list(after))).execute()
        for practice_id in after - before:
            Membership.insert(user=user, practice=practice_id).on_conflict_ignore().execute()
        names = {p.id: p.name for p in Practice.select().where(Practice.id.in_(list(before | after)))}
        detail = "; ".join(part for part in (
            "added to " + ", ".join(sorted(names[i] for i in after - before)) if after - before else "",
            "removed from " + ", ".join(sorted(names[i] for i in before - after)) if before - after else "") if part)
        _record(visit, "user_practices_changed", user, before | after, detail)
    return user


def set_active(visit: Visit, administered: Collection[Practice], user: User, active: bool) -> User | Refusal:
    """Deactivate (every sign-in of theirs ends, in every process, and they cannot sign in) or reactivate."""
    with change_lock():
        user = User.select(User, Role).join(Role).where(User.id == user.id).get()
        refusal = manage_refusal(visit, administered, user)
        if refusal:
            return refusal
        if not active and visit.user is not None and visit.user.id == user.id:
            return _refuse(visit, "yourself", "You cannot deactivate yourself.")
        if user.active == active:
            return _refuse(visit, "unchanged", f"{user.name} is already {'active' if active else 'deactivated'}.")
        if not active and user.role.name == "Owner" and _active_owners() <= 1:
            return _refuse(visit, "last_owner", f"{user.name} is the last active Owner and cannot be deactivated.")
        changed = User.update(active=active).where((User.id == user.id) & (User.active == (not active))).execute()
        if not changed:
            return _refuse(visit, "conflict", f"{user.name} was changed by someone else: look again.")
        if not active:
            # The sign-ins go too: sessions.find refuses an inactive user already, this makes it final.
            SignIn.delete().where(SignIn.user == user).execute()
            Invite.update(used_at=visit.now).where((Invite.user == user) & Invite.used_at.is_null()).execute()
        _record(visit, "user_reactivated" if active else "user_deactivated", user, practice_ids_of(user))
        user.active = active
    return user


# --- practices (the Owner) ---

def may_manage_practices(visit: Visit) -> bool:
    return visit.user is None or visit.user.role.name == "Owner"


def rename_practice(visit: Visit, administered: Collection[Practice], practice_id, name: str) -> Practice | Refusal:
    """Rename a practice administered from here (the Owner, or the console)."""
    if not may_manage_practices(visit):
        return _refuse(visit, "not_yours", "Only an Owner can rename practices.")
    practice = next((p for p in administered if p.id == parse_id(practice_id)), None)
    if practice is None:
        return _refuse(visit, "not_yours", "Choose one of the practices you administer from here.")
    try:
        new = typed_practice_name(name)
    except AccountError as exc:
        return _refuse(visit, "invalid_choice", str(exc))
    if not new:
        return _refuse(visit, "invalid_choice", "Enter a practice name.")
    if len(new) > 100:
        return _refuse(visit, "invalid_choice", "A practice name can be at most 100 characters long.")
    if new == practice.name:
        return _refuse(visit, "unchanged", f"The practice is already called {new}.")
    old = practice.name
    try:
        with change_lock():
            changed = Practice.update(name=new).where((Practice.id == practice.id) & (Practice.name == old)).execute()
            if not changed:
                return _refuse(visit, "conflict", "Someone else renamed it meanwhile: look again.")
            _audit(visit, "practice_renamed", practice.id, new, f"was {old}")
    except IntegrityError:
        return _refuse(visit, "invalid_choice", f"A practice named {new!r} already exists.")
    practice.name = new
    return practice


def console_visit() -> Visit:
    """The server console's visit: no user (recorded as cli), no IP, every practice."""
    return Visit(None, None)


def every_practice() -> list[Practice]:
    return list(Practice.select().order_by(Practice.name))

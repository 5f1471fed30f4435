"""Server-side sign-ins: the session cookie only names one, so the server can end it for good.

A *blocked* sign-in is what a user whose password was right but whose IP no practice allows holds while they wait
for an administrator: it may see and submit their own access requests and, once a decision lets the IP in, become
a full sign-in without the password again (domain.sign_in.resume). It is bound to the IP and the password it began
with: used from another address, or after the password changed, it ends for good.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from pbnsec.db import database
from pbnsec.models import Role, SignIn, User, utcnow

FULL_LIFETIME = timedelta(hours=12)
# Long enough to wait on the blocked page for an administrator's decision, short enough not to be a sign-in.
BLOCKED_LIFETIME = timedelta(hours=2)


def password_stamp(user: User) -> str:
    """A digest of the user's password hash: it changes whenever the password does."""
    return _stamp(user.password_hash)


def _stamp(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()


def _ip_text(ip) -> str:
    # One whose IP cannot be told stays "unknown": it may see its page, and no decision ever lets it in.
    return str(ip) if ip is not None else "unknown"


def start(user: User, blocked: bool = False, ip=None, now: datetime | None = None) -> str:
    """Record a new sign-in for the user and return its token. It is bound to the password `user` holds (the one
    just checked): a password set meanwhile — an administrator's reset racing this sign-in — ends it on its first
    use. A blocked one is bound to `ip` as well."""
    now = now or utcnow()
    SignIn.delete().where(SignIn.expires_at <= now).execute()  # tidy as we go: no cron job needed
    token = secrets.token_urlsafe(32)
    SignIn.create(token=token, user=user, blocked=blocked, created_at=now,
                  expires_at=now + (BLOCKED_LIFETIME if blocked else FULL_LIFETIME),
                  ip=_ip_text(ip) if blocked else None,
                  password_stamp=password_stamp(user))
    return token


def find(token, blocked: bool = False) -> User | None:
    """The active user of a live sign-in of this kind, with the password it began with, else None."""
    user, stale = lookup(token, utcnow(), blocked)
    if stale:
        end(token)
    return user


def lookup(token, now: datetime, blocked: bool = False) -> tuple[User | None, bool]:
    """The active user (with their role) of a live sign-in of this kind, else None; and whether a sign-in was found
    whose password has been set aside since (the caller ends it, or, like the gate, only refuses it). One statement,
    its SQL put together once per database: every request asks it (peewee spends longer writing a query than
    SQLite answers it)."""
    if not isinstance(token, str) or not token:
        return None, False
    sql, params, token_at, time_at = _lookup_sql(database.obj, bool(blocked))
    params = list(params)
    params[token_at], params[time_at] = token, SignIn.expires_at.db_value(now)
    row = database.execute_sql(sql, params).fetchone()
    if row is None:
        return None, False
    *row, stamp = row
    user = User.from_row(_USER_FIELDS, row)
    # The role comes with the user: every request asks whether they are a security administrator.
    user.role = Role.from_row(_ROLE_FIELDS, row[len(_USER_FIELDS):])
    user._dirty.clear()
    # NULL: a full sign-in made before sign-ins were bound to the password (they end within FULL_LIFETIME).
    if stamp is not None and stamp != password_stamp(user):
        return None, True
    user.sign_in_token = token
    return user, False


_USER_FIELDS, _ROLE_FIELDS = tuple(User._meta.sorted_fields), tuple(Role._meta.sorted_fields)


@lru_cache(maxsize=16)
def _lookup_sql(_database, blocked: bool) -> tuple[str, tuple, int, int]:
    """lookup's statement for one kind of sign-in as this database writes it (SQLite and PostgreSQL differ), with
    where its token and time go among the parameters."""
    token_mark, time_mark = "\0token", datetime(1901, 2, 3, 4, 5, 6)
    query = (User.select(*_USER_FIELDS, *_ROLE_FIELDS, SignIn.password_stamp).join(Role).switch(User).join(SignIn)
             .where((SignIn.token == token_mark) & (SignIn.blocked == blocked) & (SignIn.expires_at > time_mark)
                    & User.active))
    sql, params = query.sql()
    return sql, tuple(params), params.index(token_mark), params.index(SignIn.expires_at.db_value(time_mark))


# Why a blocked sign-in is no longer valid, as the person is told (they typed the right password: no secret here).
ENDED = {
    "none": "Please sign in again.",
    "expired": f"You waited more than {int(BLOCKED_LIFETIME.total_seconds() // 3600)} hours on the blocked page. "
               "Please sign in again.",
    "moved": "Your IP address changed since you signed in. Please sign in again from here.",
    "password_changed": "Your password was changed since you signed in. Please sign in again.",
}


@dataclass(frozen=True)
class Blocked:
    """A blocked sign-in as seen from one IP at one time: its user while it is valid, else why it ended."""

    user: User | None
    ended: str = ""  # a key of ENDED when user is None

    @property
    def message(self) -> str:
        return ENDED.get(self.ended, ENDED["none"])


def find_blocked(token, ip, now: datetime) -> Blocked:
    """The blocked sign-in `token` used from `ip` at `now`: valid only before it expires, from the IP it began at,
    with the password it began with, for an active user. One that is no longer valid ends for good."""
    if not isinstance(token, str) or not token:
        return Blocked(None, "none")
    row = (SignIn.select(SignIn, User, Role).join(User).join(Role)
           .where((SignIn.token == token) & SignIn.blocked).first())
    if row is None:
        return Blocked(None, "none")
    user = row.user
    ended = ("none" if not user.active else
             "expired" if row.expires_at <= now else
             "moved" if row.ip != _ip_text(ip) else
             "password_changed" if row.password_stamp != password_stamp(user) else "")
    if ended:
        end(token)
        return Blocked(None, ended)
    user.sign_in_token = token
    return Blocked(user)


def take_blocked(token, now: datetime) -> bool:
    """End a blocked sign-in that is still live, to replace it with a full one; False when it had already ended (of
    two racing continues, one takes it)."""
    return SignIn.delete().where((SignIn.token == token) & SignIn.blocked & (SignIn.expires_at > now)).execute() == 1


def end(token) -> None:
    if isinstance(token, str):
        SignIn.delete().where(SignIn.token == token).execute()


def end_others(user: User, keep: str | None, password_hash: str | None = None) -> None:
    """End every sign-in of the user except `keep` (after a password change: `keep` is then bound to the new
    `password_hash`, the others end whatever they were bound to)."""
    SignIn.delete().where((SignIn.user == user) & (SignIn.token != (keep or ""))).execute()
    if keep and password_hash is not None:
        SignIn.update(password_stamp=_stamp(password_hash)).where(SignIn.token == keep).execute()

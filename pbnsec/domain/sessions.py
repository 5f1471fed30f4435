"""Server-side sign-ins: the session cookie only names one, so the server can end it for good."""
from __future__ import annotations

import secrets
from datetime import timedelta

from pbnsec.models import Role, SignIn, User, utcnow

FULL_LIFETIME = timedelta(hours=12)
BLOCKED_LIFETIME = timedelta(minutes=15)  # the blocked-login page's identity: short on purpose


def start(user: User, blocked: bool = False) -> str:
    """Record a new sign-in for the user and return its token."""
    now = utcnow()
    SignIn.delete().where(SignIn.expires_at <= now).execute()  # tidy as we go: no cron job needed
    token = secrets.token_urlsafe(32)
    SignIn.create(token=token, user=user, blocked=blocked, created_at=now,
                  expires_at=now + (BLOCKED_LIFETIME if blocked else FULL_LIFETIME))
    return token


def find(token, blocked: bool = False) -> User | None:
    """The active user of a live sign-in of this kind, else None."""
    if not isinstance(token, str) or not token:
        return None
    # The role comes with the user: every request asks whether they are a security administrator.
    user = (User.select(User, Role).join(Role).switch(User).join(SignIn)
            .where((SignIn.token == token) & (SignIn.blocked == blocked) & (SignIn.expires_at > utcnow())
                   & User.active)
            .first())
    if user is not None:
        user.sign_in_token = token
    return user


def end(token) -> None:
    if isinstance(token, str):
        SignIn.delete().where(SignIn.token == token).execute()


def end_others(user: User, keep: str | None) -> None:
    """End every sign-in of the user except `keep` (after a password change)."""
    SignIn.delete().where((SignIn.user == user) & (SignIn.token != (keep or ""))).execute()

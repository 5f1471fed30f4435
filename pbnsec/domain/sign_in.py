"""Signing in: the password first, then the IP restrictions of each of the user's practices.

A wrong password never reveals anything about IPs. Every outcome is audited where the practices' administrators
see it and logged in a line fail2ban can read.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pbnsec.core.decision import STATUS_LABELS
from pbnsec.core.text import has_control_characters, without_control_characters
from pbnsec.db import database
from pbnsec.domain import audit, sessions, signin_limits
from pbnsec.domain.access import AccessOverview, overview, why_allowed, why_blocked
from pbnsec.domain.users import authenticate
from pbnsec.domain.visit import Visit
from pbnsec.logs import security_event
from pbnsec.models import Membership, Practice, User

EMAIL_MAX, PASSWORD_MAX = 254, 1024


@dataclass(frozen=True)
class SignInResult:
    """What a sign-in attempt came to: an error to show (with its HTTP status), blocked, or allowed."""

    email: str  # as it is shown back in the form
    error: str | None = None
    status: int = 303
    user: User | None = None
    access: AccessOverview | None = None

    @property
    def blocked(self) -> bool:
        return self.error is None and not self.access.allowed

    @property
    def practice(self) -> Practice | None:
        """Where an allowed sign-in lands: the user's home practice (their first membership) when it lets this IP
        in, else the first one by name that does."""
        return self.access.first_allowed() if self.access is not None else None


def attempt(visit: Visit, email: str, password: str) -> SignInResult:
    """Check a sign-in from the visit's IP: limits, password, then each practice's decision; audited."""
    email, password = (email or "").strip().lower()[:EMAIL_MAX], (password or "")[:PASSWORD_MAX]
    for field, value in (("email address", email), ("password", password)):
        if has_control_characters(value):
            # Refused before anything is counted, looked up or hashed: no account has one, and NUL breaks PostgreSQL.
            return SignInResult(without_control_characters(email), f"The {field} contains a control character.", 422)
    account = User.get_or_none(User.email == email) if email else None
    access = overview(account, visit.ip, visit.now) if account is not None else None
    limit = signin_limits.begin(email, visit.ip, access is not None and access.from_office)
    if limit.wait:
        _refused(visit, "login_rate_limited", email)
        return SignInResult(email, f"Too many sign-in attempts. {limit.wait_text}", 429)
    user = authenticate(email, password)
    if user is None:
        _refused(visit, "login_failed", email)
        return SignInResult(email, "Wrong email or password.", 401)
    limit.succeeded()
    # Only now, with the password verified, do IP restrictions come into it (worked out above for this account).
    result = SignInResult(email, user=user, access=access)
    if not result.blocked:
        landing = result.practice
        audit.record_by(visit, "login_allowed", actor=user, practice=landing, target=user.email,
                        detail=f"allowed by {why_allowed(access.row(landing.id).decision)}")
        security_event("login_allowed", email=user.email, practice=landing.name, ip=visit.ip, level=logging.INFO)
    # One event per blocked practice, each telling only that practice's administrators about that practice.
    for row in access.rows:
        if not row.decision.allowed:
            audit.record_by(visit, "login_blocked", actor=user, practice=row.practice, target=user.email,
                            detail=f"{row.decision.reason}: "
                                   f"{why_blocked(row.decision, row.practice, visit.ip_text)}")
            security_event("login_blocked", email=user.email, practice=row.practice.name,
                           reason=row.decision.reason, ip=visit.ip)
    if result.blocked and user.must_change_password:
        # A password an administrator set (shown on a console) is replaced at the first full sign-in; until then it
        # opens no blocked sign-in either: whoever saw the console must not ask for access in the person's name.
        return SignInResult(email, f"Your IP address {visit.ip_text} is not approved, and the password you used was "
                                   "set by an administrator to be replaced at your first sign-in. Sign in from an "
                                   "approved place (such as the office) to choose your own; it cannot be used to "
                                   "ask for access.", 403, user=user, access=access)
    return result


@dataclass(frozen=True)
class Continued:
    """What continuing from the blocked page came to: a full sign-in (its token) in a practice, or why not."""

    error: str | None = None
    code: str = ""  # ended (the blocked sign-in is no longer valid: sign in again) | blocked (the IP still is)
    user: User | None = None
    practice: Practice | None = None
    token: str = ""


def resume(visit: Visit, token: str, practice_id: int | None) -> Continued:
    """Turn the blocked sign-in `token` into a full sign-in at the practice, without the password again, if the
    whole decision allows it now: the same IP it began at, the same password, an active user, and the practice
    letting this IP in. Audited as a sign-in (login_allowed) with the rule that lets them in."""
    blocked = sessions.find_blocked(token, visit.ip, visit.now)
    if blocked.user is None:
        return Continued(blocked.message, "ended")
    user = blocked.user
    row = overview(user, visit.ip, visit.now).row(practice_id)
    if row is None:
        return Continued("Choose one of your practices.", "blocked", user)
    if not row.decision.allowed:
        return Continued(f"{row.practice.name} does not let you in from {visit.ip_text} now "
                         f"({STATUS_LABELS.get(row.status, row.status)}).", "blocked", user)
    with database.atomic():
        if not sessions.take_blocked(token, visit.now):  # a racing continue of the same browser took it
            return Continued(sessions.ENDED["none"], "ended")
        full = sessions.start(user, now=visit.now)
        audit.record_by(visit, "login_allowed", actor=user, practice=row.practice, target=user.email,
                        detail=f"allowed by {why_allowed(row.decision)}; continued from the blocked page")
    security_event("login_allowed", email=user.email, practice=row.practice.name, ip=visit.ip, level=logging.INFO)
    return Continued(user=user, practice=row.practice, token=full)


def _refused(visit: Visit, action: str, email: str) -> None:
    """Record a refused sign-in where the account's practices' administrators will see it."""
    practices = list(Practice.select().join(Membership).join(User).where(User.email == email)) if email else []
    for practice in practices or [None]:
        audit.record_by(visit, action, actor_label=email or "(blank)", target=email, practice=practice)
    security_event(action, email=email, ip=visit.ip)  # one line per attempt, however many practices


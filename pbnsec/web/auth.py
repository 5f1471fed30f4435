"""Sign-in, sign-out, the blocked-login page and a user's own access requests."""
from __future__ import annotations

import logging

from flask import (
    Blueprint,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user

from pbnsec.core.text import has_control_characters, without_control_characters
from pbnsec.domain import audit, sessions, signin_limits
from pbnsec.domain.access import overview, why_allowed
from pbnsec.domain.access_requests import NOTE_MAX, request_access
from pbnsec.domain.users import authenticate
from pbnsec.domain.visit import Visit
from pbnsec.logs import security_event
from pbnsec.models import AccessRequest, Membership, Practice, User
from pbnsec.web.hook import access_of, blocked_user, end_sign_in, start_blocked_sign_in
from pbnsec.web.pages import parse_id, safe_next

bp = Blueprint("auth", __name__)

def _audit_account(action: str, email: str) -> None:
    """Record a failed sign-in where the account's practices' administrators will see it."""
    practices = list(Practice.select().join(Membership).join(User).where(User.email == email)) if email else []
    for practice in practices or [None]:
        audit.record_by(g.visit, action, actor_label=email or "(blank)", target=email, practice=practice)
    security_event(action, email=email, ip=g.client_ip)  # one line per attempt, however many practices


def _record_blocked(user, practice, decision) -> None:
    """A sign-in blocked at one practice: in that practice's audit log and in the operators' log."""
    audit.record_by(g.visit, "login_blocked", actor=user, practice=practice, target=user.email,
                 detail=f"{decision.reason}: IP {g.client_ip or 'unknown'} is not approved")
    security_event("login_blocked", email=user.email, practice=practice.name, reason=decision.reason,
                   ip=g.client_ip)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("auth/login.html", email="", error=None, next_url=next_url)

    email = request.form.get("email", "").strip().lower()[:254]
    password = request.form.get("password", "")[:1024]
    for field, value in (("email address", email), ("password", password)):
        if has_control_characters(value):
            # Refused before anything is counted, looked up or hashed: no account has one, and NUL breaks PostgreSQL.
            error = f"The {field} contains a control character."
            return render_template("auth/login.html", email=without_control_characters(email), error=error,
                                   next_url=next_url), 422
    account = User.get_or_none(User.email == email) if email else None
    access = overview(account, g.client_ip, g.visit.now) if account is not None else None
    attempt = signin_limits.begin(email, g.client_ip, access is not None and access.from_office)
    if attempt.wait:
        _audit_account("login_rate_limited", email)
        error = f"Too many sign-in attempts. {attempt.wait_text}"
        return render_template("auth/login.html", email=email, error=error, next_url=next_url), 429

    user = authenticate(email, password)
    if user is None:
        _audit_account("login_failed", email)
        error = "Wrong email or password."
        return render_template("auth/login.html", email=email, error=error, next_url=next_url), 401
    attempt.succeeded()

    # Only now, with the password verified, do IP restrictions come into it.
    allowed = access.allowed  # worked out above for this account, which the password now proves is theirs
    if not allowed:
        for row in access.rows:
            _record_blocked(user, row.practice, row.decision)
        start_blocked_sign_in(user)
        return redirect(url_for("auth.blocked"), code=303)

    end_sign_in()  # whatever this browser held before (a blocked sign-in, another account) ends here
    user.sign_in_token = sessions.start(user)
    login_user(user)
    session["practice_id"] = allowed[0].id
    # One event per practice, each telling only that practice's administrators about that practice.
    audit.record_by(g.visit, "login_allowed", actor=user, practice=allowed[0], target=user.email,
                    detail=f"allowed by {why_allowed(access.row(allowed[0].id).decision)}")
    security_event("login_allowed", email=user.email, practice=allowed[0].name, ip=g.client_ip, level=logging.INFO)
    for row in access.rows:
        if not row.decision.allowed:
            _record_blocked(user, row.practice, row.decision)
    if user.must_change_password:
        return redirect(url_for("account.password"), code=303)
    return redirect(next_url or url_for("home.index"), code=303)


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        audit.record_by(g.visit, "logout", target=current_user.email, practice=session.get("practice_id"))
    end_sign_in()
    flash("You have signed out.", "info")
    return redirect(url_for("auth.login"), code=303)


# --- the blocked user: status per practice and access requests ---

def requester():
    """Who is asking: the signed-in user, or the blocked sign-in of a blocked sign-in; else None."""
    if current_user.is_authenticated:
        return current_user._get_current_object()
    return blocked_user()


def _requests_page(user, rows, errors=None, note="", code=200):
    history = (AccessRequest.select(AccessRequest, Practice).join(Practice)
               .where(AccessRequest.user == user)
               .order_by(AccessRequest.created_at.desc(), AccessRequest.id.desc()).limit(50))
    template = "auth/access_requests.html" if current_user.is_authenticated else "auth/blocked.html"
    return render_template(template, user=user, rows=rows, history=list(history),
                           errors=errors or {}, note=note, note_max=NOTE_MAX), code


@bp.route("/blocked")
def blocked():
    if current_user.is_authenticated:
        return redirect(url_for("auth.access_requests"), code=303)
    user = requester()
    if user is None:
        flash("Please sign in again.", "info")
        return redirect(url_for("auth.login"), code=303)
    return _requests_page(user, access_of(user).rows)


@bp.route("/access-requests", methods=["GET", "POST"])
def access_requests():
    user = requester()
    if user is None:
        flash("Please sign in again.", "info")
        return redirect(url_for("auth.login"), code=303)
    access = access_of(user)
    if request.method == "GET":
        return _requests_page(user, access.rows)

    asked = request_access(Visit(user, g.client_ip, now=g.visit.now), access,
                           [parse_id(v) for v in request.form.getlist("practice")], request.form.get("note", ""))
    if asked.errors:
        code = 429 if asked.code == "rate_limited" else 422
        return _requests_page(user, access.rows, asked.errors, asked.note, code=code)
    if asked.created:
        flash(f"Access requested for {', '.join(p.name for p in asked.created)}. An administrator will review it.",
              "success")
    else:
        flash("Your request is already pending.", "info")
    return redirect(request.path if current_user.is_authenticated else url_for("auth.blocked"), code=303)

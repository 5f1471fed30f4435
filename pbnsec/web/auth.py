"""Sign-in, sign-out, the blocked-login page and a user's own access requests."""
from __future__ import annotations

from datetime import timedelta

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
from pbnsec.domain import audit, ratelimit, sessions, sign_in, signin_limits
from pbnsec.domain.access_requests import submit
from pbnsec.domain.visit import Visit
from pbnsec.models import PENDING, AccessRequest, Practice
from pbnsec.web.hook import access_of, blocked_user, end_sign_in, start_blocked_sign_in
from pbnsec.web.pages import safe_next

bp = Blueprint("auth", __name__)

@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("auth/login.html", email="", error=None, next_url=next_url)
    result = sign_in.attempt(g.visit, request.form.get("email", ""), request.form.get("password", ""))
    if result.error:
        return render_template("auth/login.html", email=result.email, error=result.error,
                               next_url=next_url), result.status
    if result.blocked:
        start_blocked_sign_in(result.user)
        return redirect(url_for("auth.blocked"), code=303)
    end_sign_in()  # whatever this browser held before (a blocked sign-in, another account) ends here
    result.user.sign_in_token = sessions.start(result.user)
    login_user(result.user)
    session["practice_id"] = result.practice.id
    if result.user.must_change_password:
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

NOTE_MAX = 500
NOTE_WHITESPACE = "\n\t"  # a note may run over several lines (CR LF arrives as LF by then)
REQUEST_WINDOW = timedelta(hours=1)
REQUEST_LIMIT_PER_USER = 10
REQUEST_LIMIT_PER_IP = 30


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
    rows = access_of(user).rows
    if request.method == "GET":
        return _requests_page(user, rows)

    # Browsers send a line break as CR LF; the text box counted it as one character, and so do we.
    note = request.form.get("note", "")[:5000].replace("\r\n", "\n").strip()
    note_has_control = has_control_characters(note, allowed=NOTE_WHITESPACE)
    if note_has_control:
        note = without_control_characters(note, allowed=NOTE_WHITESPACE)  # shown back without them
    chosen = set(request.form.getlist("practice"))
    errors = {}
    offered = {str(r.practice.id): r for r in rows}
    if not chosen:
        errors["practice"] = "Choose at least one practice to ask for access to."
    elif not chosen <= offered.keys():
        errors["practice"] = "Choose only practices you belong to."
    else:
        for practice_id in sorted(chosen):
            row = offered[practice_id]
            if row.status == PENDING:
                errors["practice"] = f"Your request for {row.practice.name} from {g.client_ip} is already pending."
            elif row.decision.allowed:
                errors["practice"] = f"You already have access to {row.practice.name} from {g.client_ip}."
            elif not row.can_request:
                errors["practice"] = f"{row.practice.name} does not take access requests from you right now."
    if note_has_control:
        errors["note"] = "The note cannot contain control characters (line breaks and tabs are fine)."
    elif len(note) > NOTE_MAX:
        errors["note"] = f"The note can be at most {NOTE_MAX} characters long (yours has {len(note)})."
    if errors:
        return _requests_page(user, rows, errors, note, code=422)
    by_ip = f"request-ip:{signin_limits.ip_key(g.client_ip)}"
    wait, _ = ratelimit.acquire([(f"request-user:{user.id}", REQUEST_LIMIT_PER_USER),
                                 (by_ip, REQUEST_LIMIT_PER_IP)], REQUEST_WINDOW)
    if wait:
        errors["practice"] = f"Too many access requests. Try again in {max(1, round(wait / 60))} minutes."
        return _requests_page(user, rows, errors, note, code=429)

    chosen_practices = [row.practice for row in rows if str(row.practice.id) in chosen]  # in name order
    created = submit(Visit(user, g.client_ip, now=g.visit.now), chosen_practices, note)
    if created:
        flash(f"Access requested for {', '.join(p.name for p in created)}. An administrator will review it.", "success")
    else:
        flash("Your request is already pending.", "info")
    return redirect(request.path if current_user.is_authenticated else url_for("auth.blocked"), code=303)

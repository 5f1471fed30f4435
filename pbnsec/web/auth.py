"""Sign-in, sign-out, the blocked-login page and a user's own access requests."""
from __future__ import annotations

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

from pbnsec.core.text import parse_id
from pbnsec.domain import audit, sessions, sign_in
from pbnsec.domain.access_requests import NOTE_MAX, request_access
from pbnsec.domain.visit import Visit
from pbnsec.models import AccessRequest, Practice
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

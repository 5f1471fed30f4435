"""Sign-in, sign-out, the blocked-login page and a user's own access requests."""
from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user

from pbnsec.core.gate import GateInputError, parse_return_url
from pbnsec.core.polling import next_poll_seconds
from pbnsec.core.text import parse_id
from pbnsec.domain import audit, sessions, sign_in
from pbnsec.domain.access_requests import NOTE_MAX, contacts, request_access
from pbnsec.domain.gate import GateApp
from pbnsec.domain.visit import Visit
from pbnsec.models import PENDING, AccessRequest, Practice
from pbnsec.web.hook import access_of, blocked_user, end_sign_in, start_blocked_sign_in
from pbnsec.web.pages import allow_form_redirect, hx_redirect, safe_next, wants_fragment

bp = Blueprint("auth", __name__)


def app_return_url(target: str | None) -> tuple[str, GateApp] | None:
    """An absolute URL a sign-in may send the browser back to, with its app: read strictly (core.gate), and only
    when a protected app serves its host and port for its scheme, found as the gate finds it; else None."""
    try:
        original = parse_return_url(target or "")
    except GateInputError:
        return None
    app = current_app.extensions["pbnsec.gate"].find_app(original.host, original.scheme)
    return (original.url, app) if app is not None else None


def return_to(target: str | None) -> str | None:
    """Where a sign-in may go on to: a path of this site, or a protected app's URL (the gate sent the browser here
    from it); anything else is None and the sign-in lands on the home page (no open redirect)."""
    if target and target.startswith("/"):
        return safe_next(target)
    found = app_return_url(target)
    return found[0] if found is not None else None


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        if current_user.must_change_password:
            # The gate lets nobody in before that either; once it is done, back to the app.
            return to_new_password(return_to(request.values.get("next")))
        app_url = app_return_url(request.values.get("next"))
        if app_url is not None and current_app.config.get("COOKIE_DOMAIN") and not session.get("cookie_shared"):
            # The gate found no sign-in on the app's host, yet this browser holds one here: a cookie from before
            # PBNSEC_COOKIE_DOMAIN, kept for this host alone. Writing the session now sends it for the whole domain
            # (and expires the old one: web.extensions.SessionCookie); once, so a cookie that still cannot reach
            # the app does not send the browser round in circles.
            session["cookie_shared"] = True
            return redirect(app_url[0], code=303)
        if app_url is not None:
            # The cookie does not reach the app even so: going back would only go round in circles.
            flash(f"You are signed in, but {app_url[1].name} does not receive your sign-in. Open pbnsec at "
                  f"{current_app.config.get('BASE_URL') or 'its address under PBNSEC_COOKIE_DOMAIN'} and sign in "
                  "there; if that does not help, ask your administrator to check PBNSEC_COOKIE_DOMAIN.", "warning")
        return redirect(url_for("home.index"))
    next_url = return_to(request.values.get("next"))
    allow_form_redirect(next_url)
    # Sent here by an app's proxy: the page names the app, so a sign-in on another host makes sense to the person.
    found = app_return_url(next_url) if next_url and not next_url.startswith("/") else None
    signing_in_for = found[1] if found is not None else None
    if request.method == "GET":
        return render_template("auth/login.html", email="", error=None, next_url=next_url, for_app=signing_in_for)
    result = sign_in.attempt(g.visit, request.form.get("email", ""), request.form.get("password", ""))
    if result.error:
        return render_template("auth/login.html", email=result.email, error=result.error,
                               next_url=next_url, for_app=signing_in_for), result.status
    if result.blocked:
        start_blocked_sign_in(result.user)
        if next_url:
            session["return_to"] = next_url  # through the request and the approval, to "Continue"
        return redirect(url_for("auth.blocked"), code=303)
    end_sign_in()  # whatever this browser held before (a blocked sign-in, another account) ends here
    result.user.sign_in_token = sessions.start(result.user)
    login_user(result.user)
    session["practice_id"] = result.practice.id
    if result.user.must_change_password:
        return to_new_password(next_url)
    return redirect(next_url or url_for("home.index"), code=303)


def to_new_password(next_url: str | None):
    """To choose a password in place of one shown on a console, then on to `next_url` (already checked)."""
    if next_url:
        session["return_to"] = next_url
    return redirect(url_for("account.password"), code=303)


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        audit.record_by(g.visit, "logout", target=current_user.email, practice=session.get("practice_id"))
    end_sign_in()
    flash("You have signed out.", "info")
    return redirect(url_for("auth.login"), code=303)


# --- the blocked user: status per practice, access requests, and continuing once approved ---

def requester():
    """Who is asking: the signed-in user, or the blocked sign-in of a blocked sign-in; else None."""
    if current_user.is_authenticated:
        return current_user._get_current_object()
    return blocked_user()


def _sign_in_again():
    """The blocked sign-in is gone (or never was): say why, on the sign-in page."""
    flash(g.get("blocked_ended") or sessions.ENDED["none"], "info")
    return hx_redirect(url_for("auth.login"))


def statuses_context(user, access, polls: int = 0, **extra) -> dict:
    """What the blocked page and My access requests show: statuses from here, the history, whom to ask, and
    how soon to ask the server again (None once nothing is pending)."""
    history = list(AccessRequest.select(AccessRequest, Practice).join(Practice)
                   .where(AccessRequest.user == user)
                   .order_by(AccessRequest.created_at.desc(), AccessRequest.id.desc()).limit(50))
    here = g.visit.ip_text
    reasons = {}
    for r in history:  # latest first: the reason of the latest request from here, per practice
        if r.ip == here:
            reasons.setdefault(r.practice_id, r.reason)
    pending = any(row.status == PENDING for row in access.rows) or any(r.status == PENDING for r in history)
    blocked_ids = [row.practice.id for row in access.rows if not row.decision.allowed]
    context = dict(user=user, rows=access.rows, history=history, reasons=reasons,
                   contacts=contacts(blocked_ids, asking=user), polls=polls + 1, offered=_offered(access),
                   poll_seconds=next_poll_seconds(polls) if pending else None, oob_history=False, oob_form=False,
                   # where the statuses ask again and the form posts to (the gate's blocked page has its own),
                   # and the app to go on to once it lets the user in (gate.blocked)
                   status_endpoint="auth.request_statuses", status_args={},
                   request_action=url_for("auth.access_requests"), continue_to=None)
    context.update(extra)
    return context


def _offered(access) -> str:
    """The practices the request form offers, as the page remembers them ("3.7")."""
    return ".".join(str(row.practice.id) for row in access.rows if row.can_request)


def _requests_page(user, access, errors=None, note="", code=200):
    template = "auth/access_requests.html" if current_user.is_authenticated else "auth/blocked.html"
    going_back = None if current_user.is_authenticated else return_to(session.get("return_to"))
    allow_form_redirect(going_back)  # "Continue to <practice>" ends there
    return render_template(template, errors=errors or {}, note=note, note_max=NOTE_MAX, going_back=going_back,
                           **statuses_context(user, access)), code


@bp.route("/blocked")
def blocked():
    if current_user.is_authenticated:
        return redirect(url_for("auth.access_requests"), code=303)
    user = requester()
    if user is None:
        return _sign_in_again()
    return _requests_page(user, access_of(user))


@bp.route("/access-requests/status")
def request_statuses():
    """The statuses alone, for the page to ask again by itself (the whole page without htmx)."""
    user = requester()
    if user is None:
        return _sign_in_again()
    if not wants_fragment():
        return _requests_page(user, access_of(user))
    return statuses_fragment(user, access_of(user))


def statuses_fragment(user, access, **extra):
    """The statuses alone, with the history and (when what it offers changed) the form out of band."""
    polls = parse_id(request.args.get("polls")) or 0
    context = statuses_context(user, access, polls, errors={}, note="", note_max=NOTE_MAX, **extra)
    changed = context["offered"] != request.args.get("offered", "")
    return render_template("auth/_statuses.html", **{**context, "oob_history": True, "oob_form": changed})


def ask_for_access(user, access):
    """Submit the access-request form for `user` among `access`'s practices: the refused Submission, or None once
    the outcome is flashed."""
    asked = request_access(Visit(user, g.client_ip, now=g.visit.now), access,
                           [parse_id(v) for v in request.form.getlist("practice")], request.form.get("note", ""))
    if asked.errors:
        return asked
    if asked.created:
        flash(f"Access requested for {', '.join(p.name for p in asked.created)}. An administrator will review it.",
              "success")
    else:
        flash("Your request is already pending.", "info")
    return None


@bp.route("/access-requests", methods=["GET", "POST"])
def access_requests():
    user = requester()
    if user is None:
        return _sign_in_again()
    access = access_of(user)
    if request.method == "GET":
        return _requests_page(user, access)

    refused = ask_for_access(user, access)
    if refused is not None:
        code = 429 if refused.code == "rate_limited" else 422
        return _requests_page(user, access, refused.errors, refused.note, code=code)
    return redirect(request.path if current_user.is_authenticated else url_for("auth.blocked"), code=303)


@bp.route("/blocked/continue", methods=["POST"])
def continue_sign_in():
    """One click once approved: the blocked sign-in (its password already checked) becomes a full one, if the
    whole decision lets it in now."""
    if current_user.is_authenticated:
        return hx_redirect(url_for("home.index"))
    result = sign_in.resume(g.visit, session.get("blocked_sign_in"), parse_id(request.form.get("practice")))
    if result.code == "ended":
        session.pop("blocked_sign_in", None)
        flash(result.error, "info")
        return hx_redirect(url_for("auth.login"))
    if result.error:
        flash(result.error, "warning")
        return hx_redirect(url_for("auth.blocked"))
    next_url = return_to(session.get("return_to"))  # checked again: the app may have gone meanwhile
    end_sign_in()  # the cookie starts afresh for the full sign-in
    result.user.sign_in_token = result.token
    login_user(result.user)
    session["practice_id"] = result.practice.id
    if result.user.must_change_password:
        return to_new_password(next_url)
    return redirect(next_url or url_for("home.index"), code=303)

"""IP restrictions on every request: one before_request hook, for every endpoint and method."""
from __future__ import annotations

from flask import current_app, flash, g, request, session, url_for
from flask.globals import request_ctx
from flask_login import current_user, logout_user

from pbnsec.core.clientip import resolve_client_ip
from pbnsec.domain import audit, sessions
from pbnsec.domain.access import decide_for, practice_access
from pbnsec.logs import security_event

# Answered for anyone without a look at who is asking: no user loaded, no database query, no session cookie.
SESSIONLESS_ENDPOINTS = frozenset({"static", "health.healthz", "health.readyz"})
# Everything else needs a signed-in user whose IP is allowed for the active practice.
EXEMPT_ENDPOINTS = SESSIONLESS_ENDPOINTS | {"auth.login", "auth.logout", "auth.blocked", "auth.access_requests"}


def start_blocked_sign_in(user) -> None:
    """Let a blocked user (not signed in) see and submit their own access requests for a while."""
    end_sign_in()
    session["blocked_sign_in"] = sessions.start(user, blocked=True)


def blocked_user():
    """The user behind this browser's blocked sign-in, while it lasts; else None."""
    return sessions.find(session.get("blocked_sign_in"), blocked=True)


def end_sign_in() -> None:
    """Sign the current user out, on the server as well as in the cookie."""
    if current_user.is_authenticated:
        sessions.end(current_user.sign_in_token)
    sessions.end(session.get("blocked_sign_in"))
    logout_user()
    session.clear()


def _allowed_practice(user):
    """The active practice if the IP is allowed there, else the first practice that allows it."""
    practices = g.user_practices = list(user.practices())  # the header's practice switcher reuses them
    active_id = session.get("practice_id")
    practices.sort(key=lambda p: p.id != active_id)
    for practice in practices:
        if decide_for(user, practice.id, g.client_ip).allowed:
            return practice
    return None


def access_for(user):
    """Each of the user's practices as seen from this request's IP, worked out once per request."""
    cached = g.get("access")
    if cached is None or cached[0] != user.id:
        g.user_practices = list(user.practices())
        g.access = (user.id, practice_access(user, g.client_ip))
    return g.access[1]


def request_ip():
    """This request's client IP, worked out once per request (None when it cannot be)."""
    if "client_ip" not in g:
        g.client_ip = resolve_client_ip(request.environ, current_app.config["PROXIES"])
    return g.client_ip


def enforce():
    from pbnsec.web.pages import hx_redirect

    if request_ctx.url_adapter is None:
        # Flask could not bind the request (a Host outside PBNSEC_HOSTS): answer its 400, nothing else.
        raise request.routing_exception

    request_ip()
    if request.endpoint in SESSIONLESS_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        if request.endpoint in EXEMPT_ENDPOINTS:
            return None
        wants_page = request.method == "GET" and not request.htmx and request.path != "/"
        target = request.full_path.rstrip("?") if wants_page else None
        return hx_redirect(url_for("auth.login", next=target))
    user = current_user._get_current_object()
    practice = _allowed_practice(user)
    if practice is None and request.endpoint != "auth.logout":
        audit.record("session_blocked", target=user.email,
                     practice=session.get("practice_id"),
                     detail=f"IP {g.client_ip or 'unknown'} is not approved for any of the user's practices")
        active = next((p.name for p in g.user_practices if p.id == session.get("practice_id")), None)
        security_event("session_blocked", email=user.email, practice=active, reason="ip_not_approved",
                       ip=g.client_ip)
        # The sign-in ends and needs the password again: a cookie alone, replayed from elsewhere, must not be
        # enough to file access requests in its owner's name. The real user signs in and gets the blocked page.
        end_sign_in()
        flash(f"You were signed out: your IP address {g.client_ip or '(unknown)'} is not approved for your "
              "practices. Sign in again to ask for access.", "warning")
        return hx_redirect(url_for("auth.login"))
    if request.endpoint in EXEMPT_ENDPOINTS:
        g.practice = practice  # not switched here, but the header still shows a practice the user may work in
        return None
    if practice.id != session.get("practice_id"):
        moved = session.get("practice_id") is not None
        session["practice_id"] = practice.id
        if moved:
            # Do not carry a request meant for the old practice over to this one.
            flash(f"Your IP is not approved for that practice; you are now working in {practice.name}.", "warning")
            return hx_redirect(url_for("home.index"))
    g.practice = practice
    if user.must_change_password and request.endpoint != "account.password":
        # A password that was shown on a console is replaced before anything else is done.
        return hx_redirect(url_for("account.password"))
    return None


def init_app(app) -> None:
    app.before_request(enforce)

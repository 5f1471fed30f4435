"""IP restrictions on every request: one before_request hook, for every endpoint and method."""
from __future__ import annotations

from flask import current_app, flash, g, request, session, url_for
from flask.globals import request_ctx
from flask_login import current_user, logout_user

from pbnsec.core.clientip import resolve_client_ip
from pbnsec.domain import audit, sessions
from pbnsec.domain.access import AccessOverview, overview, why_blocked
from pbnsec.domain.policy import PolicyCache
from pbnsec.domain.visit import Visit
from pbnsec.logs import security_event
from pbnsec.web.pages import hx_redirect

# Answered for anyone without a look at who is asking: no user loaded, no database query, no session cookie.
SESSIONLESS_ENDPOINTS = frozenset({"static", "health.healthz", "health.readyz"})
# Everything else needs a signed-in user whose IP is allowed for the active practice. A blocked sign-in gets only
# these: its own access requests and their statuses, and continuing once a decision lets it in.
EXEMPT_ENDPOINTS = SESSIONLESS_ENDPOINTS | {"auth.login", "auth.logout", "auth.blocked", "auth.access_requests",
                                            "auth.request_statuses", "auth.continue_sign_in",
                                            "people.invite",  # used before its person can sign in
                                            "gate.blocked"}  # sends a signed-out visitor to sign in, then the app
# All a full sign-in made with a password shown on a console may do before that password is replaced.
BEFORE_NEW_PASSWORD = SESSIONLESS_ENDPOINTS | {"account.password", "auth.login", "auth.logout", "people.invite"}


def start_blocked_sign_in(user) -> None:
    """Let a blocked user (not signed in) see and submit their own access requests, and continue once approved,
    for a while, from here (the sign-in is bound to this IP and the password on the server)."""
    end_sign_in()
    session["blocked_sign_in"] = sessions.start(user, blocked=True, ip=g.visit.ip, now=g.visit.now)


def blocked_user():
    """The user behind this browser's blocked sign-in, while it lasts and from where it began; else None (and
    g.blocked_ended says why, for the page that sends them to sign in again)."""
    found = sessions.find_blocked(session.get("blocked_sign_in"), g.visit.ip, g.visit.now)
    if found.user is None:
        session.pop("blocked_sign_in", None)  # ended for good: the password is needed again
        g.blocked_ended = found.message
    return found.user


def end_sign_in() -> None:
    """Sign the current user out, on the server as well as in the cookie."""
    if current_user.is_authenticated:
        sessions.end(current_user.sign_in_token)
    sessions.end(session.get("blocked_sign_in"))
    logout_user()
    session.clear()


def access_of(user) -> AccessOverview:
    """The user's access to each practice from this request's IP: worked out once per request, then shared by
    the hook, the views and the header's practice switcher, on this process's compiled policies."""
    cached = g.get("access")
    if cached is None or cached.user.id != user.id:
        g.access = overview(user, g.client_ip, g.visit.now, current_app.extensions["pbnsec.policies"])
    return g.access


def request_ip():
    """This request's client IP, worked out once per request (None when it cannot be)."""
    if "client_ip" not in g:
        g.client_ip = resolve_client_ip(request.environ, current_app.config["PROXIES"])
    return g.client_ip


def enforce():
    if request_ctx.url_adapter is None:
        # Flask could not bind the request (a Host outside PBNSEC_HOSTS): answer its 400, nothing else.
        raise request.routing_exception

    request_ip()
    if request.endpoint in SESSIONLESS_ENDPOINTS:
        return None
    g.visit = Visit(None, g.client_ip)
    if not current_user.is_authenticated:
        if request.endpoint in EXEMPT_ENDPOINTS:
            return None
        wants_page = request.method == "GET" and not request.htmx and request.path != "/"
        target = request.full_path.rstrip("?") if wants_page else None
        return hx_redirect(url_for("auth.login", next=target))
    user = current_user._get_current_object()
    access = access_of(user)
    practice = access.first_allowed(session.get("practice_id"))
    if practice is None and request.endpoint != "auth.logout":
        active = access.row(session.get("practice_id"))
        by_hours = active is not None and active.decision.reason == "outside_hours"
        reason = (why_blocked(active.decision, active.practice, g.visit.ip_text) if by_hours else
                  f"IP {g.visit.ip_text} is not approved for any of the user's practices")
        audit.record_by(g.visit, "session_blocked", actor=user, target=user.email,
                        practice=session.get("practice_id"), detail=reason)
        security_event("session_blocked", email=user.email, practice=active.practice.name if active else None,
                       reason=active.decision.reason if by_hours else "ip_not_approved", ip=g.client_ip)
        # The sign-in ends and needs the password again: a cookie alone, replayed from elsewhere, must not be
        # enough to file access requests in its owner's name. The real user signs in and gets the blocked page.
        end_sign_in()
        if by_hours:
            flash(f"You were signed out: {reason}.", "warning")
        else:
            flash(f"You were signed out: your IP address {g.client_ip or '(unknown)'} is not approved for your "
                  "practices. Sign in again to ask for access.", "warning")
        # From an app's blocked page: after signing in again, back to the app (the login checks the URL).
        back = request.args.get("next") if request.endpoint == "gate.blocked" else None
        return hx_redirect(url_for("auth.login", next=back))
    g.visit = Visit(user, g.client_ip, practice, g.visit.now)
    g.practice = practice  # the header shows it on every page
    if user.must_change_password and request.endpoint not in BEFORE_NEW_PASSWORD:
        # A password that was shown on a console is replaced before anything else is done (access requests too:
        # whoever saw the console must not ask for access in the person's name).
        return hx_redirect(url_for("account.password"))
    if request.endpoint in EXEMPT_ENDPOINTS:
        return None  # not switched here: these pages are about every practice
    if practice.id != session.get("practice_id"):
        left = access.row(session.get("practice_id"))
        moved = session.get("practice_id") is not None
        session["practice_id"] = practice.id
        if moved:
            # Do not carry a request meant for the old practice over to this one.
            why = ("It is outside your working hours there" if left is not None and not left.decision.allowed
                   and left.decision.reason == "outside_hours" else "Your IP is not approved for that practice")
            flash(f"{why}; you are now working in {practice.name}.", "warning")
            return hx_redirect(url_for("home.index"))
    g.practice = practice
    return None


def init_app(app) -> None:
    app.extensions["pbnsec.policies"] = PolicyCache()  # per app: one database's generations
    app.before_request(enforce)

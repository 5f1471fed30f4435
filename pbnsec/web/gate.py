"""The gate in front of the practice's other web tools: `/gate/verify`, which their reverse proxy asks before every
request (nginx `auth_request`, Caddy `forward_auth`, Traefik `ForwardAuth`; see README, Protect your other web
tools); and `/gate/blocked`, where it sends a signed-in user an app refuses."""
from __future__ import annotations

import atexit
import os
import threading

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user

from pbnsec import db
from pbnsec.core.gate import GateInputError
from pbnsec.core.text import parse_id
from pbnsec.domain import gate
from pbnsec.domain.access_requests import NOTE_MAX
from pbnsec.domain.gate import GateOptions, GateState, Verdict
from pbnsec.domain.gate_blocked import app_access
from pbnsec.domain.visit import Visit
from pbnsec.models import utcnow
from pbnsec.web.auth import app_return_url, ask_for_access, statuses_context, statuses_fragment
from pbnsec.web.hook import access_of
from pbnsec.web.pages import hx_redirect, wants_fragment

bp = Blueprint("gate", __name__)


# No automatic OPTIONS answer: a 200 from the gate lets a request through, so nothing but its decision gives one.
@bp.route("/gate/verify", methods=["GET", "HEAD"], provide_automatic_options=False)
def verify():
    """200 with X-Pbnsec-* headers, 401/302 to sign in, 403 (or 302) refused: never a page, never a cookie."""
    now = utcnow()
    db.keep_connection()
    user, practice_id = _signed_in_user(now)
    visit = Visit(user, g.client_ip, now=now)
    try:
        redirect = gate.parse_redirect_flag(request.args.get("redirect"))
    except GateInputError as error:
        return _answer(Verdict(403, body=f"pbnsec: {error}\n", outcome="unreadable"))
    options = GateOptions(current_app.config.get("BASE_URL"), redirect)
    verdict = gate.verify(request.headers, visit, options, _state(), current_app.extensions["pbnsec.policies"],
                          practice_id)
    return _answer(verdict)


def _signed_in_user(now):
    """The user of this browser's full sign-in and the practice they work in at pbnsec, read straight from the
    session, which is never changed here (so no cookie is sent): not through Flask-Login, whose session protection
    would change it when the proxy's address differs from the browser's."""
    user_id, _, token = str(session.get("_user_id") or "").partition(":")
    practice_id = session.get("practice_id")
    user = _state().signed_in(token, now)
    if user is None or str(user.id) != user_id:
        return None, None
    return user, practice_id if isinstance(practice_id, int) else None


def _answer(verdict: Verdict):
    response = make_response(verdict.body, verdict.status)
    response.mimetype = "text/plain"
    for name, value in verdict.headers:
        response.headers[name] = value
    response.vary.add("Cookie")
    return response


def _state() -> GateState:
    return current_app.extensions["pbnsec.gate"]


def init_app(app) -> None:
    """This app's gate state. Its counts are added to the table by the request that finds them FLUSH_SECONDS old
    (after its response is made), and in a server by a timer thread too, so the last ones of a quiet spell land."""
    state = app.extensions["pbnsec.gate"] = GateState(app.config.get("GATE_FLUSH_SECONDS", gate.FLUSH_SECONDS))
    flusher = _Flusher(app, state)

    @app.teardown_request
    def _flush_counts(exc):
        if request.endpoint != "gate.verify":
            return
        if state.due():
            _flush(app, state)
        if not app.testing:
            flusher.ensure_running()  # in a worker forked from the process that started it, too


def _flush(app, state: GateState) -> None:
    try:
        state.flush()
    except Exception:  # the counts are lost, the gate's answers are not: a count is worth less than a request
        app.logger.exception("pbnsec: the gate's request counts could not be saved")


class _Flusher:
    """A daemon thread adding the counts to the table every FLUSH_SECONDS while there are some."""

    def __init__(self, app, state: GateState):
        self.app, self.state = app, state
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._pid = None
        self._stopping_registered = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._pid == os.getpid()

    def ensure_running(self) -> None:
        if not self.running:
            self._pid = os.getpid()
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="pbnsec-gate-counts", daemon=True)
            self._thread.start()
            if not self._stopping_registered:
                atexit.register(self.stop)
                self._stopping_registered = True

    def _run(self) -> None:
        while not self._stopping.wait(self.state.flush_seconds):
            if self.state.due():
                with self.app.app_context():
                    _flush(self.app, self.state)

    def stop(self) -> None:
        """Stop the thread and save what was counted (at the process's exit)."""
        self._stopping.set()
        with self.app.app_context():
            _flush(self.app, self.state)


# --- /gate/blocked: why an app refuses a signed-in user, their access request, and going on once it lets them in ---

def _return_url(app) -> str | None:
    """The `next` URL, when it is one of this app's (anything else is dropped: no open redirect)."""
    found = app_return_url(request.args.get("next"))
    return found[0] if found is not None and found[1].id == app.id else None


def _blocked_page(seen, next_url, errors=None, note="", code=200):
    extra = _gate_context(seen, next_url)
    if wants_fragment() and request.method == "GET":
        return statuses_fragment(current_user, seen.access, **extra)
    return render_template("gate/blocked.html", seen=seen, reason=seen.reason(g.visit.ip_text),
                           errors=errors or {}, note=note, note_max=NOTE_MAX,
                           **statuses_context(current_user, seen.access, **extra)), code


def _gate_context(seen, next_url) -> dict:
    args = {"app": seen.app.id, **({"next": next_url} if next_url else {})}
    return dict(status_endpoint="gate.blocked", status_args=args,
                request_action=url_for("gate.blocked", **args),
                continue_to={"name": seen.app.name, "url": next_url} if seen.allowed else None)


def _member_of_app(access, seen) -> bool:
    ids = {p.id for p in seen.practices}
    return any(row.practice.id in ids for row in access.rows)


@bp.route("/gate/blocked", methods=["GET", "POST"])
def blocked():
    found = app_return_url(request.args.get("next"))
    if not current_user.is_authenticated:
        # Sign in first, then straight back to the app: it asks the gate again.
        return hx_redirect(url_for("auth.login", next=found[0] if found else None))
    access = access_of(current_user)
    seen = app_access(parse_id(request.args.get("app")), access)
    next_url = _return_url(seen.app) if seen is not None else None
    if seen is None or (next_url is None and not _member_of_app(access, seen)):
        # Another practice's app is described only to a browser it sent here (its own URL as next): its number
        # alone tells nobody what it is called or whose it is.
        abort(404, "There is no such protected app (any more).")
    if request.method == "POST":
        refused = ask_for_access(current_user, seen.access)
        if refused is not None:
            code = 429 if refused.code == "rate_limited" else 422
            return _blocked_page(seen, next_url, refused.errors, refused.note, code)
        return redirect(url_for("gate.blocked", app=seen.app.id, next=next_url), code=303)
    return _blocked_page(seen, next_url)

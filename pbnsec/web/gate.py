"""The gate in front of the practice's other web tools: `/gate/verify`, which their reverse proxy asks before every
request (nginx `auth_request`, Caddy `forward_auth`, Traefik `ForwardAuth`; see README, Protect your other web
tools); and `/gate/blocked`, where it sends a signed-in user an app refuses."""
from __future__ import annotations

import atexit
import os
import threading
import time
from functools import lru_cache
from http import HTTPStatus
from urllib.parse import parse_qsl

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from itsdangerous import BadSignature
from werkzeug.http import parse_cookie

from pbnsec import db
from pbnsec.core.clientip import resolve_client_ip
from pbnsec.core.gate import FORWARDED_HEADERS, NGINX_HEADERS, GateInputError
from pbnsec.core.text import parse_id
from pbnsec.domain import gate, sessions
from pbnsec.domain.access_requests import NOTE_MAX
from pbnsec.domain.gate import GateOptions, GateState, Verdict
from pbnsec.domain.gate_blocked import app_access
from pbnsec.domain.visit import Visit
from pbnsec.logs import access_line
from pbnsec.models import utcnow
from pbnsec.web.auth import app_return_url, ask_for_access, statuses_context, statuses_fragment
from pbnsec.web.hook import access_of
from pbnsec.web.pages import hx_redirect, wants_fragment

bp = Blueprint("gate", __name__)
SESSION_CACHE_SIZE = 4096  # browsers whose session cookie's signature a process remembers having checked
MAX_COOKIE_LENGTH = 4096  # browsers keep no longer cookie (and Flask warns well before its session gets there)


VERIFY_PATH = "/gate/verify"
VERIFY_METHODS = ("GET", "HEAD")  # never OPTIONS or another method: a 200 from the gate lets a request through
_ORIGINAL_HEADERS = tuple((name, "HTTP_" + name.upper().replace("-", "_"))
                          for name in (*NGINX_HEADERS, *FORWARDED_HEADERS))


class VerifyFront:
    """WSGI in front of the Flask app: `GET /gate/verify` is answered here, everything else by Flask.

    The proxy asks before every request to a protected app — a page with 40 assets asks 40 times — so the answer
    skips what a page needs and the gate does not (routing, the session machinery, Flask-Login, CSRF, the page
    hooks): it reads the client IP by the one rule (core.clientip, as the hook does), the browser's signed session
    cookie by Flask's own serializer, and asks domain.gate.verify. Never a page, never a cookie: 200 with
    X-Pbnsec-* headers, 401/302 to sign in, 403 (or 302) refused."""

    def __init__(self, app, inner) -> None:
        self.app, self.inner = app, inner
        self.state: GateState = app.extensions["pbnsec.gate"]
        self.flusher = _Flusher(app, self.state)
        self._session_reader = None
        self.checked_cookies = None

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != VERIFY_PATH:
            return self.inner(environ, start_response)
        status, headers, body = self.answer(environ)
        start_response(status, headers)
        return [body]

    def answer(self, environ, flush: bool = True) -> tuple[str, list[tuple[str, str]], bytes]:
        """The status line, headers and body answering one request for /gate/verify (a WSGI environ), wherever it
        came in: through Flask's server, or the gate's own port (pbnsec.gate_server, which leaves the counts to
        the timer thread: `flush` False)."""
        started = time.perf_counter()
        method = environ.get("REQUEST_METHOD", "")
        ip, user, ended_well = None, None, False
        try:
            ip = self.client_ip(environ)
            if method not in VERIFY_METHODS:
                verdict = Verdict(405, (("Allow", ", ".join(VERIFY_METHODS)),),
                                  body="The gate answers GET and HEAD only.\n", outcome="unreadable")
            else:
                user, verdict = self._verify(environ, ip)
            ended_well = True
        except Exception:  # the proxy is told 500 (nothing passes), the log says why
            self.app.logger.exception("pbnsec: /gate/verify failed")
            verdict = Verdict(500, body="pbnsec could not decide; see its log.\n", outcome="error")
        finally:
            if flush:
                self._flush_when_due()
            db.release_connection(keep=ended_well)
        text = verdict.body.encode("utf-8")
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(text))),
                   ("Cache-Control", "no-store"), ("Vary", "Cookie"), ("X-Content-Type-Options", "nosniff"),
                   *verdict.headers]
        access_line(method, VERIFY_PATH, environ.get("QUERY_STRING", ""), verdict.status, len(text), started, user,
                    ip)
        return f"{verdict.status} {HTTPStatus(verdict.status).phrase}", headers, b"" if method == "HEAD" else text

    def client_ip(self, environ):
        """The request's client IP by the rule every request follows (PBNSEC_TRUSTED_PROXIES and _ADDRS)."""
        return resolve_client_ip(environ, self.app.config["PROXIES"])

    def _verify(self, environ, ip):
        """The signed-in user (or None) and the gate's verdict on the request the proxy describes."""
        now = utcnow()
        try:
            redirect = gate.parse_redirect_flag(_first_value(environ.get("QUERY_STRING", ""), "redirect"))
        except GateInputError as error:
            return None, Verdict(403, body=f"pbnsec: {error}\n", outcome="unreadable")
        user, practice_id = self._signed_in_user(environ, now)
        options = GateOptions(self.app.config.get("BASE_URL"), redirect)
        # The headers a proxy describes the original request with, and no other.
        headers = {name: environ[key] for name, key in _ORIGINAL_HEADERS if key in environ}
        verdict = gate.verify(headers, Visit(user, ip, now=now), options, self.state,
                              self.app.extensions["pbnsec.policies"], practice_id)
        return user, verdict

    def _signed_in_user(self, environ, now):
        """The user of this browser's full sign-in and the practice they work in at pbnsec, read from the session
        cookie Flask signed (its serializer and lifetime), never written here."""
        name, read = self._session_reader or self._make_session_reader()
        cookie = parse_cookie(environ).get(name)
        fields = read(cookie) if cookie else None
        if fields is None:
            return None, None
        user_id, token, practice_id = fields
        # Never ends a sign-in: one made with a password set aside since is refused here, ended at its next page.
        user, _ = sessions.lookup(token, now)
        if user is None or str(user.id) != user_id:
            return None, None
        return user, practice_id

    def _make_session_reader(self):
        interface, app = self.app.session_interface, self.app
        serializer = interface.get_signing_serializer(app)
        max_age = int(app.permanent_session_lifetime.total_seconds())

        @lru_cache(maxsize=SESSION_CACHE_SIZE)
        def verified(cookie: str):
            """The session's sign-in fields and when it was signed, once its signature is checked (a browser
            sends the same cookie with every request: its signature is checked once per process). Only cookies
            that pass are kept (a refusal raises, which lru_cache never keeps)."""
            data, signed_at = serializer.loads(cookie, return_timestamp=True)
            if not isinstance(data, dict):
                raise BadSignature("not a session")
            user_id, _, token = str(data.get("_user_id") or "").partition(":")
            practice_id = data.get("practice_id")
            return user_id, token, practice_id if type(practice_id) is int else None, signed_at.timestamp()

        def read(cookie: str):
            if len(cookie) > MAX_COOKIE_LENGTH:
                return None  # no session cookie pbnsec writes is this long: not worth a check, nor a place in memory
            try:
                found = verified(cookie)
            except BadSignature:
                return None  # unsigned or forged
            if not 0 <= time.time() - found[3] <= max_age:
                return None  # older than a session lives (as Flask would refuse it)
            return found[:3]

        self.checked_cookies = verified  # (its cache_info() says how many a process keeps)
        self._session_reader = interface.get_cookie_name(app), read
        return self._session_reader

    def _flush_when_due(self) -> None:
        """The counts are added to the table by the request that finds them FLUSH_SECONDS old (after its answer is
        made), and in a server by a timer thread too, so the last ones of a quiet spell land."""
        if self.state.due():
            _flush(self.app, self.state)
        if not self.app.testing:
            self.flusher.ensure_running()  # in a worker forked from the process that started it, too


def _first_value(query: str, name: str) -> str | None:
    """The first value of a query argument, as Flask's request.args.get reads it."""
    return next((value for key, value in parse_qsl(query, keep_blank_values=True) if key == name), None)


def init_app(app) -> None:
    """This app's gate: its state (the counts not yet saved) and /gate/verify in front of Flask."""
    app.extensions["pbnsec.gate"] = GateState(app.config.get("GATE_FLUSH_SECONDS", gate.FLUSH_SECONDS))
    app.wsgi_app = app.extensions["pbnsec.gate_front"] = VerifyFront(app, app.wsgi_app)


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

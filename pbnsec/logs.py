"""The operators' log on stderr: one access line per request, one key=value line per security event."""
from __future__ import annotations

import logging
import re
import sys
import time
import unicodedata
from datetime import datetime, timezone

from flask import g, request

from pbnsec.core.text import is_control

access_log = logging.getLogger("pbnsec.access")
security_log = logging.getLogger("pbnsec.security")

_TOKEN = re.compile(r"[A-Za-z0-9_.:-]+")


class LogFormatter(logging.Formatter):
    """`2026-05-04T09:30:00.123Z WARNING pbnsec.security …`: the time in UTC, ISO 8601, whatever the machine's zone."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatTime(self, record, datefmt=None):
        moment = datetime.fromtimestamp(record.created, timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _StderrHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is at each line (test runners and reloaders swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def quote(value) -> str:
    """A value in double quotes, with quotes, backslashes and anything that could end or fake a line escaped."""
    out = []
    for char in str(value):
        if char in '"\\':
            out.append("\\" + char)
        elif is_control(char) or unicodedata.category(char) in ("Zl", "Zp", "Cs"):
            out.append(char.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _token(value) -> str:
    """A value of the app's own making (an IP, a reason code, a number) bare; anything odd quoted all the same."""
    text = str(value)
    return text if _TOKEN.fullmatch(text) else quote(text)


def _field(key: str, value, typed: bool = False) -> str:
    # What a person typed is always quoted, even when it looks plain, so a filter can rely on the quotes.
    return f"{key}={quote(value) if typed else _token(value)}"


def security_event(event: str, *, ip, reason: str | None = None, level: int = logging.WARNING, **typed) -> None:
    """Log `event email="…" practice="…" reason=… ip=…` for fail2ban or a SIEM; ip= always comes last."""
    parts = [event] + [_field(key, value, typed=True) for key, value in typed.items() if value is not None]
    if reason:
        parts.append(_field("reason", reason))
    parts.append(_field("ip", ip or "unknown"))
    security_log.log(level, " ".join(parts))


def _start_clock():
    g.request_started = time.perf_counter()


def _shown_path(path: str) -> str:
    """The path as logged: an invite link's token is a password-to-be, so it is left out."""
    if path.startswith("/people/invite/"):
        return "/people/invite/…"
    return path


def _access_line(response):
    from pbnsec.web.hook import (
        request_ip,  # here, not above: enforcement imports this module
    )

    # Only a user this request already loaded (Flask-Login keeps it in g): logging must not cost a query.
    user = g.get("_login_user")
    # The same IP the enforcement hook decided on, even when an earlier hook (CSRF) refused the request first.
    access_line(request.method, request.path, request.query_string.decode("latin-1"), response.status_code,
                response.content_length, g.get("request_started"),
                user if user is not None and user.is_authenticated else None, request_ip())
    return response


def access_line(method: str, path: str, query: str, status: int, length: int | None, started: float | None, user,
                ip) -> None:
    """`method=GET path="/…" status=200 bytes=… ms=… [user_id=… email="…"] ip=…`: one line per request, whoever
    answered it (Flask, or the gate's verify in front of it). `started`: time.perf_counter() when it came in."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    parts = [
        _field("method", method),
        _field("path", _shown_path(path) + ("?" + query if query else ""), typed=True),  # never the body
        _field("status", status),
        _field("bytes", "-" if length is None else length),  # "-": streamed
        _field("ms", "-" if started is None else f"{(time.perf_counter() - started) * 1000:.1f}"),
    ]
    if user is not None:
        parts += [_field("user_id", user.id), _field("email", user.email, typed=True)]
    parts.append(_field("ip", ip or "unknown"))
    access_log.info(" ".join(parts))


def init_app(app) -> None:
    """Log to stderr at PBNSEC_LOG_LEVEL, and write one access line per request."""
    logger = logging.getLogger("pbnsec")  # also the app's own logger (app.logger): tracebacks land here too
    logger.setLevel(app.config["LOG_LEVEL"])
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(LogFormatter())
        logger.addHandler(handler)
    # waitress calls logging.basicConfig(), whose root handler would print every line a second time.
    logger.propagate = False
    app.before_request(_start_clock)
    app.after_request(_access_line)

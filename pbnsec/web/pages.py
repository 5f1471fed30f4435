"""What every page shares: page-or-fragment rendering, security headers, safe redirects."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, flash, g, redirect, render_template, request, url_for
from flask.globals import request_ctx
from htmx_flask import make_response as htmx_response
from markupsafe import Markup, escape
from werkzeug.routing import IntegerConverter

from pbnsec.core.decision import STATUS_LABELS
from pbnsec.core.durations import DURATIONS, is_expired, relative_expiry
from pbnsec.core.text import MAX_ID
from pbnsec.core.timezones import abbreviation, to_local

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def allow_form_redirect(url: str | None) -> None:
    """Let this page's forms end up at `url` (an app's URL a sign-in returns to, already checked): browsers hold
    the redirect after a form post to the page's CSP form-action as well."""
    if url and not url.startswith("/"):
        parts = urlsplit(url)
        g.setdefault("form_origins", set()).add(f"{parts.scheme}://{parts.netloc}")


def _csp() -> str:
    origins = sorted(g.get("form_origins", ()))
    return CSP.replace("form-action 'self'", " ".join(["form-action 'self'", *origins])) if origins else CSP


class IdConverter(IntegerConverter):
    """<int:…> in URLs, but never larger than the database can hold (a bigger one is simply not found)."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def wants_fragment() -> bool:
    """htmx asked for a piece of a page (not a boosted navigation or a history restore)."""
    return bool(request.htmx) and not request.htmx.boosted and not request.htmx.history_restore_request


def render_page(page: str, fragment: str, code: int = 200, **context):
    """The whole page for a browser, only the fragment for htmx."""
    return render_template(fragment if wants_fragment() else page, **context), code


def done(endpoint: str, fragment: str | None = None, trigger: str | None = None,
         message: str | None = None, endpoint_args: dict | None = None, **context):
    """After a change: htmx gets the fragment to swap, a plain form post a 303 to the page."""
    if wants_fragment():
        body = render_template(fragment, message=message, **context) if fragment else ""
        return htmx_response(body, trigger=trigger)
    if message:
        flash(message, "success")
    return redirect(url_for(endpoint, **(endpoint_args or {})), code=303)


def hx_redirect(location: str):
    """Send the browser elsewhere; htmx is told with HX-Redirect so no page lands in a fragment."""
    if request.htmx:
        return htmx_response("", redirect=location)
    return redirect(location, code=303)


def safe_next(target: str | None) -> str | None:
    """A same-site path to go on to after sign-in, or None (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target):
        return None
    return target


def init_app(app) -> None:
    @app.after_request
    def _headers(response):
        response.vary.add("HX-Request")
        response.headers.setdefault("Content-Security-Policy", _csp())
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if current_app.config.get("SESSION_COOKIE_SECURE"):
            # Secure cookies mean the site is served over HTTPS: tell browsers never to try plain HTTP.
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.context_processor
    def _globals():
        return {
            "client_ip": g.get("client_ip"),
            "practice": g.get("practice"),
            "practice_switcher": _practice_switcher,
            "local_warning": _local_warning,
            "zone_of": zone_of,
        }

    @app.template_filter("status_label")
    def _status_label(status: str) -> str:
        return STATUS_LABELS.get(status, status)

    # Every time a person reads goes through this one filter: local to the practice, with UTC underneath.
    @app.template_filter("when")
    def _when(at, where=None, text=None, seconds: bool = False, since=None, abbr: bool = True,
              field: bool = False) -> Markup | str:
        """A stored (UTC) time as people at the practice read it, in a <time> holding the UTC instant.

        where: the row's practice (or its id), else the practice being worked in, else UTC. text replaces the shown
        time ("expires in 6 h"); since (a UTC time) shows only the clock when both fall on the same local day;
        field gives the bare local value a datetime-local input holds.
        """
        if at is None:
            return ""
        zone = zone_of(where)
        local = to_local(at, zone)
        if field:
            return local.strftime("%Y-%m-%dT%H:%M")
        clock = "%H:%M:%S" if seconds else "%H:%M"
        same_day = since is not None and to_local(since, zone).date() == local.date()
        letters = abbreviation(local)
        full = local.strftime(f"%Y-%m-%d {clock}")
        shown = local.strftime(clock) if same_day else full
        if abbr:
            shown += f" {letters}"
        full += f" {letters}"
        utc = at.strftime(f"%Y-%m-%d {clock}") + " UTC"
        title = utc if full == utc else f"{full} ({zone}) = {utc}"
        # Put together by hand (a page of requests shows 150 times): Markup.format costs as much as the rest.
        return Markup(f'<time datetime="{at.isoformat()}Z" title="{escape(title)}">'
                      f'{escape(shown if text is None else text)}</time>')

    @app.template_filter("expiry")
    def _expiry(expires_at) -> str:
        """"expires in 6 h", "expired 2 days ago" or "until revoked", as of this request."""
        return relative_expiry(expires_at, g.visit.now)

    @app.template_test("expired")
    def _expired(expires_at) -> bool:
        return is_expired(expires_at, g.visit.now)

    @app.template_filter("duration_words")
    def _duration_words(key: str) -> str:
        return DURATIONS[key][0]

    app.jinja_env.globals["durations"] = list(DURATIONS)

    for code in (400, 403, 404, 405, 413, 429, 500):
        app.register_error_handler(code, _error_page)


def zone_of(where=None) -> str:
    """The time zone to show a time in: the given practice's (a Practice or its id), else the practice being worked
    in, else UTC."""
    from pbnsec.models import Practice

    state = g._get_current_object()  # one look through the proxy: a page of requests asks 150 times
    visit = getattr(state, "visit", None)
    working = visit.practice if visit is not None else None
    if isinstance(where, Practice):
        return where.time_zone
    if isinstance(where, int) and not isinstance(where, bool):
        if working is not None and working.id == where:
            return working.time_zone
        zones = state.setdefault("practice_zones", {})
        if where not in zones:
            zones[where] = Practice.select(Practice.time_zone).where(Practice.id == where).scalar() or "UTC"
        return zones[where]
    return working.time_zone if working is not None else "UTC"


def _practice_switcher():
    """The signed-in user's practices with their status, when there is more than one to switch between."""
    access = g.get("access")
    return list(access.rows) if access is not None and len(access.rows) > 1 else []


def _local_warning() -> str | None:
    """Why allowlisting the client's own IP could let everyone in (it is loopback or a proxy), else None."""
    from ipaddress import ip_network

    from pbnsec.core.clientip import local_reason

    ip = g.get("client_ip")
    return local_reason(ip_network(ip), current_app.config["PROXIES"]) if ip is not None else None


def _error_page(error):
    if request_ctx.url_adapter is None:
        # The request could not be bound (a Host outside PBNSEC_HOSTS): no page, whose links need a host.
        return f"{error.code} {error.name}\n", error.code, {"Content-Type": "text/plain; charset=utf-8"}
    if request.htmx and error.code in (401, 403):
        # A fragment request that may not proceed gets no page to swap; htmx reports the error.
        return escape(error.description or error.name), error.code  # text, not markup: it names practices
    return render_template("errors/error.html", code=error.code, name=error.name,
                           description=error.description), error.code

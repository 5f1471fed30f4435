"""Security Management › IP Access Requests: approve or reject in one click, race-safe."""
from __future__ import annotations

from dataclasses import dataclass

from flask import abort, g, redirect, render_template, request, url_for
from flask_login import current_user

from pbnsec.core.durations import DurationError
from pbnsec.core.text import without_control_characters
from pbnsec.domain import access_requests
from pbnsec.domain.paging import Cursor
from pbnsec.models import APPROVED, REJECTED
from pbnsec.web.pages import done, htmx_response, render_page, wants_fragment
from pbnsec.web.security import administered_ids, bp


def pending_count() -> int:
    """The badges' number: pending requests of the practices administered from here (counted once a request)."""
    if "pending_count" not in g:
        g.pending_count = access_requests.pending_count(administered_ids())
    return g.pending_count


@bp.app_context_processor
def _header_badge():
    def header_pending() -> int | None:
        """The header's count on every page, for a security administrator at work in a practice; else None."""
        if g.get("practice") is None or not current_user.is_authenticated or not current_user.is_security_admin:
            return None
        return pending_count()

    return {"header_pending": header_pending}


@dataclass(frozen=True)
class Shown:
    """Which part of the lists the administrator looks at: a search, and where each table's page starts."""

    search: str = ""
    pending_after: Cursor | None = None
    decided_after: Cursor | None = None

    @classmethod
    def from_args(cls, args) -> "Shown":
        # A cursor that is not one (an edited link) starts its table from the top rather than failing the page.
        return cls(without_control_characters(args.get("q", "").strip()[:SEARCH_MAX]),
                   Cursor.parse(args.get("pending_after", "")), Cursor.parse(args.get("decided_after", "")))

    def args(self, **changes) -> dict:
        """The query string of this view (with changes), for links and the refresh."""
        found = {"q": self.search, "pending_after": self.pending_after, "decided_after": self.decided_after}
        found.update(changes)
        return {k: str(v) for k, v in found.items() if v not in ("", None)}


SEARCH_MAX = 254


def _tables(practice_ids, shown: Shown | None = None) -> dict:
    shown = shown or Shown.from_args(request.args)
    lists = access_requests.listing(practice_ids, search=shown.search, pending_after=shown.pending_after,
                                    decided_after=shown.decided_after)
    total = pending_count()
    return dict(pending=lists.pending, decided=lists.decided, lists=lists, shown=shown, pending_total=total,
                version=access_requests.version(lists, total),
                defaults=access_requests.default_durations(practice_ids), duration_error=None, reason_error=None)


def _page(conflict: str | None = None):
    return render_template("security/requests.html", conflict=conflict, **_tables(administered_ids()))


@bp.route("/requests")
def requests_page():
    return _page()


@bp.route("/requests/tables")
def request_tables():
    """The Pending and Decided tables (the page and search being looked at), asked for again on the badge's event
    and poll: a row decided elsewhere moves out of Pending by itself. Nothing to swap (204) while nothing changed
    since the page's `seen` version."""
    tables = _tables(administered_ids())
    if wants_fragment() and request.args.get("seen") == tables["version"]:
        return "", 204
    return render_page("security/requests.html", "security/_request_tables.html", conflict=None, **tables)


@bp.route("/requests/badge")
def requests_badge():
    return render_template("security/_badge.html", count=pending_count())


@bp.route("/requests/header-badge")
def requests_header_badge():
    """The header's badge, for htmx to refresh; a browser opening it is sent to the requests themselves."""
    if not wants_fragment():
        return redirect(url_for("security.requests_page"), code=303)
    return render_template("security/_header_badge.html", count=pending_count())


def _refused(request_id: int, duration_error: str | None = None, reason_error: str | None = None):
    """A duration that is none of the offered, or a reason that cannot be stored: 422 and nothing decided; htmx
    gets the row back with the message beside the button."""
    r = access_requests.decidable(request_id, administered_ids())
    if r is None:
        abort(404)
    if wants_fragment():
        return render_template("security/_request_row.html", r=r, lost=False, duration_error=duration_error,
                               reason_error=reason_error,
                               defaults=access_requests.default_durations([r.practice_id])), 422
    return _page(duration_error or reason_error), 422


def _decide(request_id: int, status: str):
    duration = request.form.get("duration") if status == APPROVED else None  # None: the practice's default
    reason = request.form.get("reason", "") if status == REJECTED else ""
    try:
        decided = access_requests.decide(g.visit, request_id, status, administered_ids(), duration, reason)
    except DurationError as exc:
        return _refused(request_id, duration_error=exc.message)
    except access_requests.ReasonError as exc:
        return _refused(request_id, reason_error=exc.message)
    if decided is None:
        abort(404)
    r = decided.request
    if decided.won:
        message = f"{r.status.capitalize()} {r.user.name}'s request for {r.practice.name} from {r.ip}."
        return done("security.requests_page", "security/_request_row.html", trigger="requests-changed",
                    message=message, r=r, lost=False, duration_error=None, reason_error=None, defaults={})
    if wants_fragment():  # the row as the winner left it, saying who decided first
        body = render_template("security/_request_row.html", r=r, lost=True, duration_error=None, reason_error=None,
                               defaults={})
        return htmx_response(body, trigger="requests-changed")
    return _page(f"{r.decided_by.name if r.decided_by_id else 'Someone'} already {r.status} this request."), 409


@bp.route("/requests/<int:request_id>/approve", methods=["POST"])
def approve_request(request_id: int):
    return _decide(request_id, APPROVED)


@bp.route("/requests/<int:request_id>/reject", methods=["POST"])
def reject_request(request_id: int):
    return _decide(request_id, REJECTED)

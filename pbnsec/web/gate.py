"""The gate: the blocked page of a protected app (/gate/blocked) for a signed-in user it refuses."""
from __future__ import annotations

from flask import Blueprint, abort, g, redirect, render_template, request, url_for
from flask_login import current_user

from pbnsec.core.text import parse_id
from pbnsec.domain import sign_in
from pbnsec.domain.access_requests import NOTE_MAX
from pbnsec.domain.gate_blocked import app_access
from pbnsec.web.auth import ask_for_access, statuses_context, statuses_fragment
from pbnsec.web.hook import access_of
from pbnsec.web.pages import hx_redirect, wants_fragment

bp = Blueprint("gate", __name__)


# --- /gate/blocked: why an app refuses a signed-in user, their access request, and going on once it lets them in ---

def _return_url(app) -> str | None:
    """The `next` URL, when it is one of this app's (anything else is dropped: no open redirect)."""
    found = sign_in.app_return_url(request.args.get("next"))
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


@bp.route("/gate/blocked", methods=["GET", "POST"])
def blocked():
    found = sign_in.app_return_url(request.args.get("next"))
    if not current_user.is_authenticated:
        # Sign in first, then straight back to the app: it asks the gate again.
        return hx_redirect(url_for("auth.login", next=found[0] if found else None))
    seen = app_access(parse_id(request.args.get("app")), access_of(current_user))
    if seen is None:
        abort(404, "There is no such protected app (any more).")
    next_url = _return_url(seen.app)
    if request.method == "POST":
        refused = ask_for_access(current_user, seen.access)
        if refused is not None:
            code = 429 if refused.code == "rate_limited" else 422
            return _blocked_page(seen, next_url, refused.errors, refused.note, code)
        return redirect(url_for("gate.blocked", app=seen.app.id, next=next_url), code=303)
    return _blocked_page(seen, next_url)

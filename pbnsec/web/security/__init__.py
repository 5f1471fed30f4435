"""Security Management: IP Allowlist, General Settings, Time Windows, IP Access Requests, Audit log, Why blocked?,
Protected apps."""
from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, abort, current_app, g, request, session
from flask_login import current_user

from pbnsec.core.text import parse_id
from pbnsec.domain.access_requests import REASON_MAX
from pbnsec.domain.allowlist import administers_every_practice
from pbnsec.models import Practice
from pbnsec.web.hook import access_of
from pbnsec.web.pages import done, render_page, wants_fragment

bp = Blueprint("security", __name__, url_prefix="/security")


@bp.before_request
def _security_administrators_only():
    # Enforcement has already run (app-level hooks come first); here only the role is checked.
    if not current_user.is_authenticated or not current_user.is_security_admin:
        abort(403)


def administered_practices() -> list[Practice]:
    """The practices this administrator may read and change from this request: member, and allowed from this IP.

    Membership alone is not enough: a practice that blocks this IP is administered only from where it allows.
    """
    return access_of(current_user._get_current_object()).allowed


def administered_ids() -> set[int]:
    return {p.id for p in administered_practices()}


def manages_every_practice() -> bool:
    """An "All practices" entry reaches every practice, so only an administrator of each (from here) may change one."""
    return administers_every_practice(administered_ids())


# What a refused control answers: a choice that was not offered is bad input; "selected" with nothing ticked is
# simply shown waiting for its first tick; anything else (lockout, empty allowlist) is a conflict with the state.
STATUS_OF_REFUSAL = {"invalid_choice": 422, "invalid_window": 422, "nothing_selected": 200}


def confirmed() -> bool:
    """Whether the administrator confirmed a change after its impact preview ("Save anyway")."""
    return request.form.get("confirm_impact") == "1"


def control_response(page_endpoint: str, page: str, fragment: str, practice, refusal, context: dict):
    """After a control saves itself: htmx gets the control re-rendered with its saved or refused state; a plain
    form gets the page with the refusal, or a 303 to the page when saved."""
    if refusal is None and not wants_fragment():
        return done(page_endpoint, message="Saved.", endpoint_args={"practice": practice.id})
    code = STATUS_OF_REFUSAL.get(refusal.code, 409) if refusal else 200
    return render_page(page, fragment, code, **context)


def my_practice(practice_id) -> Practice | None:
    """One of the practices administered from here, by an id from a URL, form or query string; else None."""
    practice_id = parse_id(practice_id)
    return next((p for p in administered_practices() if p.id == practice_id), None)


def my_practice_or_404(practice_id) -> Practice:
    """An administered practice; 403 when the admin belongs to it but this IP is not allowed there, else 404."""
    practice = my_practice(practice_id)
    if practice is None:
        blocked = access_of(current_user._get_current_object()).row(parse_id(practice_id))
        if blocked is not None:
            abort(403, f"Your IP {g.client_ip or '(unknown)'} is not approved for {blocked.practice.name}: "
                       "it can be managed only from where it allows you in.")
        abort(404)
    return practice


def practice_to_work_in() -> Practice:
    """The practice a Security Management page about one practice shows: the one being worked in.

    The header's practice picker is the one control that chooses it; a link naming another practice
    (`?practice=<id>`, as the home dashboard's) switches to it first, when it is administered from here, so the page
    and the header always agree.
    """
    wanted = request.args.get("practice")
    if wanted is None or parse_id(wanted) == g.practice.id:
        return g.practice
    practice = my_practice_or_404(wanted)
    session["practice_id"] = practice.id
    g.practice = practice
    g.visit = replace(g.visit, practice=practice)
    return practice


# The tabs of Security Management, each the module its views live in.
TABS = (("allowlist", "security.allowlist", "IP Allowlist"), ("settings", "security.settings", "General Settings"),
        ("windows", "security.windows", "Time Windows"), ("requests", "security.requests_page", "IP Access Requests"),
        ("audit_log", "security.audit_log", "Audit log"), ("why", "security.why", "Why blocked?"),
        ("apps", "security.apps", "Protected apps"))


@bp.context_processor
def _security_globals():
    from pbnsec.web.security.requests import pending_count

    view = current_app.view_functions.get(request.endpoint)
    # The active tab is the screen the view belongs to (its module), not a guess from the endpoint's name.
    active = view.__module__.rsplit(".", 1)[-1] if view is not None else None
    return {"pending_requests": pending_count, "tabs": TABS, "active_tab": active, "reason_max": REASON_MAX}


from pbnsec.web.security import allowlist, apps, audit_log, requests, settings, why, windows  # noqa: E402,F401  (routes register on bp)

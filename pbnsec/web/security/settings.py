"""Security Management › General Settings: IP restrictions per practice, each control saving itself."""
from __future__ import annotations

from flask import g, render_template, request

from pbnsec.core.decision import Settings
from pbnsec.core.text import parse_id
from pbnsec.core.timezones import zone_names
from pbnsec.domain import restrictions
from pbnsec.domain.access import Refusal
from pbnsec.web.security import (
    bp,
    confirmed,
    control_response,
    my_practice_or_404,
    practice_to_work_in,
)

# A choice that was not offered is bad input; a change the rules refuse conflicts with how things stand; and
# "selected" with nothing ticked is not refused at all, only not saved yet. Every other refusal is a 409.
# What the scope control shows while it waits for the first tick: "selected", nothing ticked.
WAITING_FOR_A_TICK = Settings(everyone=False)


def _context(practice, control: str | None = None, refusal: Refusal | None = None) -> dict:
    shown = restrictions.general_settings(practice)
    waiting = refusal is not None and refusal.code == "nothing_selected"
    return {"target": practice, "current": shown.settings, "requests_allowed": shown.requests_allowed,
            "default_duration": shown.default_duration, "show_admin_emails": shown.show_admin_emails, "time_zones": zone_names(),
            "scope": WAITING_FOR_A_TICK if waiting else shown.settings, "roles": shown.roles,
            "members": shown.members, "control": control,
            "refusal": refusal}


def _respond(practice, control: str, refusal: Refusal | None):
    return control_response("security.settings", "security/settings.html", f"security/_setting_{control}.html",
                            practice, refusal, _context(practice, control, refusal))


@bp.route("/settings")
def settings():
    practice = practice_to_work_in()
    return render_template("security/settings.html", **_context(practice))


@bp.route("/settings/<int:practice_id>/enforced", methods=["POST"])
def set_enforced(practice_id: int):
    practice = my_practice_or_404(practice_id)
    refusal = restrictions.set_enforced(g.visit, practice, request.form.get("enforced") == "1", confirmed())
    return _respond(practice, "enforced", refusal)


@bp.route("/settings/<int:practice_id>/scope", methods=["POST"])
def set_scope(practice_id: int):
    practice = my_practice_or_404(practice_id)
    role_ids, user_ids = ([parse_id(v) for v in request.form.getlist(f)] for f in ("roles", "users"))
    refusal = restrictions.set_scope(g.visit, practice, request.form.get("applies_to", restrictions.EVERYONE),
                                     role_ids, user_ids, confirmed())
    return _respond(practice, "scope", refusal)


@bp.route("/settings/<int:practice_id>/duration", methods=["POST"])
def set_default_duration(practice_id: int):
    practice = my_practice_or_404(practice_id)
    refusal = restrictions.set_default_duration(g.visit, practice, request.form.get("default_duration", "")[:100])
    return _respond(practice, "duration", refusal)


@bp.route("/settings/<int:practice_id>/requests", methods=["POST"])
def set_requests_allowed(practice_id: int):
    practice = my_practice_or_404(practice_id)
    restrictions.set_requests_allowed(g.visit, practice, request.form.get("requests_allowed") == "1")
    return _respond(practice, "requests", None)


@bp.route("/settings/<int:practice_id>/contacts", methods=["POST"])
def set_show_admin_emails(practice_id: int):
    practice = my_practice_or_404(practice_id)
    restrictions.set_show_admin_emails(g.visit, practice, request.form.get("show_admin_emails") == "1")
    return _respond(practice, "contacts", None)


@bp.route("/settings/<int:practice_id>/time-zone", methods=["POST"])
def set_time_zone(practice_id: int):
    practice = my_practice_or_404(practice_id)
    refusal = restrictions.set_time_zone(g.visit, practice, request.form.get("time_zone", "")[:200])
    return _respond(practice, "time_zone", refusal)

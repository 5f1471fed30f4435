"""Security Management › Time Windows: a practice's weekly working hours, each control saving itself."""
from __future__ import annotations

from flask import g, render_template, request

from pbnsec.core.decision import Settings
from pbnsec.core.text import parse_id
from pbnsec.core.windows import DAY_NAMES, local_time
from pbnsec.domain import time_windows
from pbnsec.domain.access import Refusal
from pbnsec.web.security import (
    bp,
    confirmed,
    control_response,
    my_practice_or_404,
    practice_to_work_in,
)

WAITING_FOR_A_TICK = Settings(everyone=False)
FRAGMENTS = {"windows_enabled": "security/_windows_enabled.html", "scope": "security/_setting_scope.html",
             "windows": "security/_windows_list.html"}


def _context(practice, control: str | None = None, refusal: Refusal | None = None, typed: dict | None = None):
    shown = time_windows.time_windows(practice)
    waiting = refusal is not None and refusal.code == "nothing_selected"
    return {"target": practice, "hours": shown.hours, "rows": shown.rows, "roles": shown.roles,
            "members": shown.members, "scope": WAITING_FOR_A_TICK if waiting else shown.hours,
            "scope_endpoint": "security.set_windows_scope",
            "control": control, "refusal": refusal, "day_names": DAY_NAMES,
            "typed": typed or {"days": [], "start": "", "end": ""},
            "now_local": f"{local_time(g.visit.now, shown.hours.zone):%a %H:%M} ({shown.hours.zone})"}


def _respond(practice, control: str, refusal: Refusal | None, typed: dict | None = None):
    return control_response("security.windows", "security/windows.html", FRAGMENTS[control], practice, refusal,
                            _context(practice, control, refusal, typed if refusal else None))


@bp.route("/windows")
def windows():
    practice = practice_to_work_in()
    return render_template("security/windows.html", **_context(practice))


@bp.route("/windows/<int:practice_id>/enabled", methods=["POST"])
def set_windows_enabled(practice_id: int):
    practice = my_practice_or_404(practice_id)
    refusal = time_windows.set_enabled(g.visit, practice, request.form.get("enabled") == "1", confirmed())
    return _respond(practice, "windows_enabled", refusal)


@bp.route("/windows/<int:practice_id>/scope", methods=["POST"])
def set_windows_scope(practice_id: int):
    practice = my_practice_or_404(practice_id)
    role_ids, user_ids = ([parse_id(v) for v in request.form.getlist(f)] for f in ("roles", "users"))
    refusal = time_windows.set_scope(g.visit, practice, request.form.get("applies_to", time_windows.EVERYONE),
                                     role_ids, user_ids, confirmed())
    return _respond(practice, "scope", refusal)


@bp.route("/windows/<int:practice_id>/add", methods=["POST"])
def add_window(practice_id: int):
    practice = my_practice_or_404(practice_id)
    typed = {"days": request.form.getlist("days")[:7], "start": request.form.get("start", "")[:10],
             "end": request.form.get("end", "")[:10]}
    refusal = time_windows.add_windows(g.visit, practice, typed["days"], typed["start"], typed["end"])
    return _respond(practice, "windows", refusal, typed)


@bp.route("/windows/<int:practice_id>/<int:window_id>/delete", methods=["POST"])
def delete_window(practice_id: int, window_id: int):
    practice = my_practice_or_404(practice_id)
    refusal = time_windows.delete_window(g.visit, practice, window_id, confirmed())
    return _respond(practice, "windows", refusal)

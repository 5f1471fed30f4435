"""The home page (a dashboard of the user's practices) and the practice switcher."""
from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user

from pbnsec.domain import dashboard
from pbnsec.web.hook import access_of
from pbnsec.web.pages import safe_next

bp = Blueprint("home", __name__)


@bp.route("/")
def index():
    user = current_user._get_current_object()
    access = access_of(user)
    # Administrators see the numbers of the practices they administer from here; everyone sees their status.
    shown = (dashboard.summaries([row for row in access.rows if row.decision.allowed], g.visit.now)
             if user.is_security_admin else [])
    return render_template("home/index.html", rows=access.rows,
                           summaries={s.practice.id: s for s in shown}, blocked_days=dashboard.BLOCKED_DAYS)


@bp.route("/practice", methods=["POST"])
def switch_practice():
    wanted = request.form.get("practice", "")
    back = safe_next(request.form.get("next")) or url_for("home.index")
    for row in access_of(current_user._get_current_object()).rows:
        practice = row.practice
        if str(practice.id) == wanted:
            if not row.decision.allowed:
                flash(f"Your IP {g.client_ip} is not approved for {practice.name}. "
                      "You can ask for access on My access requests.", "error")
                return redirect(url_for("home.index"), code=303)
            session["practice_id"] = practice.id
            return redirect(back, code=303)
    abort(404)

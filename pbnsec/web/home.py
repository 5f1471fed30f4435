"""The practice home page and the practice switcher."""
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

from pbnsec.web.hook import access_of

bp = Blueprint("home", __name__)


@bp.route("/")
def index():
    return render_template("home/index.html")


@bp.route("/practice", methods=["POST"])
def switch_practice():
    wanted = request.form.get("practice", "")
    for row in access_of(current_user._get_current_object()).rows:
        practice = row.practice
        if str(practice.id) == wanted:
            if not row.decision.allowed:
                flash(f"Your IP {g.client_ip} is not approved for {practice.name}. "
                      "You can ask for access on My access requests.", "error")
                return redirect(url_for("home.index"), code=303)
            session["practice_id"] = practice.id
            return redirect(url_for("home.index"), code=303)
    abort(404)

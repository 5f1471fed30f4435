"""The signed-in user's own account: change password (which ends their other sessions)."""
from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from pbnsec.domain.users import change_own_password
from pbnsec.web.hook import access_of

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.route("/password", methods=["GET", "POST"])
def password():
    if request.method == "GET":
        return render_template("account/password.html", errors={})
    errors, status = change_own_password(g.visit, access_of(g.visit.user).from_office, request.form.get("current", ""),
                                         request.form.get("new", ""), request.form.get("repeat", ""))
    if errors:
        return render_template("account/password.html", errors=errors), status
    flash("Your password is changed. Other sessions of yours are signed out.", "success")
    return redirect(url_for("home.index"), code=303)

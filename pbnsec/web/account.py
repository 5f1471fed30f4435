"""The signed-in user's own account: change password (which ends their other sessions)."""
from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for

from pbnsec.domain.users import change_own_password
from pbnsec.web.auth import return_to
from pbnsec.web.hook import access_of
from pbnsec.web.pages import allow_form_redirect

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.route("/password", methods=["GET", "POST"])
def password():
    # Sent here at sign-in to replace a password shown on a console: then on to where the sign-in was going (an
    # app's URL included, checked again: the app may have gone meanwhile).
    next_url = return_to(session.get("return_to")) if g.visit.user.must_change_password else None
    allow_form_redirect(next_url)
    if request.method == "GET":
        return render_template("account/password.html", errors={})
    errors, status = change_own_password(g.visit, access_of(g.visit.user).from_office, request.form.get("current", ""),
                                         request.form.get("new", ""), request.form.get("repeat", ""))
    if errors:
        return render_template("account/password.html", errors=errors), status
    session.pop("return_to", None)
    flash("Your password is changed. Other sessions of yours are signed out.", "success")
    return redirect(next_url or url_for("home.index"), code=303)

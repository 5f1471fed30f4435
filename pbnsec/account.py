"""The signed-in user's own account: change password (which ends their other sessions)."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user

from . import audit
from .accounts import change_password

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.route("/password", methods=["GET", "POST"])
def password():
    if request.method == "GET":
        return render_template("account/password.html", errors={})
    user = current_user._get_current_object()
    errors = change_password(user, request.form.get("current", "")[:1024], request.form.get("new", "")[:1024],
                             request.form.get("repeat", "")[:1024])
    if errors:
        return render_template("account/password.html", errors=errors), 422
    audit.record("password_changed", target=user.email, practice=session.get("practice_id"))
    flash("Your password is changed. Other sessions of yours are signed out.", "success")
    return redirect(url_for("home.index"), code=303)

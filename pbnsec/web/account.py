"""The signed-in user's own account: change password (which ends their other sessions)."""
from __future__ import annotations

from flask import (
    Blueprint,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user

from pbnsec.domain import audit, signin_limits
from pbnsec.domain.users import WRONG_CURRENT_PASSWORD, change_password
from pbnsec.logs import security_event
from pbnsec.web.hook import access_of

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.route("/password", methods=["GET", "POST"])
def password():
    if request.method == "GET":
        return render_template("account/password.html", errors={})
    user = current_user._get_current_object()
    # The current password is a password check like a sign-in: same limits, counted the same way.
    attempt = signin_limits.begin(user.email, g.client_ip, access_of(user).from_office)
    if attempt.wait:
        audit.record_by(g.visit, "password_change_failed", target=user.email, practice=session.get("practice_id"),
                     detail="too many attempts")
        error = f"Too many password attempts. {attempt.wait_text}"
        return render_template("account/password.html", errors={"current": error}), 429
    errors = change_password(user, request.form.get("current", "")[:1024], request.form.get("new", "")[:1024],
                             request.form.get("repeat", "")[:1024])
    if errors.get("current") == WRONG_CURRENT_PASSWORD:
        audit.record_by(g.visit, "password_change_failed", target=user.email, practice=session.get("practice_id"),
                     detail="wrong current password")
        security_event("password_change_failed", email=user.email, ip=g.client_ip)
    else:
        attempt.succeeded()
    if errors:
        return render_template("account/password.html", errors=errors), 422
    audit.record_by(g.visit, "password_changed", target=user.email, practice=session.get("practice_id"))
    flash("Your password is changed. Other sessions of yours are signed out.", "success")
    return redirect(url_for("home.index"), code=303)

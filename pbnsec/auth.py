"""Sign-in, sign-out, the blocked-login page and a user's own access requests."""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from . import audit, ratelimit
from .accounts import authenticate
from .enforcement import start_pending_identity
from .policy import decisions_for
from .web import safe_next

bp = Blueprint("auth", __name__)

LOGIN_WINDOW = timedelta(minutes=15)
LOGIN_LIMIT_PER_ACCOUNT = 5
LOGIN_LIMIT_PER_IP = 20


def _limit_keys(email: str) -> list[tuple[str, int]]:
    return [(f"login-account:{email}", LOGIN_LIMIT_PER_ACCOUNT), (f"login-ip:{g.client_ip}", LOGIN_LIMIT_PER_IP)]


def _summary(decisions) -> str:
    return "; ".join(f"{p.name}: {'allowed' if d.allowed else 'blocked'} ({d.reason})" for p, d in decisions)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("auth/login.html", email="", error=None, next_url=next_url)

    email = request.form.get("email", "").strip().lower()[:254]
    password = request.form.get("password", "")[:1024]
    wait = ratelimit.retry_after(_limit_keys(email), LOGIN_WINDOW)
    if wait:
        audit.record("login_rate_limited", actor_label=email or "(blank)", target=email)
        minutes = max(1, round(wait / 60))
        error = f"Too many sign-in attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
        return render_template("auth/login.html", email=email, error=error, next_url=next_url), 429

    user = authenticate(email, password)
    if user is None:
        ratelimit.record_hit(*(key for key, _ in _limit_keys(email)))
        audit.record("login_failed", actor_label=email or "(blank)", target=email)
        error = "Wrong email or password."
        return render_template("auth/login.html", email=email, error=error, next_url=next_url), 401
    ratelimit.clear(f"login-account:{email}")

    # Only now, with the password verified, do IP restrictions come into it.
    decisions = decisions_for(user, g.client_ip)
    allowed = [p for p, d in decisions if d.allowed]
    if not allowed:
        audit.record("login_blocked", actor=user, target=user.email, detail=_summary(decisions))
        start_pending_identity(user)
        return redirect(url_for("auth.blocked"), code=303)

    session.clear()
    login_user(user)
    session["practice_id"] = allowed[0].id
    audit.record("login_allowed", actor=user, practice=allowed[0], target=user.email, detail=_summary(decisions))
    return redirect(next_url or url_for("home.index"), code=303)


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        audit.record("logout", target=current_user.email, practice=session.get("practice_id"))
    logout_user()
    session.clear()
    flash("You have signed out.", "info")
    return redirect(url_for("auth.login"), code=303)

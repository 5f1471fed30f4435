"""Security Management: IP Allowlist, General Settings, IP Access Requests, Audit log."""
from __future__ import annotations

from flask import Blueprint, abort
from flask_login import current_user

from ..models import Practice
from ..web import parse_id

bp = Blueprint("security", __name__, url_prefix="/security")


@bp.before_request
def _security_administrators_only():
    # Enforcement has already run (app-level hooks come first); here only the role is checked.
    if not current_user.is_authenticated or not current_user.is_security_admin:
        abort(403)


def my_practice(practice_id) -> Practice | None:
    """One of the signed-in administrator's practices, by an id from a URL, form or query string; else None."""
    practice_id = parse_id(practice_id)
    return current_user.practices().where(Practice.id == practice_id).first() if practice_id else None


def my_practice_or_404(practice_id) -> Practice:
    practice = my_practice(practice_id)
    if practice is None:
        abort(404)
    return practice


@bp.context_processor
def _security_globals():
    from .requests import pending_count

    return {"pending_requests": pending_count}


from . import allowlist, audit_log, requests, settings  # noqa: E402,F401  (routes register on bp)

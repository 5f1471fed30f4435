"""Security Management: IP Allowlist, General Settings, IP Access Requests, Audit log."""
from __future__ import annotations

from flask import Blueprint, abort
from flask_login import current_user

bp = Blueprint("security", __name__, url_prefix="/security")


@bp.before_request
def _security_administrators_only():
    # Enforcement has already run (app-level hooks come first); here only the role is checked.
    if not current_user.is_authenticated or not current_user.is_security_admin:
        abort(403)


@bp.context_processor
def _security_globals():
    from .requests import pending_count

    return {"pending_requests": pending_count}


from . import allowlist, audit_log, requests, settings  # noqa: E402,F401  (routes register on bp)

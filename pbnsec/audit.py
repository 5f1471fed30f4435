"""The audit log: who did what, from which IP, when, to what."""
from __future__ import annotations

from flask import g, has_request_context
from flask_login import current_user

from .models import AuditEvent


def record(action: str, *, practice=None, target: str = "", detail: str = "", actor=None,
           actor_label: str | None = None, actor_ip: str | None = None) -> AuditEvent:
    """Write one audit event; in a request the actor and IP default to the signed-in user's."""
    if has_request_context():
        if actor is None and actor_label is None and current_user.is_authenticated:
            actor = current_user._get_current_object()
        if actor_ip is None:
            actor_ip = str(g.get("client_ip") or "unknown")
    if actor_label is None:
        actor_label = actor.email if actor is not None else "anonymous"
    return AuditEvent.create(
        action=action, practice=practice, target=target[:300], detail=detail,
        actor=actor, actor_label=actor_label, actor_ip=actor_ip or "",
    )

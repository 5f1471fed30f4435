"""Security Management › General Settings: IP restrictions per practice, each control saving itself."""
from __future__ import annotations

from flask import g, render_template, request
from flask_login import current_user

from pbnsec.core.decision import Settings
from pbnsec.db import change_lock
from pbnsec.domain import audit
from pbnsec.domain.access import lockout_for, settings_for
from pbnsec.models import (
    ALL_PRACTICES,
    AllowlistEntry,
    IPRestriction,
    Membership,
    RestrictedRole,
    RestrictedUser,
    Role,
    User,
    utcnow,
)
from pbnsec.web.pages import done, parse_id, wants_fragment
from pbnsec.web.security import administered_practices, bp, my_practice_or_404


def restriction_row(practice) -> IPRestriction:
    row, _ = IPRestriction.get_or_create(practice=practice)
    return row


def settings_context(practice, control=None, error=None, lockout=None, saved=False, scope=None):
    row = IPRestriction.get_or_none(IPRestriction.practice == practice) or IPRestriction(practice=practice)
    current = settings_for(practice.id)
    members = (User.select().join(Membership).where(Membership.practice == practice).order_by(User.name))
    return {
        "target": practice,
        "row": row,
        "current": current,
        "scope": scope or current,  # what the scope control shows: saved, or as the admin is choosing it
        "roles": list(Role.select().order_by(Role.position)),
        "members": list(members),
        "practices": administered_practices(),
        "control": control,
        "error": error,
        "lockout": lockout,
        "saved": saved,
    }


def respond(practice, control: str, error: str | None = None, lockout=None, code: int = 200, scope=None):
    """The re-rendered control for htmx (with its saved or refused state), the page otherwise."""
    saved = error is None and lockout is None and scope is None
    context = settings_context(practice, control, error, lockout, saved, scope)
    if wants_fragment():
        return render_template(f"security/_setting_{control}.html", **context), code
    if not saved:
        return render_template("security/settings.html", **context), code
    return done("security.settings", message="Saved.", endpoint_args={"practice": practice.id})


@bp.route("/settings")
def settings():
    practice = my_practice_or_404(request.args.get("practice", g.practice.id))
    return render_template("security/settings.html", **settings_context(practice))


def _refusal(practice, new: Settings):
    """(error, lockout) when the new settings may not be saved, else (None, None)."""
    if new.enforced and not AllowlistEntry.select().where(
        AllowlistEntry.scope.in_([practice.id, ALL_PRACTICES]) & AllowlistEntry.active
    ).exists():
        return "The allowlist is empty: add at least one entry before switching IP restrictions on.", None
    return None, lockout_for(current_user, [practice.id], g.client_ip, settings=new)


@bp.route("/settings/<int:practice_id>/enforced", methods=["POST"])
def set_enforced(practice_id: int):
    practice = my_practice_or_404(practice_id)
    on = request.form.get("enforced") == "1"
    with change_lock():
        current = settings_for(practice.id)
        error, lockout = _refusal(practice, Settings(on, current.everyone, current.role_ids, current.user_ids))
        if error is None and lockout is None:
            IPRestriction.update(enforced=on, updated_at=utcnow()).where(
                IPRestriction.id == restriction_row(practice).id).execute()
            audit.record_by(g.visit, "settings_changed", practice=practice,
                         target="IP restrictions", detail="enforced: " + ("on" if on else "off"))
    return respond(practice, "enforced", error, lockout, code=409 if error or lockout else 200)


def _ids(field: str, allowed: set[int]) -> frozenset[int] | None:
    """The checked ids of a picker, or None when one is not among those offered."""
    ids = [parse_id(v) for v in request.form.getlist(field)]
    if not all(i in allowed for i in ids):
        return None
    return frozenset(ids)


@bp.route("/settings/<int:practice_id>/scope", methods=["POST"])
def set_scope(practice_id: int):
    practice = my_practice_or_404(practice_id)
    everyone = request.form.get("applies_to", "everyone") != "selected"
    role_ids = _ids("roles", {r.id for r in Role.select(Role.id)})
    member_ids = {m.user_id for m in Membership.select(Membership.user).where(Membership.practice == practice)}
    user_ids = _ids("users", member_ids)
    if request.form.get("applies_to", "everyone") not in ("everyone", "selected"):
        return respond(practice, "scope", "Choose everyone or selected roles and users.", code=422)
    if role_ids is None or user_ids is None:
        return respond(practice, "scope", "Choose only the roles and members listed.", code=422)
    if everyone:
        role_ids = user_ids = frozenset()
    elif not role_ids and not user_ids:
        # Saving "selected" with nothing ticked would restrict nobody: wait for the first tick.
        return respond(practice, "scope", scope=Settings(False, False))
    with change_lock():
        current = settings_for(practice.id)
        error, lockout = _refusal(practice, Settings(current.enforced, everyone, role_ids, user_ids))
        if error is None and lockout is None:
            IPRestriction.update(everyone=everyone, updated_at=utcnow()).where(
                IPRestriction.id == restriction_row(practice).id).execute()
            RestrictedRole.delete().where(RestrictedRole.practice == practice).execute()
            RestrictedUser.delete().where(RestrictedUser.practice == practice).execute()
            for role_id in sorted(role_ids):
                RestrictedRole.create(practice=practice, role=role_id)
            for user_id in sorted(user_ids):
                RestrictedUser.create(practice=practice, user=user_id)
            names = [r.name for r in Role.select().where(Role.id.in_(role_ids))]
            names += [u.email for u in User.select().where(User.id.in_(user_ids))]
            audit.record_by(g.visit, "settings_changed", practice=practice, target="IP restrictions",
                         detail="applies to: " + ("everyone" if everyone else ", ".join(names) or "nobody"))
    return respond(practice, "scope", error, lockout, code=409 if error or lockout else 200)


@bp.route("/settings/<int:practice_id>/requests", methods=["POST"])
def set_requests_allowed(practice_id: int):
    practice = my_practice_or_404(practice_id)
    on = request.form.get("requests_allowed") == "1"
    with change_lock():
        IPRestriction.update(requests_allowed=on, updated_at=utcnow()).where(
            IPRestriction.id == restriction_row(practice).id).execute()
        audit.record_by(g.visit, "settings_changed", practice=practice, target="IP restrictions",
                     detail="access requests: " + ("allowed" if on else "not allowed"))
    return respond(practice, "requests")

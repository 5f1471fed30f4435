"""People: security administrators manage the people of the practices they administer from here; the Owner also
renames practices. Each view parses, calls pbnsec.domain.people and renders.

A new password or invite link is shown in the response to the POST that made it, never carried through a redirect
(the session cookie is signed, not secret) and never again.
"""
from __future__ import annotations

from flask import Blueprint, abort, g, render_template, request, url_for
from flask_login import current_user

from pbnsec.core.text import parse_id
from pbnsec.domain import people as domain
from pbnsec.domain.access import Refusal
from pbnsec.web.hook import access_of
from pbnsec.web.pages import done, render_page, wants_fragment
from pbnsec.web.security import administered_practices

bp = Blueprint("people", __name__, url_prefix="/people")

# Refusal codes and what they answer: a person out of reach is forbidden; the rest is a form to correct.
STATUS_OF_REFUSAL = {"not_yours": 403, "last_owner": 409, "yourself": 409, "inactive": 409, "conflict": 409,
                     "unchanged": 409}
PUBLIC_ENDPOINTS = {"people.invite"}  # the invited person is not signed in


@bp.before_request
def _security_administrators_only():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    if not current_user.is_authenticated or not current_user.is_security_admin:
        abort(403)


def _status(refusal: Refusal) -> int:
    return STATUS_OF_REFUSAL.get(refusal.code, 422)


def person_or_404(user_id):
    """A person of a practice administered from here; 403 for one of the admin's practices that this IP may not
    reach (it is managed only from where it allows them); anyone else is not found."""
    user = domain.find_person(administered_practices(), user_id)
    if user is None:
        blocked = [row.practice for row in access_of(current_user._get_current_object()).rows
                   if not row.decision.allowed]
        if blocked and domain.find_person(blocked, user_id) is not None:
            abort(403, f"Your IP {g.client_ip or '(unknown)'} is not approved for "
                       f"{', '.join(p.name for p in blocked)}: its people can be managed only from where it allows "
                       "you in.")
        abort(404)
    return user


@bp.route("/")
def index():
    page = parse_id(request.args.get("page", "1")) or 1
    found = domain.list_people(g.visit, administered_practices(), request.args.get("q", ""), page)
    return render_page("people/index.html", "people/_table.html", people=found)


def _person_page(user, code: int = 200, refusal: Refusal | None = None, issued=None):
    practices = administered_practices()
    return render_template("people/person.html", person=user, refusal=refusal, issued=issued,
                           cannot=domain.manage_refusal(g.visit, practices, user),
                           member_of=domain.practice_ids_of(user), practices=practices,
                           roles=domain.grantable_roles(g.visit)), code


@bp.route("/<int:user_id>")
def person(user_id):
    return _person_page(person_or_404(user_id))


@bp.route("/new", methods=["GET", "POST"])
def add():
    practices = administered_practices()
    form = {"email": "", "name": "", "role": "", "practice": [str(g.visit.practice.id)], "how": domain.INVITE_LINK}
    if request.method == "GET":
        return render_template("people/new.html", form=form, refusal=None, practices=practices,
                               roles=domain.grantable_roles(g.visit))
    form = {key: request.form.get(key, "")[:300] for key in ("email", "name", "role", "how")}
    form["practice"] = request.form.getlist("practice")
    result = domain.add_person(g.visit, practices, form["email"], form["name"], form["role"], form["practice"],
                               form["how"])
    if isinstance(result, Refusal):
        return render_template("people/new.html", form=form, refusal=result, practices=practices,
                               roles=domain.grantable_roles(g.visit)), _status(result)
    return render_template("people/issued.html", issued=result, added=True)


@bp.route("/<int:user_id>/reset", methods=["POST"])
def reset(user_id):
    result = domain.reset_password(g.visit, administered_practices(), person_or_404(user_id),
                                   request.form.get("how", ""))
    if isinstance(result, Refusal):
        return _person_page(person_or_404(user_id), _status(result), result)
    return render_template("people/issued.html", issued=result, added=False)


def _changed(user_id, result, message: str):
    if isinstance(result, Refusal):
        return _person_page(person_or_404(user_id), _status(result), result)
    return done("people.person", message=message, endpoint_args={"user_id": user_id})


@bp.route("/<int:user_id>/role", methods=["POST"])
def set_role(user_id):
    result = domain.set_role(g.visit, administered_practices(), person_or_404(user_id), request.form.get("role", ""))
    return _changed(user_id, result, "Role changed.")


@bp.route("/<int:user_id>/practices", methods=["POST"])
def set_practices(user_id):
    result = domain.set_practices(g.visit, administered_practices(), person_or_404(user_id),
                                  request.form.getlist("practice"))
    return _changed(user_id, result, "Practices changed.")


@bp.route("/<int:user_id>/deactivate", methods=["POST"])
def deactivate(user_id):
    """Every sign-in of theirs ends at once; htmx swaps the status control (#person-status) only."""
    return _set_active(user_id, False)


@bp.route("/<int:user_id>/reactivate", methods=["POST"])
def reactivate(user_id):
    return _set_active(user_id, True)


def _set_active(user_id, active: bool):
    user = person_or_404(user_id)
    result = domain.set_active(g.visit, administered_practices(), user, active)
    if isinstance(result, Refusal):
        if wants_fragment():
            return render_template("people/_status.html", person=user, refusal=result,
                                   cannot=None), _status(result)
        return _person_page(user, _status(result), result)
    return done("people.person", "people/_status.html",
                message="Reactivated." if result.active else "Deactivated: their sign-ins have ended.",
                endpoint_args={"user_id": user_id}, person=result, refusal=None, cannot=None)


@bp.route("/practices")
def practices():
    if not domain.may_manage_practices(g.visit):
        abort(403)
    return render_template("people/practices.html", practices=administered_practices(), refusal=None,
                           refused_id=None, typed="")


@bp.route("/practices/<int:practice_id>/rename", methods=["POST"])
def rename_practice(practice_id):
    if not domain.may_manage_practices(g.visit):
        abort(403)
    name = request.form.get("name", "")[:300]
    result = domain.rename_practice(g.visit, administered_practices(), practice_id, name)
    if isinstance(result, Refusal):
        if result.code == "not_yours":
            abort(404)
        return render_template("people/practices.html", practices=administered_practices(), refusal=result,
                               refused_id=practice_id, typed=name), _status(result)
    return done("people.practices", message=f"Renamed to {result.name}.")


@bp.route("/invite/<token>", methods=["GET", "POST"])
def invite(token):
    """The invited person sets their password, once."""
    found = domain.check_invite(token, g.visit.now)
    if found.error:
        return render_template("people/invite.html", invite=None, errors={"link": found.error}), found.status
    if request.method == "GET":
        return render_template("people/invite.html", invite=found.invite, errors={})
    errors = domain.accept_invite(g.visit, token, request.form.get("new", ""), request.form.get("repeat", ""))
    if errors:
        return render_template("people/invite.html", invite=found.invite if "link" not in errors else None,
                               errors=errors), 409 if "link" in errors else 422
    return render_template("people/invite_done.html", login_url=url_for("auth.login"))

"""Security Management › IP Access Requests: approve or reject in one click, race-safe."""
from __future__ import annotations

from flask import abort, g, render_template
from peewee import JOIN

from pbnsec.domain import access_requests
from pbnsec.models import (
    APPROVED,
    PENDING,
    REJECTED,
    AccessRequest,
    Practice,
    User,
)
from pbnsec.web.pages import done, htmx_response, wants_fragment
from pbnsec.web.security import administered_ids, bp

DECIDED_SHOWN = 200


def pending_count() -> int:
    return AccessRequest.select().where(
        (AccessRequest.status == PENDING) & AccessRequest.practice.in_(administered_ids())).count()


def visible_requests():
    """Pending first (oldest first), then the latest decided ones, for the admin's practices only."""
    decider = User.alias()
    base = (AccessRequest.select(AccessRequest, User, Practice, decider)
            .join(User, on=(AccessRequest.user == User.id))
            .switch(AccessRequest).join(Practice)
            .switch(AccessRequest).join(decider, join_type=JOIN.LEFT_OUTER,
                                        on=(AccessRequest.decided_by == decider.id), attr="decider")
            .where(AccessRequest.practice.in_(administered_ids())))
    pending = base.where(AccessRequest.status == PENDING).order_by(AccessRequest.created_at, AccessRequest.id)
    decided = (base.where(AccessRequest.status != PENDING)
               .order_by(AccessRequest.decided_at.desc(), AccessRequest.id.desc()).limit(DECIDED_SHOWN))
    return list(pending), list(decided)


def request_or_404(request_id: int) -> AccessRequest:
    req = AccessRequest.get_or_none(AccessRequest.id == request_id)
    if req is None or req.practice_id not in administered_ids():
        abort(404)
    return req


@bp.route("/requests")
def requests_page():
    pending, decided = visible_requests()
    return render_template("security/requests.html", pending=pending, decided=decided)


@bp.route("/requests/badge")
def requests_badge():
    return render_template("security/_badge.html", count=pending_count())


def _decide_view(request_id: int, status: str):
    req = request_or_404(request_id)
    won = access_requests.decide(g.visit, req, status)
    req = (AccessRequest.select(AccessRequest, User).join(User, on=(AccessRequest.user == User.id))
           .where(AccessRequest.id == req.id).first())
    if req is None:  # the requester's account was deleted meanwhile
        abort(404)
    decider = User.get_or_none(User.id == req.decided_by_id)
    if won:
        message = f"{req.status.capitalize()} {req.user.name}'s request for {req.practice.name} from {req.ip}."
        return done("security.requests_page", "security/_request_row.html", trigger="requests-changed",
                    message=message, r=req, decider=decider, lost=False)
    if wants_fragment():
        body = render_template("security/_request_row.html", r=req, decider=decider, lost=True)
        return htmx_response(body, trigger="requests-changed")
    pending, decided = visible_requests()
    return render_template("security/requests.html", pending=pending, decided=decided,
                           conflict=f"{decider.name if decider else 'Someone'} already "
                                    f"{req.status} this request."), 409


@bp.route("/requests/<int:request_id>/approve", methods=["POST"])
def approve_request(request_id: int):
    return _decide_view(request_id, APPROVED)


@bp.route("/requests/<int:request_id>/reject", methods=["POST"])
def reject_request(request_id: int):
    return _decide_view(request_id, REJECTED)

"""Access requests: a blocked user asks for their current IP at a practice; an administrator decides, once."""
from __future__ import annotations

from peewee import IntegrityError

from pbnsec.db import database
from pbnsec.domain import audit
from pbnsec.domain.visit import Visit
from pbnsec.models import APPROVED, PENDING, AccessRequest, Grant


def submit(visit: Visit, practices, note: str) -> list:
    """One pending request per practice from the visit's IP; one already pending (even from a parallel submit) is
    kept. Returns the practices a request was made for."""
    created = []
    for practice in practices:
        try:
            with database.atomic():
                AccessRequest.create(user=visit.user, practice=practice, ip=visit.ip_text, note=note)
                audit.record_by(visit, "request_submitted", practice=practice, target=visit.ip_text, detail=note)
            created.append(practice)
        except IntegrityError:
            pass
    return created


def decide(visit: Visit, request: AccessRequest, status: str) -> bool:
    """Record one decision by the visit's user; True for the click that made it, False when someone decided first."""
    with database.atomic():
        # The write comes first and only touches a pending row: of many racing clicks, one wins.
        won = (AccessRequest.update(status=status, decided_by=visit.user.id, decided_at=visit.now)
               .where((AccessRequest.id == request.id) & (AccessRequest.status == PENDING))
               .execute()) == 1
        if won:
            if status == APPROVED:
                (Grant.insert(user=request.user_id, practice=request.practice_id, ip=request.ip, request=request.id,
                              created_by=visit.user.id, created_at=visit.now)
                 .on_conflict_ignore().execute())
            audit.record_by(visit, f"request_{status}", practice=request.practice_id,
                            target=f"{request.user.email} from {request.ip}", detail=f"request #{request.id}")
    return won

"""Twenty clicks on one access request at the same moment: exactly one decision wins, everyone else is told who."""
import threading
from dataclasses import dataclass

import pytest
from conftest import OFFICE_IP, PEOPLE

from pbnsec.models import AccessRequest, AuditEvent, Grant, Practice, User

CLICKS = 20
AWAY = "127.0.0.7"


@dataclass
class Click:
    admin: str
    action: str  # approve | reject
    htmx: bool
    status: int = 0
    body: str = ""
    headers: dict = None
    error: BaseException | None = None


def admin_session(signed_in, who):
    """The cookie and CSRF token of a signed-in administrator, for other clients to carry."""
    v = signed_in(who)
    return v.client.get_cookie("pbnsec_session").value, v.token


@pytest.mark.parametrize("round_", [1, 2, 3])
def test_twenty_concurrent_decisions_on_one_request_make_exactly_one(app, signed_in, round_):
    with app.app_context():
        hal = User.get(User.email == PEOPLE["hal"][0])
        riverside = Practice.get(Practice.name == "Riverside Dental")
        rid = AccessRequest.create(user=hal, practice=riverside, ip=AWAY, note="race").id
    sessions = {who: admin_session(signed_in, who) for who in ("ann", "owner")}
    names = {"ann": PEOPLE["ann"][1], "owner": PEOPLE["owner"][1]}

    # every combination of admin, action and htmx, five times over: half approve, half htmx
    clicks = [Click(admin=("ann", "owner")[(i // 4) % 2], action=("approve", "reject")[i % 2],
                    htmx=bool((i // 2) % 2)) for i in range(CLICKS)]
    barrier = threading.Barrier(CLICKS)

    def click(c: Click):
        try:
            cookie, token = sessions[c.admin]
            client = app.test_client()
            client.set_cookie("pbnsec_session", cookie)
            headers = {"HX-Request": "true"} if c.htmx else {}
            barrier.wait()
            response = client.post(f"/security/requests/{rid}/{c.action}", data={"csrf_token": token},
                                   headers=headers, environ_base={"REMOTE_ADDR": OFFICE_IP})
            c.status, c.body, c.headers = response.status_code, response.get_data(as_text=True), dict(response.headers)
        except BaseException as exc:  # reported below, never lost in the thread
            c.error = exc
            barrier.abort()

    threads = [threading.Thread(target=click, args=(c,)) for c in clicks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [c.error for c in clicks if c.error] == []

    # the database holds exactly one decision
    with app.app_context():
        req = AccessRequest.get_by_id(rid)
        status, decider = req.status, req.decided_by.email if req.decided_by_id else None
        grants = [(g.user_id, g.practice_id, g.ip, g.request_id) for g in Grant.select()]
        decisions = [(e.action, e.actor_label) for e in AuditEvent.select().where(
            AuditEvent.action.in_(["request_approved", "request_rejected"]))]
    assert status in ("approved", "rejected")
    assert decider in (PEOPLE["ann"][0], PEOPLE["owner"][0])
    assert grants == ([(hal.id, riverside.id, AWAY, rid)] if status == "approved" else [])
    assert decisions == [(f"request_{status}", decider)]

    # exactly one click won, and it is the one the database recorded
    lost_marker = "decided this request first"
    winners = [c for c in clicks if c.status in (200, 303) and lost_marker not in c.body]
    assert len(winners) == 1, [(c.admin, c.action, c.htmx, c.status) for c in clicks]
    winner = winners[0]
    assert {"approve": "approved", "reject": "rejected"}[winner.action] == status
    assert PEOPLE[winner.admin][0] == decider
    if winner.htmx:
        assert winner.status == 200 and winner.headers["HX-Trigger"] == "requests-changed"
        assert winner.body.strip().startswith(f'<tr id="request-{rid}"') and lost_marker not in winner.body
    else:
        assert winner.status == 303 and winner.headers["Location"] == "/security/requests"

    # every other click was told who decided first
    winner_name = names[winner.admin]
    label = status.capitalize()
    for c in clicks:
        if c is winner:
            continue
        if c.htmx:
            body = c.body.strip()
            assert body.startswith(f'<tr id="request-{rid}"') and "<html" not in body, (c, body[:200])
            assert f"{winner_name} {lost_marker}." in body
            assert f">{label}</span>" in body
        else:
            assert c.status == 409, (c.admin, c.action, c.status)
            assert f"{winner_name} already {status} this request." in c.body

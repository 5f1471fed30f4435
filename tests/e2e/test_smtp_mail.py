"""Mail through a real SMTP server (aiosmtpd on a loopback port): what arrives, what happens while the server is
down, and the sender a running app starts by itself."""
import shutil
import time

import pytest
from conftest import PASSWORD, Visitor, make_app, mail_settings, practice_id, restrict
from realworld import HttpVisitor, app_server

from pbnsec.models import QUEUED, SENT, AccessRequest, OutboxMail

RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"
HOME = "127.0.0.9"  # Hal's address at home: on no allowlist


def blocked_hal(app) -> Visitor:
    """Hal, signed in at home where both his practices block him: the blocked page."""
    for practice in (RIVERSIDE, LAKESIDE):
        restrict(app, practice, "127.0.0.0/29")
    hal = Visitor(app, ip=HOME)
    assert hal.login("hal@example.com").headers["Location"] == "/blocked"
    return hal


def ask(app, v: Visitor, practice: str, note: str = ""):
    response = v.post("/access-requests", {"practice": str(practice_id(app, practice)), "note": note})
    assert response.status_code == 303, response.text


def send_pending(app):
    return app.test_cli_runner().invoke(args=["mail", "send-pending"])


def addressed(messages) -> list[str]:
    return sorted(m["To"].addresses[0].addr_spec for m in messages)


def text(message) -> str:
    return message.get_content().replace("\r\n", "\n")


def test_a_request_reaches_its_practices_administrators_and_the_decision_reaches_the_requester(mail_app,
                                                                                              mail_server):
    app = mail_app
    hal = blocked_hal(app)
    ask(app, hal, RIVERSIDE, note="Working from home today\r\nBcc: mallory@example.net")
    assert mail_server.messages == []  # nothing goes out from the web request itself

    result = send_pending(app)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "Sent 2, failed 0, skipped 0."
    assert addressed(mail_server.messages) == ["ann@example.com", "owner@example.com"]  # not Bob: Lakeside's
    assert sorted(rcpt for _, (rcpt,) in mail_server.envelopes) == ["ann@example.com", "owner@example.com"]
    [mail] = mail_server.to("ann")
    assert mail["From"] == "pbnsec <pbnsec@example.org>"
    assert mail["Subject"] == "pbnsec: access request from Hal Hygienist for Riverside Dental"
    assert mail["Bcc"] is None
    body = text(mail)
    assert body.startswith("Hello Ann Lee,\n\nAn access request waits for your decision:\n\nRiverside Dental\n")
    assert f"  * Hal Hygienist (Hygienist, hal@example.com)\n    from {HOME}, asked " in body
    assert "    Note:\n    | Working from home today\n    | Bcc: mallory@example.net\n" in body
    assert "https://pbnsec.example.org/security/requests" in body

    ann = Visitor(app)
    ann.login("ann@example.com")
    with app.app_context():
        request_id = AccessRequest.get().id
    assert ann.post(f"/security/requests/{request_id}/approve", {"duration": "8h"}, htmx=True).status_code == 200
    assert send_pending(app).stdout.startswith("Sent 1, failed 0, skipped 0.")
    [told] = mail_server.to("hal")
    assert told["Subject"] == "pbnsec: your access request for Riverside Dental was approved"
    assert f"Ann Lee approved your access request for Riverside Dental from {HOME} on " in text(told)
    assert "The approval lasts until " in text(told) and "https://pbnsec.example.org/login" in text(told)

    assert send_pending(app).stdout.startswith("Sent 0, failed 0, skipped 0.")
    assert len(mail_server.messages) == 3


def test_while_the_smtp_server_is_down_mail_waits_with_its_error_then_goes_exactly_once(mail_app, mail_server):
    app = mail_app
    mail_server.stop()
    hal = blocked_hal(app)
    ask(app, hal, LAKESIDE)  # Bob and the Owner

    down = send_pending(app)
    assert down.exit_code == 1
    assert down.stdout.splitlines()[:2] == ["Sent 0, failed 1, skipped 0.",
                                            "  ConnectionRefusedError: [Errno 111] Connection refused"]
    status = app.test_cli_runner().invoke(args=["mail", "status"]).stdout.splitlines()
    assert status[0] == f"Mail is on: smtp://127.0.0.1:{mail_server.port}, from pbnsec <pbnsec@example.org>."
    assert status[1] == "queued 2, sending 0, sent 0, skipped 0"
    assert [line for line in status[2:]
            if "1 attempt," in line and "last error: ConnectionRefusedError" in line], status
    with app.app_context():
        assert sorted((m.status, m.attempts) for m in OutboxMail.select()) == [(QUEUED, 0), (QUEUED, 1)]

    mail_server.start()  # on the same port
    up = send_pending(app)
    assert up.exit_code == 0 and up.stdout.startswith("Sent 2, failed 0, skipped 0."), up.stdout
    assert addressed(mail_server.messages) == ["bob@example.com", "owner@example.com"]
    assert send_pending(app).stdout.startswith("Sent 0,")
    assert len(mail_server.messages) == 2
    with app.app_context():
        assert {m.status for m in OutboxMail.select()} == {SENT}


def test_mail_commands_say_when_mail_is_off(app):
    assert app.test_cli_runner().invoke(args=["mail", "status"]).stdout.startswith(
        "Mail is off (PBNSEC_SMTP_URL is not set).")
    result = app.test_cli_runner().invoke(args=["mail", "send-pending"])
    assert result.exit_code != 0 and "Mail is off: set PBNSEC_SMTP_URL and PBNSEC_MAIL_FROM" in result.stderr


@pytest.fixture
def running_app(tmp_path, seeded_database, mail_server):
    """The app as a server process runs it: its sender thread started (it looks only when woken, here)."""
    shutil.copyfile(seeded_database, tmp_path / "pbnsec.db")
    app = make_app(tmp_path, **mail_settings(mail_server), MAIL_SENDER=True, MAIL_POLL_SECONDS=3600)
    sender = app.extensions["pbnsec_mail"]
    yield app
    sender.stop()


def wait_until(check, seconds: float = 20):
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert check()


def test_a_running_app_sends_by_itself_once_the_request_committed_and_stops_cleanly(running_app, mail_server):
    sender = running_app.extensions["pbnsec_mail"]
    assert sender.running
    hal = blocked_hal(running_app)
    ask(running_app, hal, RIVERSIDE)
    assert addressed(mail_server.wait_for(2)) == ["ann@example.com", "owner@example.com"]
    sender.stop()
    assert not sender.running
    assert len(mail_server.messages) == 2


def test_a_request_is_answered_while_the_smtp_server_is_down_and_its_mail_goes_later(running_app, mail_server):
    mail_server.stop()
    hal = blocked_hal(running_app)
    ask(running_app, hal, LAKESIDE)  # answered: the web request never talks to the SMTP server

    def tried():
        with running_app.app_context():
            return OutboxMail.select().where(OutboxMail.attempts > 0).exists()
    wait_until(tried)
    running_app.extensions["pbnsec_mail"].stop()
    mail_server.start()
    assert send_pending(running_app).stdout.startswith("Sent 2, failed 0")
    assert addressed(mail_server.messages) == ["bob@example.com", "owner@example.com"]


def test_make_run_sends_mail(tmp_path, seeded_database, mail_server):
    database = tmp_path / "pbnsec.db"
    shutil.copyfile(seeded_database, database)
    app = make_app(tmp_path)  # on the same file, to restrict Riverside before the server starts
    restrict(app, RIVERSIDE, "127.0.0.0/29")
    restrict(app, LAKESIDE, "127.0.0.0/29")
    riverside = practice_id(app, RIVERSIDE)
    with app_server(tmp_path, database, PBNSEC_SMTP_URL=mail_server.url, PBNSEC_MAIL_FROM="pbnsec@example.org",
                    PBNSEC_BASE_URL="https://pbnsec.example.org") as server:
        hal = HttpVisitor(HOME)
        assert hal.sign_in(server.port, "hal@example.com", PASSWORD) == "/blocked"
        hal.request(server.port, "GET", "/blocked")
        status, _, _ = hal.request(server.port, "POST", "/access-requests", {"practice": str(riverside), "note": ""})
        assert status == 303
        assert addressed(mail_server.wait_for(2)) == ["ann@example.com", "owner@example.com"]
    assert "mail_sent" in server.output


def test_a_sender_whose_thread_is_gone_starts_again_at_the_next_request(running_app, mail_server):
    sender = running_app.extensions["pbnsec_mail"]
    sender.stop()
    sender.wanted = True  # as a worker forked from the process that started it finds it: wanted, not running
    hal = blocked_hal(running_app)
    assert sender.running
    ask(running_app, hal, RIVERSIDE)
    assert addressed(mail_server.wait_for(2)) == ["ann@example.com", "owner@example.com"]

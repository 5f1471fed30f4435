"""The outbox: mail queued with its event, claimed by one sender, retried after a failure, batched per
administrator. Sent here through a recording transport; tests/e2e/test_smtp_mail.py uses a real SMTP server."""
import shutil
import threading
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from conftest import MailCatcher, make_app, mail_settings, person, practice_named, visit_of

from pbnsec import mailer
from pbnsec.db import database
from pbnsec.domain import access_requests
from pbnsec.mailer import LEASE, DeliveryError, claim, send_pending
from pbnsec.models import (
    APPROVED,
    QUEUED,
    REJECTED,
    REQUEST_DECIDED,
    REQUESTS_WAITING,
    SENDING,
    SENT,
    SKIPPED,
    AccessRequest,
    OutboxMail,
    User,
)

T0 = datetime(2026, 12, 3, 9, 0)
MINUTE = timedelta(minutes=1)
RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"


@pytest.fixture
def outbox(tmp_path, seeded_database):
    """The seeded database with mail on (to a port nobody listens on: these tests send through a Recorder)."""
    shutil.copyfile(seeded_database, tmp_path / "pbnsec.db")
    app = make_app(tmp_path, **mail_settings(MailCatcher()))
    with app.app_context():
        yield app


class Recorder:
    """A transport that keeps what it is given, or fails like an SMTP server that is down."""

    def __init__(self, down: bool = False):
        self.sent, self.down = [], down
        self.lock = threading.Lock()

    def send(self, message):
        if self.down:
            raise DeliveryError("ConnectionRefusedError: [Errno 111] Connection refused", server_down=True)
        with self.lock:
            self.sent.append(message)

    def to(self, who: str):
        return [m for m in self.sent if m["To"].addresses[0].addr_spec == person(who).email]


def ask(who: str, practice: str, at: datetime, ip: str = "203.0.113.7", note: str = "") -> int:
    """An access request as the blocked page submits it, at `at`; its id."""
    access_requests.submit(replace(visit_of(who, ip), now=at), [practice_named(practice)], note)
    return AccessRequest.select(AccessRequest.id).order_by(AccessRequest.id.desc()).scalar()


def decide(who: str, request_id: int, status: str, at: datetime, duration=None):
    practices = [p.id for p in person(who).practices()]
    return access_requests.decide(replace(visit_of(who), now=at), request_id, status, practices, duration)


def one_mail() -> int:
    """Exactly one mail queued (Hal told of a rejection at T0); its id."""
    rid = ask("hal", RIVERSIDE, T0)
    OutboxMail.delete().execute()
    decide("ann", rid, REJECTED, T0)
    return OutboxMail.get().id


def queued():
    """(kind, recipient's short name, send_after) of every mail not sent yet."""
    names = {person(w).id: w for w in ("owner", "ann", "bob", "fay", "hal")}
    return sorted((m.kind, names[m.recipient_id], m.send_after)
                  for m in OutboxMail.select().where(OutboxMail.status == QUEUED))


def body(message) -> str:
    return message.get_content().replace("\r\n", "\n")


# --- what is queued, and when ---

def test_without_an_smtp_url_nothing_is_queued(db):
    ask("hal", RIVERSIDE, T0)
    decide("ann", AccessRequest.get().id, REJECTED, T0)
    assert OutboxMail.select().count() == 0


def test_a_request_queues_a_mail_to_each_active_administrator_of_its_practice(outbox):
    User.update(active=False).where(User.email == "bob@example.com").execute()  # not Riverside's anyway
    ask("hal", RIVERSIDE, T0)
    assert queued() == [(REQUESTS_WAITING, "ann", T0), (REQUESTS_WAITING, "owner", T0)]


def test_deactivated_administrators_and_the_requester_themselves_are_not_mailed(outbox):
    User.update(active=False).where(User.email == "owner@example.com").execute()
    ask("ann", RIVERSIDE, T0)  # an administrator asking for their own practice
    assert queued() == []
    ask("hal", LAKESIDE, T0)
    assert queued() == [(REQUESTS_WAITING, "bob", T0)]


def test_mail_is_queued_only_when_its_event_commits(outbox):
    with pytest.raises(RuntimeError):
        with database.atomic():
            ask("hal", RIVERSIDE, T0)
            raise RuntimeError("the request failed after the request row was written")
    assert AccessRequest.select().count() == 0 and OutboxMail.select().count() == 0

    rid = ask("hal", RIVERSIDE, T0)
    OutboxMail.delete().execute()
    assert decide("ann", rid, APPROVED, T0).won
    assert not decide("owner", rid, REJECTED, T0).won  # lost the race: no second mail
    assert queued() == [(REQUEST_DECIDED, "hal", T0)]


def test_a_deactivated_requester_is_not_told(outbox):
    rid = ask("hal", RIVERSIDE, T0)
    OutboxMail.delete().execute()
    User.update(active=False).where(User.email == "hal@example.com").execute()
    decide("ann", rid, REJECTED, T0)
    assert queued() == []


# --- batching: at most one mail per administrator per NOTIFY_BATCH_MINUTES ---

def test_a_request_a_minute_after_another_makes_one_mail_per_administrator_listing_both(outbox):
    ask("hal", RIVERSIDE, T0, note="Working from home")
    ask("fay", RIVERSIDE, T0 + MINUTE, ip="198.51.100.20")
    assert queued() == [(REQUESTS_WAITING, "ann", T0), (REQUESTS_WAITING, "owner", T0)]

    sent = Recorder()
    assert send_pending(sent, now=T0 + MINUTE).sent == 2
    assert len(sent.to("ann")) == len(sent.to("owner")) == 1
    mail = sent.to("ann")[0]
    assert mail["Subject"] == "pbnsec: 2 access requests wait for your decision"
    text = body(mail)
    assert "Hello Ann Lee," in text
    assert "Hal Hygienist (Hygienist, hal@example.com)\n    from 203.0.113.7" in text
    assert "Fay Desk (Front Desk, fay@example.com)\n    from 198.51.100.20" in text
    assert "    Note:\n    | Working from home" in text
    assert "https://pbnsec.example.org/security/requests" in text
    assert "at most one every 10 minutes" in text


def test_after_a_mail_went_out_the_next_waits_for_the_batch_interval_and_gathers_what_arrives(outbox):
    ask("hal", RIVERSIDE, T0)
    sent = Recorder()
    send_pending(sent, now=T0)
    assert len(sent.sent) == 2  # the first request is told at once

    second = ask("fay", RIVERSIDE, T0 + MINUTE)
    ask("hal", RIVERSIDE, T0 + 2 * MINUTE, ip="198.51.100.9")
    assert queued() == [(REQUESTS_WAITING, "ann", T0 + 10 * MINUTE), (REQUESTS_WAITING, "owner", T0 + 10 * MINUTE)]
    assert send_pending(sent, now=T0 + 9 * MINUTE).sent == 0
    decide("ann", second, REJECTED, T0 + 9 * MINUTE)  # decided meanwhile: not listed any more

    assert send_pending(sent, now=T0 + 10 * MINUTE).sent == 3  # Ann, the Owner, and Fay's rejection
    later = sent.to("ann")[1]
    assert later["Subject"] == "pbnsec: 2 access requests wait for your decision"
    assert "Fay Desk" not in body(later) and "198.51.100.9" in body(later)


def test_nothing_is_sent_when_every_request_was_decided_before_the_mail_went(outbox):
    rid = ask("hal", RIVERSIDE, T0)
    decide("ann", rid, APPROVED, T0)
    report = send_pending(Recorder(), now=T0)
    assert (report.sent, report.skipped) == (1, 2)  # only Hal hears, of the approval
    reasons = {m.last_error for m in OutboxMail.select().where(OutboxMail.status == SKIPPED)}
    assert reasons == {"no request is pending any more"}


# --- decisions, to the requester ---

def test_an_approval_tells_the_requester_until_when(outbox):
    rid = ask("hal", RIVERSIDE, T0)
    OutboxMail.delete().execute()
    decide("ann", rid, APPROVED, T0, duration="8h")
    sent = Recorder()
    send_pending(sent, now=T0)
    [mail] = sent.sent
    assert mail["To"].addresses[0].addr_spec == "hal@example.com"
    assert mail["Subject"] == "pbnsec: your access request for Riverside Dental was approved"
    text = body(mail)
    assert "Ann Lee approved your access request for Riverside Dental from 203.0.113.7 on 2026-12-03 09:00 UTC." in text
    assert "The approval lasts until 2026-12-03 17:00 UTC." in text
    assert "Sign in from 203.0.113.7 to continue:\nhttps://pbnsec.example.org/login" in text


def test_a_rejection_tells_the_requester(outbox):
    rid = ask("hal", RIVERSIDE, T0)
    OutboxMail.delete().execute()
    decide("owner", rid, REJECTED, T0)
    sent = Recorder()
    send_pending(sent, now=T0)
    [mail] = sent.sent
    assert mail["Subject"] == "pbnsec: your access request for Riverside Dental was rejected"
    assert "Olive Owner rejected your access request for Riverside Dental from 203.0.113.7" in body(mail)
    if not hasattr(AccessRequest, "reason"):
        assert "No reason was given" in body(mail)


@pytest.mark.skipif(not hasattr(AccessRequest, "reason"), reason="AccessRequest.reason comes with migration 12")
def test_a_rejection_carries_its_reason(outbox):
    rid = ask("hal", RIVERSIDE, T0)
    OutboxMail.delete().execute()
    decide("owner", rid, REJECTED, T0)
    AccessRequest.update(reason="Use the office VPN\r\nBcc: x@example.net").where(AccessRequest.id == rid).execute()
    sent = Recorder()
    send_pending(sent, now=T0)
    assert "Reason:\n    | Use the office VPN\n    | Bcc: x@example.net" in body(sent.sent[0])
    assert sent.sent[0]["Bcc"] is None


def test_without_a_base_url_a_mail_names_the_page(outbox):
    from pbnsec.domain import notifications

    notifications.configure(replace(notifications.settings(), base_url=None))
    ask("hal", RIVERSIDE, T0)
    sent = Recorder()
    send_pending(sent, now=T0)
    assert ("Approve or reject it in pbnsec under Security Management › IP Access Requests (the page "
            "/security/requests of pbnsec).") in body(sent.to("ann")[0])


# --- claiming, failing, retrying ---

def test_a_mail_is_claimed_by_one_sender_until_its_claim_lapses(outbox):
    mail_id = one_mail()
    assert claim(mail_id, "first", T0)
    assert not claim(mail_id, "second", T0)
    assert not claim(mail_id, "second", T0 + LEASE - MINUTE)
    # The first sender died mid-send: after the lease another takes the mail over.
    assert claim(mail_id, "second", T0 + LEASE)
    mail = OutboxMail.get_by_id(mail_id)
    assert (mail.status, mail.claimed_by, mail.attempts) == (SENDING, "second", 2)


def test_two_senders_racing_send_every_mail_exactly_once(outbox):
    for n in range(12):
        rid = ask("hal", LAKESIDE, T0, ip=f"203.0.113.{n + 1}")
        ask("fay", RIVERSIDE, T0, ip=f"203.0.113.{n + 1}")
        decide("bob", rid, REJECTED, T0)
    total = OutboxMail.select().where(OutboxMail.status == QUEUED).count()
    assert total == 15  # 12 rejections, one waiting mail each for Bob, Ann and the Owner
    sent = Recorder()
    both_sending = threading.Barrier(2, timeout=30)  # each holds its first mail until the other has one too

    class Racing:
        def __init__(self):
            self.first = True

        def send(self, message):
            if self.first:
                self.first = False
                both_sending.wait()
            sent.send(message)

    def sender(name):
        try:
            send_pending(Racing(), now=T0, worker=name)
        finally:
            database.close()  # each thread has its own connection

    threads = [threading.Thread(target=sender, args=(name,)) for name in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [m["Message-ID"] for m in sent.sent]
    assert len(ids) == len(set(ids)) == 14  # Bob's waiting mail has nothing left to list: skipped
    rows = list(OutboxMail.select())
    assert sorted(m.status for m in rows) == [SENT] * 14 + [SKIPPED]
    assert {m.attempts for m in rows} == {1}  # none was claimed twice
    assert {m.claimed_by for m in rows} == {"one", "two"}  # both were at work


def test_a_failed_try_is_counted_kept_and_retried_later_and_later_then_sent_once(outbox):
    one_mail()
    down = Recorder(down=True)
    report = send_pending(down, now=T0)
    assert (report.sent, report.failed) == (0, 1)
    mail = OutboxMail.get()
    assert (mail.status, mail.attempts, mail.send_after) == (QUEUED, 1, T0 + MINUTE)
    assert mail.last_error == "ConnectionRefusedError: [Errno 111] Connection refused"

    assert send_pending(down, now=T0 + timedelta(seconds=30)).failed == 0  # not yet: waiting
    send_pending(down, now=T0 + MINUTE)
    assert OutboxMail.get().send_after == T0 + 3 * MINUTE  # waits twice as long now

    up = Recorder()
    assert send_pending(up, now=T0 + 3 * MINUTE).sent == 1
    assert send_pending(up, now=T0 + 60 * MINUTE).sent == 0
    mail = OutboxMail.get()
    assert (mail.status, mail.attempts, mail.sent_at, mail.to_address) == (SENT, 3, T0 + 3 * MINUTE, "hal@example.com")
    assert mail.last_error.startswith("ConnectionRefusedError")  # the history stays
    assert len(up.sent) == 1


def test_a_server_that_is_down_is_tried_once_a_round_not_once_a_mail(outbox):
    ask("hal", RIVERSIDE, T0)  # two mails
    send_pending(Recorder(down=True), now=T0)
    assert sorted(m.attempts for m in OutboxMail.select()) == [0, 1]


def test_by_hand_a_mail_backing_off_is_retried_at_once_but_a_batch_still_waits(outbox):
    first = ask("hal", RIVERSIDE, T0)
    sent = Recorder()
    assert send_pending(sent, now=T0).sent == 2  # Ann and the Owner
    ask("hal", RIVERSIDE, T0 + MINUTE, ip="198.51.100.3")  # their next mail waits until T0 + 10 minutes
    decide("ann", first, REJECTED, T0 + MINUTE)
    assert send_pending(Recorder(down=True), now=T0 + MINUTE).failed == 1  # Hal's, backing off now
    report = send_pending(sent, now=T0 + MINUTE, retry_now=True)
    assert report.sent == 1 and sent.sent[-1]["To"].addresses[0].addr_spec == "hal@example.com"
    assert [m.kind for m in OutboxMail.select().where(OutboxMail.status == QUEUED)] == [REQUESTS_WAITING] * 2


def test_a_failed_waiting_mail_gives_way_to_a_newer_one(outbox):
    ask("hal", LAKESIDE, T0)
    bobs = OutboxMail.select().where(OutboxMail.recipient == person("bob").id)
    mail_id = bobs.get().id
    assert claim(mail_id, "me", T0)
    ask("hal", LAKESIDE, T0, ip="198.51.100.3")  # arrives while the first is being sent: a new mail waits
    mailer._failed(OutboxMail.get_by_id(mail_id), "me", T0, "SMTPServerDisconnected: lost")
    assert OutboxMail.get_by_id(mail_id).status == SKIPPED
    assert "a newer mail lists its requests" in OutboxMail.get_by_id(mail_id).last_error
    assert [m.status for m in bobs.where(OutboxMail.id != mail_id)] == [QUEUED]


def test_a_mail_that_cannot_be_built_backs_off_and_the_others_still_go(outbox):
    one_mail()  # Hal's, first in line
    ask("fay", RIVERSIDE, T0)  # then Ann's and the Owner's
    User.update(email="hal@exa mple.com").where(User.email == "hal@example.com").execute()  # old, bad data
    sent = Recorder()
    report = send_pending(sent, now=T0)
    assert (report.sent, report.failed, report.skipped) == (2, 1, 0)
    hals = OutboxMail.get(OutboxMail.kind == REQUEST_DECIDED)
    assert (hals.status, hals.attempts, hals.send_after) == (QUEUED, 1, T0 + MINUTE)


def test_a_slow_round_stops_before_its_claims_could_lapse_and_no_mail_goes_twice(outbox, monkeypatch):
    """Each claim's lease starts when it is taken; a round that has run half a lease leaves the rest to the next."""
    access_requests.submit(replace(visit_of("hal", "203.0.113.7"), now=T0), [practice_named(RIVERSIDE)], "")
    assert OutboxMail.select().count() == 2  # to Ann and to the Owner
    clock = [T0]
    monkeypatch.setattr(mailer, "utcnow", lambda: clock[0])
    sent = []

    class Other:
        def send(self, message):
            sent.append(("other", message["Message-ID"]))

    class Slow:
        def send(self, message):
            sent.append(("slow", message["Message-ID"]))
            if len(sent) == 1:
                clock[0] += LEASE + MINUTE  # a slow SMTP server: the first mail took longer than a lease
            else:
                send_pending(Other(), worker="other")  # another process's round while this one sends

    send_pending(Slow(), worker="slow")
    send_pending(Other(), worker="other")  # the next round, wherever it runs, sends what is left
    ids = [message_id for _, message_id in sent]
    assert len(ids) == 2 and len(set(ids)) == 2, sent  # each mail once, whoever sent it
    assert OutboxMail.select().where(OutboxMail.status == "sent").count() == 2

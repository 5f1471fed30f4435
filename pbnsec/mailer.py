"""Sending the outbox: claim a due mail with a conditional UPDATE, send it over SMTP, record how it went.

Any number of app processes may send from one database: a mail is claimed by one of them (UPDATE … WHERE its
status is still 'queued'), so none is sent twice. A failed try goes back to the queue with a longer wait
(core.mail.retry_delay) and its error kept, so a mail is never lost while the SMTP server is down. A sender that
dies mid-send leaves its claim to lapse after LEASE; another then takes the mail over (the one case where a mail
the server had already accepted could go out again; it keeps its Message-ID, so mail programs show it once).

Each process runs one Sender thread: it wakes when a request of this process queued mail, and on a timer for
mail queued by other processes or waiting for its time.
"""
from __future__ import annotations

import atexit
import logging
import os
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from peewee import IntegrityError, fn

from pbnsec.core.mail import SmtpServer, build_message, retry_delay
from pbnsec.db import database
from pbnsec.domain import notifications
from pbnsec.domain.notifications import Composed, MailSettings
from pbnsec.models import (
    QUEUED,
    REQUESTS_WAITING,
    SENDING,
    SENT,
    SKIPPED,
    OutboxMail,
    utcnow,
)

log = logging.getLogger("pbnsec.mail")

LEASE = timedelta(minutes=5)  # far longer than one try can take (SMTP_TIMEOUT per step)
SMTP_TIMEOUT = 30  # seconds for each step of talking to the SMTP server
POLL_SECONDS = 30  # how often a sender looks for mail other processes queued
ROUND_MOST = 100  # mails one round sends at most, so a big queue does not keep a claim on the database long
ERROR_MOST = 500


class DeliveryError(Exception):
    """A mail was not sent; `server_down` when no further mail can be sent to this server this round either."""

    def __init__(self, text: str, server_down: bool):
        super().__init__(text)
        self.server_down = server_down


class SmtpTransport:
    """One connection to the SMTP server, opened at the first mail of a round and closed at its end."""

    def __init__(self, server: SmtpServer, timeout: float = SMTP_TIMEOUT):
        self.server, self.timeout = server, timeout
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _connect(self) -> smtplib.SMTP:
        server = self.server
        if server.security == "tls":
            smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=self.timeout,
                                    context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=self.timeout)
            if server.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
        if server.username:
            smtp.login(server.username, server.password)
        return smtp

    def send(self, message) -> None:
        try:
            if self._smtp is None:
                self._smtp = self._connect()
            self._smtp.send_message(message)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            # This mail was refused; the connection is fine for the next one.
            raise DeliveryError(_error_text(exc), server_down=False) from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, timed out, TLS or login failed, hung up
            self.close()
            raise DeliveryError(_error_text(exc), server_down=True) from None

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                self._smtp.close()
            self._smtp = None


def _error_text(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or "no details"
    return f"{type(exc).__name__}: {text}"[:ERROR_MOST]


def worker_name() -> str:
    """Who is sending: machine, process and thread, so a claim names its holder."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{threading.get_ident() % 10**8}"


# --- the outbox ---

def _claimable(now: datetime, retry_now: bool = False):
    due = OutboxMail.send_after <= now
    if retry_now:  # by hand: a mail backing off after a failure is tried now (one waiting for its batch is not)
        due = due | (OutboxMail.attempts > 0)
    lapsed = (OutboxMail.status == SENDING) & (OutboxMail.claimed_until <= now)
    return ((OutboxMail.status == QUEUED) & due) | lapsed


def due_ids(now: datetime, limit: int = ROUND_MOST, retry_now: bool = False) -> list[int]:
    return [mail_id for (mail_id,) in OutboxMail.select(OutboxMail.id).where(_claimable(now, retry_now))
            .order_by(OutboxMail.send_after, OutboxMail.id).limit(limit).tuples()]


def claim(mail_id: int, worker: str, now: datetime, retry_now: bool = False) -> bool:
    """Take one due mail for this worker; of any number of workers racing for it, exactly one gets True."""
    return OutboxMail.update(
        status=SENDING, claimed_by=worker, claimed_until=now + LEASE, attempts=OutboxMail.attempts + 1,
        last_attempt_at=now,
    ).where((OutboxMail.id == mail_id) & _claimable(now, retry_now)).execute() == 1


def _mine(mail_id: int, worker: str):
    return (OutboxMail.id == mail_id) & (OutboxMail.status == SENDING) & (OutboxMail.claimed_by == worker)


def _finish(mail_id: int, worker: str, **fields) -> bool:
    return OutboxMail.update(claimed_until=None, **fields).where(_mine(mail_id, worker)).execute() == 1


def _failed(mail: OutboxMail, worker: str, now: datetime, error: str) -> None:
    """Back to the queue, to be tried again after a wait that grows with each failure."""
    try:
        with database.atomic():
            _finish(mail.id, worker, status=QUEUED, send_after=now + retry_delay(mail.attempts), last_error=error)
    except IntegrityError:
        # A request arrived while this one was being sent: the administrator already has a newer "requests
        # waiting" mail queued, and it lists everything this one did.
        _finish(mail.id, worker, status=SKIPPED, last_error=f"{error} (a newer mail lists its requests)")


@dataclass
class Report:
    """What one round did."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)  # of the failed tries, in order


def send_pending(transport, now: datetime | None = None, worker: str | None = None, limit: int = ROUND_MOST,
                 retry_now: bool = False) -> Report:
    """Send every due mail this worker can claim through `transport` (anything with send(message) raising
    DeliveryError); stop early when the server is down. `retry_now` also tries those backing off after a failure."""
    settings = notifications.settings()
    if settings is None:
        raise RuntimeError("mail is off: PBNSEC_SMTP_URL is not set")
    fixed, started = now, now or utcnow()
    worker = worker or worker_name()
    mail_from = settings.mail_from
    report = Report()
    for mail_id in due_ids(started, limit, retry_now):
        # Each claim's lease starts when it is taken, not when the round began: a slow server must not leave a
        # mail claimed with a lease already run out, for another process to send again meanwhile.
        now = fixed or utcnow()
        if now - started > LEASE / 2:
            break  # a slow round: the rest wait for the next one, claimed afresh
        if not claim(mail_id, worker, now, retry_now):
            continue  # another process took it
        mail = OutboxMail.get_by_id(mail_id)
        try:
            composed = notifications.compose(mail)
            if not isinstance(composed, Composed):
                _finish(mail.id, worker, status=SKIPPED, last_error=composed.reason)
                report.skipped += 1
                continue
            message = build_message(mail_from, composed.to_name, composed.to_address, composed.subject,
                                    composed.body, message_id=_message_id(mail, mail_from), at=now)
        except Exception as exc:  # an address the mail library refuses, say: this mail backs off, the rest go
            log.exception("mail_unsendable id=%s kind=%s", mail.id, mail.kind)
            _failed(mail, worker, now, _error_text(exc))
            report.failed += 1
            report.errors.append(_error_text(exc))
            continue
        try:
            transport.send(message)
        except DeliveryError as exc:
            _failed(mail, worker, now, str(exc))
            report.failed += 1
            report.errors.append(str(exc))
            log.warning("mail_failed id=%s kind=%s attempts=%s error=%s", mail.id, mail.kind, mail.attempts,
                        _quote(str(exc)))
            if exc.server_down:
                break  # the rest wait for the next round, untried
            continue
        _finish(mail.id, worker, status=SENT, sent_at=now, to_address=composed.to_address[:254],
                subject=message["Subject"][:300])
        report.sent += 1
        log.info("mail_sent id=%s kind=%s to=%s", mail.id, mail.kind, _quote(composed.to_address))
    return report


def _quote(text: str) -> str:
    from pbnsec.logs import quote

    return quote(text)


def _message_id(mail: OutboxMail, mail_from: str) -> str:
    """The same on every try of one mail, so a mail program shows a resent copy once."""
    domain = mail_from.rpartition("@")[2].rstrip(">").strip() or "pbnsec.invalid"
    return f"<pbnsec.{mail.id}.{mail.created_at:%Y%m%d%H%M%S}@{domain}>"


def next_due() -> datetime | None:
    """When the next queued mail may be sent (None: nothing is queued)."""
    due = OutboxMail.select(fn.MIN(OutboxMail.send_after)).where(OutboxMail.status == QUEUED).scalar()
    return datetime.fromisoformat(due) if isinstance(due, str) else due


def summary() -> dict[str, int]:
    """How many mails stand where (queued, sending, sent, skipped)."""
    counts = dict(OutboxMail.select(OutboxMail.status, fn.COUNT(OutboxMail.id)).group_by(OutboxMail.status)
                  .tuples())
    return {status: counts.get(status, 0) for status in (QUEUED, SENDING, SENT, SKIPPED)}


def unsent():
    """The mails not sent yet, oldest first, with their recipient."""
    from pbnsec.models import User

    return (OutboxMail.select(OutboxMail, User).join(User, on=OutboxMail.recipient)
            .where(OutboxMail.status.in_([QUEUED, SENDING])).order_by(OutboxMail.send_after, OutboxMail.id))


# --- the sender thread ---

class Sender:
    """A background thread per process that sends the outbox; start() and stop() are safe to call again."""

    def __init__(self, server: SmtpServer, poll_seconds: float = POLL_SECONDS):
        self.server, self.poll_seconds = server, poll_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = None
        self.wanted = False  # started and not stopped: a forked worker or a crashed thread is started again

    @property
    def running(self) -> bool:
        # A forked worker inherits the object but not the thread.
        return self._thread is not None and self._thread.is_alive() and self._pid == os.getpid()

    def start(self) -> None:
        self.wanted = True
        if self.running:
            return
        self._stopping.clear()
        self._wake.set()  # a first round at once: mail left from before the start
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="pbnsec-mail", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the outbox now (a request of this process has just committed a mail)."""
        self._wake.set()

    def stop(self, timeout: float = SMTP_TIMEOUT + 5) -> None:
        """Finish the mail being sent, then end the thread."""
        self.wanted = False
        if self._thread is None:
            return
        self._stopping.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._seconds_to_wait())
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                with SmtpTransport(self.server) as transport:
                    send_pending(transport)
            except Exception:  # the database away for a moment, say: log it and try again next round
                log.exception("mail_round_failed")
            finally:
                if not database.is_closed():
                    database.close()

    def _seconds_to_wait(self) -> float:
        try:
            due = next_due()
        except Exception:
            return self.poll_seconds
        finally:
            if not database.is_closed():
                database.close()
        if due is None:
            return self.poll_seconds
        return min(self.poll_seconds, max((due - utcnow()).total_seconds() + 1, 1))


def init_app(app, start_sender: bool) -> Sender | None:
    """Switch mail on from the app's settings (PBNSEC_SMTP_URL & co); start this process's sender when asked
    (a server process; tests only with MAIL_SENDER=True)."""
    server = app.config.get("SMTP")
    sender = None
    if server is not None:
        notifications.configure(MailSettings(
            mail_from=app.config["MAIL_FROM"], base_url=app.config.get("BASE_URL"),
            batch=timedelta(minutes=app.config.get("NOTIFY_BATCH_MINUTES", 10))))
        sender = Sender(server, app.config.get("MAIL_POLL_SECONDS", POLL_SECONDS))
    else:
        notifications.configure(None)
    app.extensions["pbnsec_mail"] = sender

    @app.teardown_request
    def _wake_sender(exc):
        # After the response: the transaction that queued the mail has committed by now.
        queued = notifications.take_queued()
        if sender is None or not sender.wanted:
            return
        if not sender.running:
            sender.start()  # in a worker forked from the process that started it, or after the thread died
        elif queued:
            sender.wake()

    if sender is not None and app.config.get("MAIL_SENDER", start_sender and not app.testing):
        start(sender)
    return sender


def start(sender: Sender) -> None:
    sender.start()
    atexit.register(sender.stop)

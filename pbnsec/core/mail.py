"""Mail, pure: the SMTP server a URL names, how long to wait before retrying, and a plain-text message built so
that nothing a person typed can add a header (no Flask, no database, no network)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, parseaddr
from urllib.parse import unquote, urlsplit

from pbnsec.core.text import is_control

# scheme -> (how the connection is secured, the port when the URL names none)
SMTP_SCHEMES = {"smtp": ("plain", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}


class MailSettingError(ValueError):
    """A mail setting that cannot be used; the message says why without repeating a password."""


@dataclass(frozen=True)
class SmtpServer:
    security: str  # "plain", "starttls" or "tls" (see SMTP_SCHEMES)
    host: str
    port: int
    username: str = ""
    password: str = field(default="", repr=False)

    def __str__(self) -> str:
        """The server as an operator reads it, never with the password."""
        scheme = next(name for name, (security, _) in SMTP_SCHEMES.items() if security == self.security)
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{host}:{self.port}"


def parse_smtp_url(raw: str) -> SmtpServer:
    """smtp://[user[:password]@]host[:port], smtp+starttls://… or smtps://… (user and password %-encoded)."""
    text = (raw or "").strip()
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    if scheme not in SMTP_SCHEMES or not rest:
        raise MailSettingError(f"must start with {', '.join(s + '://' for s in SMTP_SCHEMES)} "
                               f"(such as smtp+starttls://user:password@mail.example.org:587), not {scheme[:20]!r}")
    security, default_port = SMTP_SCHEMES[scheme]
    try:
        parts = urlsplit(f"smtp://{rest}")
        port = default_port if parts.port is None else parts.port
    except ValueError:
        raise MailSettingError("has a port that is not a number from 1 to 65535") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise MailSettingError("must name only the server: no path, ? or # after the host and port")
    host = parts.hostname or ""
    if not host or any(is_control(c) or c.isspace() for c in host):
        raise MailSettingError("names no server: give a host, such as smtp://127.0.0.1:2525")
    if not 1 <= port <= 65535:
        raise MailSettingError("has a port that is not a number from 1 to 65535")
    username, password = unquote(parts.username or ""), unquote(parts.password or "")
    if any(is_control(c) for c in username + password):
        raise MailSettingError("has a control character in its user name or password")
    return SmtpServer(security, host, port, username, password)


def parse_mail_from(raw: str) -> str:
    """The sender address, "pbnsec@example.org" or "pbnsec <pbnsec@example.org>", checked to be one address."""
    text = (raw or "").strip()
    if any(is_control(c) for c in text):
        raise MailSettingError("contains a control character")
    name, address = parseaddr(text)
    local, _, domain = address.rpartition("@")
    if not local or not domain or " " in address or "," in text.replace(name, "", 1):
        raise MailSettingError(f"must be one email address, such as pbnsec@example.org, not {text[:80]!r}")
    return formataddr((name, address)) if name else address


def parse_base_url(raw: str) -> str:
    """The address people open pbnsec at, as http(s)://host[:port][/path], without a trailing slash."""
    text = (raw or "").strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises for a port that is not a number)
    except ValueError:
        raise MailSettingError(f"has a bad port: {text[:80]!r}") from None
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment
            or parts.username or any(is_control(c) or c.isspace() for c in text)):
        raise MailSettingError(f"must look like https://pbnsec.example.org (http or https, a host, maybe a "
                               f"path; no user, ? or #), not {text[:80]!r}")
    return text.rstrip("/")


RETRY_FIRST = timedelta(minutes=1)
RETRY_MOST = timedelta(hours=1)


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failed try: 1, 2, 4 … minutes, at most an hour."""
    if attempts <= 1:
        return RETRY_FIRST
    return min(RETRY_FIRST * 2 ** min(attempts - 1, 20), RETRY_MOST)


HEADER_MAX = 200


def header_text(text: str, limit: int = HEADER_MAX) -> str:
    """Text for a header: every control or line-breaking character a space, runs of spaces folded, cut to limit."""
    flat = "".join(" " if is_control(c) or c.isspace() else c for c in str(text or ""))
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def body_text(text: str) -> str:
    """Text for a plain-text body: line breaks kept as \\n, every other control character taken out."""
    lines = re.split(r"\r\n|\r|\n|\u2028|\u2029|\x85", str(text or ""))
    return "\n".join("".join(c for c in line if c == "\t" or not is_control(c)) for line in lines)


def quoted(text: str, prefix: str = "    | ") -> str:
    """Someone's text set apart line by line, so it cannot pass for the mail's own words."""
    return "\n".join(prefix + line for line in body_text(text).split("\n"))


def build_message(sender: str, to_name: str, to_address: str, subject: str, body: str,
                  message_id: str, at: datetime) -> EmailMessage:
    """A plain-text UTF-8 message dated `at` (UTC); every header value goes through header_text."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["Date"] = format_datetime(at.replace(tzinfo=timezone.utc))
    local, _, domain = to_address.rpartition("@")
    message["To"] = Address(header_text(to_name, 100), addr_spec=f"{local}@{domain}")
    message["Subject"] = header_text(subject)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
    message.set_content(body_text(body) + "\n", subtype="plain", charset="utf-8")
    return message

"""The gate: may a request to another web tool of the practice pass? (`/gate/verify`, asked by nginx `auth_request`,
Caddy `forward_auth` or Traefik `ForwardAuth` before every request to a protected app.)

The answer is the one decision of the rest of pbnsec: the user's access to each of their practices from this IP
now (access.overview on the process's compiled policies), narrowed to the app's practices and roles. Nothing here
keeps a second copy of the rules, and nothing is cached but the SQL text: a revoked grant, a deactivated user or an
ended sign-in answers differently on the very next request.

A blocked request is audited once per user, app, IP and reason for a while (audit.REPEATED_ACTIONS counts the rest
on that row); an allowed one is only counted, in memory, and the counts are added to `gate_count` every few
seconds (GateState.flush).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from urllib.parse import urlencode

from peewee import EXCLUDED, JOIN, fn

from pbnsec.core.gate import DEFAULT_PORTS, GateInputError, Host, Original, parse_host, parse_original
from pbnsec.core.text import without_control_characters
from pbnsec.db import database
from pbnsec.domain import audit
from pbnsec.domain.access import overview, why_blocked
from pbnsec.domain.visit import Visit
from pbnsec.logs import security_event
from pbnsec.models import (
    GateCount,
    Practice,
    ProtectedApp,
    ProtectedAppPractice,
    ProtectedAppRole,
    User,
)

# What the upstream app is told about an allowed request (and the only X-Pbnsec-* headers the gate sends).
USER_HEADERS = ("X-Pbnsec-User", "X-Pbnsec-Name", "X-Pbnsec-Role", "X-Pbnsec-Practice")
# The proxies that pass the gate's own answer (a 302 included) straight to the browser: they get a 302 by default.
REDIRECTING_PROXIES = frozenset({"caddy", "traefik"})
FLUSH_SECONDS = 5.0  # how often a process adds its counts of gate requests to the table (at most)

# Why a signed-in user is refused, as `outcome`: not a member of the app's practices, a role the app does not take,
# or the decision (ip_not_approved | ip_unknown | outside_hours) at every one of the app's practices they are in.
NOT_MEMBER, ROLE_NOT_ALLOWED = "not_member", "role_not_allowed"


@dataclass(frozen=True)
class GateApp:
    """A protected app as the gate needs it: one row of ProtectedApp with the ids of its practices and roles."""

    id: int
    name: str
    host: Host
    proxy: str
    all_roles: bool
    practice_ids: frozenset[int]
    role_ids: frozenset[int]

    def takes(self, user: User) -> bool:
        """Whether the user's role may use the app."""
        return self.all_roles or user.role_id in self.role_ids


@dataclass(frozen=True)
class Verdict:
    """The gate's answer to one request: what the proxy is sent, and what happened (for the log and the tests)."""

    status: int  # 200 allowed | 401 sign in first | 403 refused | 302 either of those in redirect mode
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""  # a short text for the proxy's log (never a page)
    outcome: str = "allowed"  # allowed | unreadable | unknown_host | signed_out | NOT_MEMBER | ROLE_NOT_ALLOWED | a
    #                           blocking decision's reason (ip_not_approved, ip_unknown, outside_hours)
    app: GateApp | None = None
    practice: Practice | None = None  # allowed under it, or (blocked) the practice that refused
    reason: str = ""  # in words, for the audit log

    @property
    def allowed(self) -> bool:
        return self.outcome == "allowed"

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)


@dataclass(frozen=True)
class GateOptions:
    """How this pbnsec answers: where people sign in (PBNSEC_BASE_URL; None: no Location can be given) and the
    proxy's ?redirect= flag (True: 302, False: 401/403, None: by the app's proxy kind)."""

    base_url: str | None = None
    redirect: bool | None = None


def parse_redirect_flag(text: str | None) -> bool | None:
    """The ?redirect= query flag: 1 (302 to the sign-in or blocked page), 0 (401/403 with Location), absent (by the
    app's proxy); anything else is an error, so a typo in the proxy's configuration is found at once."""
    if text is None:
        return None
    if text in ("0", "1"):
        return text == "1"
    raise GateInputError("The redirect flag must be redirect=1 (answer 302) or redirect=0 (answer 401 or 403).")


class GateState:
    """One process's gate: the app lookup's SQL, put together once per database, and the counts of requests not
    yet added to the table. Thread-safe: the counts are swapped out under a lock, the SQL is immutable text."""

    def __init__(self, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._sql: str | None = None
        self._lock = threading.Lock()
        self._counts: dict[tuple[int, datetime], list[int]] = {}  # (app id, hour) -> [allowed, refused]
        self._flushed_at = time.monotonic()
        self.flush_seconds = flush_seconds

    def find_app(self, host: Host, scheme: str) -> GateApp | None:
        """The protected app serving this host over this scheme, with its practices and roles: one statement on
        the unique index of protected_app.host (a host stored without a port answers on 80 and 443)."""
        port = host.port if host.port is not None else DEFAULT_PORTS[scheme]
        bare = host.name if port in DEFAULT_PORTS.values() else f"{host.name}:{port}"
        if self._sql is None:
            query = (ProtectedApp.select(ProtectedApp.id, ProtectedApp.name, ProtectedApp.host, ProtectedApp.proxy,
                                         ProtectedApp.all_roles, ProtectedAppPractice.practice,
                                         ProtectedAppRole.role)
                     .join(ProtectedAppPractice, on=(ProtectedAppPractice.app == ProtectedApp.id),
                           join_type=JOIN.LEFT_OUTER).switch(ProtectedApp)
                     .join(ProtectedAppRole, on=(ProtectedAppRole.app == ProtectedApp.id), join_type=JOIN.LEFT_OUTER)
                     .where(ProtectedApp.host.in_(["-1", "-2"])))
            sql, params = query.sql()
            assert params == ["-1", "-2"], params  # the two candidate hosts are the only parameters
            self._sql = sql
        rows = database.execute_sql(self._sql, (bare, f"{host.name}:{port}")).fetchall()
        apps: dict[int, tuple] = {}
        practices: dict[int, set[int]] = {}
        roles: dict[int, set[int]] = {}
        for app_id, name, stored, proxy, all_roles, practice_id, role_id in rows:
            apps[app_id] = (name, stored, proxy, all_roles)
            if practice_id is not None:
                practices.setdefault(app_id, set()).add(practice_id)
            if role_id is not None:
                roles.setdefault(app_id, set()).add(role_id)
        found = []
        for app_id, (name, stored, proxy, all_roles) in apps.items():
            app_host = stored_host(stored)
            if app_host is not None and app_host.serves(host, scheme):
                found.append(GateApp(app_id, name, app_host, proxy, bool(all_roles),
                                     frozenset(practices.get(app_id, ())), frozenset(roles.get(app_id, ()))))
        # Both "charts.example" and "charts.example:443" stored: the one naming the port is the more specific.
        found.sort(key=lambda app: app.host.port is None)
        return found[0] if found else None

    def count(self, app_id: int, allowed: bool, now: datetime) -> None:
        """Count one request to an app (in memory: GateState.flush adds the counts to the table)."""
        hour = now.replace(minute=0, second=0, microsecond=0)
        with self._lock:
            counts = self._counts.setdefault((app_id, hour), [0, 0])
            counts[0 if allowed else 1] += 1

    def due(self) -> bool:
        """Whether counts are waiting and the last flush is flush_seconds old."""
        return bool(self._counts) and time.monotonic() - self._flushed_at >= self.flush_seconds

    def flush(self) -> int:
        """Add this process's counts to gate_count (one upsert per app and hour) and forget them; how many rows
        were written. Counts of an app deleted meanwhile are dropped."""
        with self._lock:
            counts, self._counts = self._counts, {}
            self._flushed_at = time.monotonic()
        if not counts:
            return 0
        live = {app_id for (app_id,) in ProtectedApp.select(ProtectedApp.id)
                .where(ProtectedApp.id.in_(list({app_id for app_id, _ in counts}))).tuples()}
        rows = [{"app": app_id, "hour": hour, "allowed": allowed, "refused": refused}
                for (app_id, hour), (allowed, refused) in counts.items() if app_id in live]
        if rows:
            with database.atomic():
                (GateCount.insert_many(rows)
                 .on_conflict(conflict_target=[GateCount.app, GateCount.hour],
                              update={GateCount.allowed: GateCount.allowed + EXCLUDED.allowed,
                                      GateCount.refused: GateCount.refused + EXCLUDED.refused})
                 .execute())
        return len(rows)


@lru_cache(maxsize=1024)
def stored_host(text: str) -> Host | None:
    """A stored app host, read once per process (None: a row written by hand that no request can match)."""
    try:
        return parse_host(text)
    except GateInputError:
        return None


@dataclass(frozen=True)
class Counts:
    allowed: int = 0  # let through (200)
    refused: int = 0  # sent to sign in (401) or refused (403), for a known app


def gate_counts(app_ids, since: datetime) -> dict[int, Counts]:
    """Requests through the gate per app since a time (counted by the hour: `since` is taken from the start of its
    hour), as far as the processes have flushed them (FLUSH_SECONDS). Every app asked about is in the answer."""
    app_ids = list(app_ids)
    found = {app_id: Counts() for app_id in app_ids}
    if not app_ids:
        return found
    hour = since.replace(minute=0, second=0, microsecond=0)
    query = (GateCount.select(GateCount.app, fn.SUM(GateCount.allowed), fn.SUM(GateCount.refused))
             .where(GateCount.app.in_(app_ids) & (GateCount.hour >= hour)).group_by(GateCount.app).tuples())
    for app_id, allowed, refused in query:
        found[app_id] = Counts(int(allowed or 0), int(refused or 0))
    return found


# --- the answer ---

def _location(options: GateOptions, path: str, **args) -> tuple[tuple[str, str], ...]:
    if options.base_url is None:
        return ()
    return (("Location", f"{options.base_url}{path}?{urlencode(args)}"),)


def _refused(status: int, app: GateApp, options: GateOptions, location: tuple, **fields) -> Verdict:
    """401/403 with the Location header, or a 302 to it when the proxy passes redirects on (and one is known)."""
    redirect = options.redirect if options.redirect is not None else app.proxy in REDIRECTING_PROXIES
    if redirect and location:
        status = 302
    return Verdict(status, location, app=app, **fields)


def _header_value(text: str) -> str:
    """A header value as WSGI carries it: control characters dropped, non-ASCII as raw UTF-8 bytes (each byte one
    latin-1 character, as PEP 3333 wants)."""
    return without_control_characters(text).strip().encode("utf-8").decode("latin-1")


def verify(headers: Mapping[str, str], visit: Visit, options: GateOptions, state: GateState, policies,
           active_practice_id: int | None = None) -> Verdict:
    """May the request the proxy describes in `headers` pass, for the signed-in user of `visit` (None: nobody is
    signed in) from its IP at its time? `active_practice_id`: the practice the user works in at pbnsec, preferred
    when the app has it. Blocked requests are audited (repeats counted on one row), every answer for a known app is
    counted (GateState)."""
    try:
        original = parse_original(headers)
    except GateInputError as error:
        security_event("gate_unreadable", reason="unreadable", ip=visit.ip_text, problem=str(error))
        return Verdict(403, body=f"pbnsec cannot read the request to check: {error}\n", outcome="unreadable")
    app = state.find_app(original.host, original.scheme)
    if app is None:
        security_event("gate_unknown_host", reason="unknown_host", ip=visit.ip_text, host=str(original.host))
        return Verdict(403, body=f"{original.host} is not an app pbnsec protects: add it under Security "
                                 "Management, Protected apps.\n", outcome="unknown_host")
    user = visit.user
    if user is None or user.must_change_password:
        # A password shown on a console is replaced before anything else, at the apps too: its sign-in page,
        # already signed in, sends the person on to choose a new one.
        state.count(app.id, False, visit.now)
        return _refused(401, app, options, _location(options, "/login", next=original.url),
                        body="Sign in to pbnsec first.\n" if user is None else
                        "Choose a new pbnsec password first.\n", outcome="signed_out")
    verdict = _decide(app, original, visit, options, policies, active_practice_id)
    state.count(app.id, verdict.allowed, visit.now)
    if not verdict.allowed:
        _audit_blocked(visit, verdict)
    return verdict


def _decide(app: GateApp, original: Original, visit: Visit, options: GateOptions, policies,
            active_practice_id: int | None) -> Verdict:
    user = visit.user
    access = overview(user, visit.ip, visit.now, policies)
    rows = [row for row in access.rows if row.practice.id in app.practice_ids]  # in name order
    blocked_page = _location(options, "/gate/blocked", app=app.id, next=original.url)
    if not rows:
        return _refused(403, app, options, blocked_page, body="You are not a member of this app's practices.\n",
                        outcome=NOT_MEMBER,
                        reason=f"not a member of the practices of {app.name}")
    # A refusal names the practice being worked in when the app has it, else the app's first of the user's.
    row = next((r for r in rows if r.practice.id == active_practice_id), rows[0])
    if not app.takes(user):
        return _refused(403, app, options, blocked_page, body="Your role may not use this app.\n",
                        outcome=ROLE_NOT_ALLOWED, practice=row.practice,
                        reason=f"the role {user.role.name} may not use {app.name}")
    allowed = [row for row in rows if row.decision.allowed]
    if not allowed:
        return _refused(403, app, options, blocked_page, body="Your IP address or the time is not allowed.\n",
                        outcome=row.decision.reason, practice=row.practice,
                        reason=why_blocked(row.decision, row.practice, visit.ip_text))
    practice = next((r.practice for r in allowed if r.practice.id == active_practice_id), allowed[0].practice)
    values = (user.email, user.name, user.role.name, practice.name)
    return Verdict(200, tuple((name, _header_value(value)) for name, value in zip(USER_HEADERS, values)),
                   app=app, practice=practice)


def _audit_blocked(visit: Visit, verdict: Verdict) -> None:
    """One audit row per user, app, IP and reason for a while (a page's 40 assets count on it); logged when new."""
    app = verdict.app
    # Not a member: the app's practice hears of it (the one with the lowest id, so repeats land on one row).
    practice = verdict.practice or (min(app.practice_ids) if app.practice_ids else None)
    event = audit.record_by(visit, "gate_blocked", practice=practice, target=f"{app.name} ({app.host})",
                            detail=verdict.reason)
    if event is not None:
        security_event("gate_blocked", email=visit.user.email, app=app.name,
                       practice=verdict.practice.name if verdict.practice else None, reason=verdict.outcome,
                       ip=visit.ip)


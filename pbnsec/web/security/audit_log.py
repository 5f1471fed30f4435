"""Security Management › Audit log: filter, page through, download as CSV."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from flask import Response, render_template, request, stream_with_context
from peewee import JOIN, fn

from pbnsec.core.text import has_control_characters, without_control_characters
from pbnsec.models import AuditEvent, Practice
from pbnsec.web.pages import parse_id
from pbnsec.web.security import administered_practices, bp, manages_every_practice

PAGE_SIZE = 50
CSV_MAX_ROWS = 100_000
ACTIONS = (
    "login_allowed", "login_blocked", "login_failed", "login_rate_limited", "logout", "session_blocked",
    "entry_added", "entry_edited", "entry_enabled", "entry_disabled", "entry_deleted", "settings_changed",
    "request_submitted", "request_approved", "request_rejected", "grant_revoked", "security_unlock",
    "owner_created", "demo_loaded", "practice_created", "user_created", "password_changed", "password_change_failed",
)


@dataclass
class AuditFilter:
    practice: str = ""
    action: str = ""
    user: str = ""
    page: int = 1
    error: str | None = None

    @classmethod
    def from_args(cls, args, practice_ids: set[int]) -> "AuditFilter":
        f = cls(args.get("practice", "").strip(), args.get("action", "").strip(), args.get("user", "").strip()[:254])
        errors = []
        page = args.get("page", "1").strip()
        if not parse_id(page):
            errors.append(f"The page must be a whole number from 1 up, not {page[:20]!r}.")
        else:
            f.page = parse_id(page)
        if f.practice and parse_id(f.practice) not in practice_ids:
            errors.append("Choose one of your practices.")
        if f.action and f.action not in ACTIONS:
            errors.append(f"There is no action called {f.action!r}.")
        if has_control_characters(f.user):
            errors.append("The user filter contains a control character.")
            f.user = without_control_characters(f.user)  # shown back in the form without them
        f.error = " ".join(errors) or None
        return f

    def query_args(self, **changes) -> dict:
        args = {"practice": self.practice, "action": self.action, "user": self.user, "page": self.page}
        args.update(changes)
        return {k: v for k, v in args.items() if v not in ("", None, 1)}


def filtered_events(f: AuditFilter):
    """Events the admin may see (their practices; practice-less ones only for admins of every practice)."""
    visible = AuditEvent.practice.in_([p.id for p in administered_practices()])
    if manages_every_practice():
        visible |= AuditEvent.practice.is_null()
    # Each row's practice comes with it: a page of fifty rows is one query, not fifty-one.
    query = (AuditEvent.select(AuditEvent, Practice).join(Practice, JOIN.LEFT_OUTER, on=AuditEvent.practice)
             .where(visible))
    if f.practice:
        query = query.where(AuditEvent.practice == parse_id(f.practice))
    if f.action:
        query = query.where(AuditEvent.action == f.action)
    if f.user:
        query = query.where(AuditEvent.actor_label.contains(f.user) | AuditEvent.target.contains(f.user))
    return query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())


def _filter():
    practices = administered_practices()
    return AuditFilter.from_args(request.args, {p.id for p in practices}), practices


def _page(f: AuditFilter, practices, code: int = 200, events=(), row_count: int = 0, event_count: int = 0,
          pages: int = 0):
    return render_template("security/audit.html", f=f, practices=practices, actions=ACTIONS, events=list(events),
                           row_count=row_count, event_count=event_count, pages=pages), code


@bp.route("/audit")
def audit_log():
    f, practices = _filter()
    if f.error:
        return _page(f, practices, 400)
    query = filtered_events(f)
    # Pages are of rows; the total an admin reads is of events, a row counting each repeat it holds.
    row_count, event_count = query.select(fn.COUNT(AuditEvent.id), fn.SUM(AuditEvent.count)).order_by().scalar(
        as_tuple=True)
    pages = max(1, -(-row_count // PAGE_SIZE))
    if f.page > pages:
        f.error = f"There is no page {f.page}: these filters give {pages} page{'s' if pages > 1 else ''}."
        return _page(f, practices, 400, row_count=row_count, event_count=event_count or 0, pages=pages)
    return _page(f, practices, 200, query.paginate(f.page, PAGE_SIZE), row_count, event_count or 0, pages)


def _cell(value) -> str:
    # A spreadsheet would run a cell starting with one of these as a formula.
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@bp.route("/audit.csv")
def audit_csv():
    f, _ = _filter()
    if f.error:
        return Response(f.error + "\n", status=400, mimetype="text/plain")
    names = {p.id: p.name for p in Practice.select()}
    query = filtered_events(f).limit(CSV_MAX_ROWS)

    def rows():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        # count and last_utc come last, so a sheet or script reading the first seven columns reads them as before.
        writer.writerow(["time_utc", "actor", "actor_ip", "practice", "action", "target", "detail", "count",
                         "last_utc"])
        for e in query.iterator():
            last_utc = e.last_at.isoformat() + "Z" if e.last_at else ""
            writer.writerow([_cell(v) for v in (e.at.isoformat() + "Z", e.actor_label, e.actor_ip,
                             names.get(e.practice_id, ""), e.action, e.target, e.detail, e.count, last_utc)])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        if buffer.getvalue():
            yield buffer.getvalue()

    return Response(stream_with_context(rows()), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="pbnsec-audit.csv"'})

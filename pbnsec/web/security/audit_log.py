"""Security Management › Audit log: filter, page through, download as CSV."""
from __future__ import annotations

from flask import Response, render_template, request, stream_with_context

from pbnsec.domain.audit import (
    ACTIONS,
    PAGE_SIZE,
    AuditFilter,
    csv_lines,
    filtered_events,
    totals,
)
from pbnsec.web.pages import zone_of
from pbnsec.web.security import (
    administered_ids,
    administered_practices,
    bp,
    manages_every_practice,
)


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
    query = filtered_events(f, administered_ids(), manages_every_practice())
    row_count, event_count = totals(query)
    pages = max(1, -(-row_count // PAGE_SIZE))
    if f.page > pages:
        f.error = f"There is no page {f.page}: these filters give {pages} page{'s' if pages > 1 else ''}."
        return _page(f, practices, 400, row_count=row_count, event_count=event_count, pages=pages)
    return _page(f, practices, 200, query.paginate(f.page, PAGE_SIZE), row_count, event_count, pages)


@bp.route("/audit.csv")
def audit_csv():
    f, _ = _filter()
    if f.error:
        return Response(f.error + "\n", status=400, mimetype="text/plain")
    lines = csv_lines(filtered_events(f, administered_ids(), manages_every_practice()), time_zone=zone_of())
    return Response(stream_with_context(lines), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="pbnsec-audit.csv"'})

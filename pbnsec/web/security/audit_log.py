"""Security Management › Audit log: filter, page through, download as CSV."""
from __future__ import annotations

from flask import Response, request, stream_with_context

from pbnsec.domain.audit import (
    ACTIONS,
    BEFORE_EVERYTHING,
    AuditFilter,
    AuditPage,
    all_events,
    csv_lines,
    events_page,
)
from pbnsec.web.pages import render_page, zone_of
from pbnsec.web.security import (
    administered_ids,
    administered_practices,
    bp,
    manages_every_practice,
)


def _filter():
    practices = administered_practices()
    return AuditFilter.from_args(request.args, {p.id: p.time_zone for p in practices}, zone_of()), practices


def _page(f: AuditFilter, practices, code: int = 200, shown: AuditPage = AuditPage([], None, None)):
    """The page, or for htmx the list alone (Newer / Older swap it)."""
    return render_page("security/audit.html", "security/_audit_table.html", code, f=f, practices=practices,
                       actions=ACTIONS, shown=shown, events=shown.events, row_count=len(shown.events),
                       event_count=sum(e.count for e in shown.events), oldest=str(BEFORE_EVERYTHING))


@bp.route("/audit")
def audit_log():
    f, practices = _filter()
    if f.error:
        return _page(f, practices, 400)
    if f.field_errors:  # a typed IP or day that is not one: said under its field, and no events until it is
        return _page(f, practices, 200)
    shown = events_page(f, administered_ids(), manages_every_practice())
    if f.page > 1 and not shown.events:
        f.error = f"There is no page {f.page}: these filters give fewer."
        return _page(f, practices, 400)
    return _page(f, practices, 200, shown)


@bp.route("/audit.csv")
def audit_csv():
    f, _ = _filter()
    refused = " ".join(filter(None, (f.error, *f.field_errors.values())))
    if refused:
        return Response(refused + "\n", status=400, mimetype="text/plain")
    # An event of no practice in the zone the filter's days are in (the chosen practice's, else the one worked in).
    lines = csv_lines(all_events(f, administered_ids(), manages_every_practice()), time_zone=f.time_zone)
    return Response(stream_with_context(lines), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="pbnsec-audit.csv"'})

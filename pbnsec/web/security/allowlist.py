"""Security Management › IP Allowlist: each view parses, calls pbnsec.domain.allowlist and renders.

A row's fragment is rendered from that row alone; the whole page is built only when a browser asks for the page.
"""
from __future__ import annotations

from flask import abort, current_app, g, render_template, request

from pbnsec.core.clientip import trace_client_ip
from pbnsec.core.text import parse_id
from pbnsec.domain import allowlist as domain
from pbnsec.domain.access import Refusal
from pbnsec.domain.allowlist import (
    ALL,
    SCOPES,
    EntryInput,
    EntryPage,
    EntrySearch,
    EntryRefused,
    LabelRefused,
    UntilRefused,
)
from pbnsec.models import AllowlistEntry
from pbnsec.web.pages import done, render_page, wants_fragment
from pbnsec.web.security import (
    administered_ids,
    bp,
    manages_every_practice,
    my_practice_or_404,
    practice_to_work_in,
)

PAGE = "security/allowlist.html"
ENTRY_ROW = "security/_entry_row.html"
GRANT_ROW = "security/_grant_row.html"
ADD_FORM = "security/_add_entry.html"
LIST = "security/_allowlist_table.html"

# What one response may add to the screen: a refused entry, the row being edited, a refused change and whose row
# shows it, a message. None unless given (StrictUndefined: every name a template uses is passed).
NO_STATE = dict(refused=None, editing=None, label_error=None, until_error=None, until_typed=None, lockout=None,
                lockout_entry=None, lockout_grant=None, message=None)


def may_change(entry: AllowlistEntry, every_practice: bool | None = None) -> bool:
    """Whether this admin may change the entry: an All practices one reaches every practice, so needs an admin
    of each (asked only for such an entry, unless the caller knows)."""
    if not entry.is_all_practices:
        return True
    return manages_every_practice() if every_practice is None else every_practice


def page_context(**state) -> dict:
    """Everything the whole page shows, in the state one response leaves it in (a page of the list, as searched)."""
    practice = g.visit.practice
    every = manages_every_practice()
    search = EntrySearch.from_args(request.args) if request.method == "GET" else EntrySearch()
    shown = domain.entries_page(practice.id, search) if not search.error else EntryPage([])
    return {
        **NO_STATE,
        **form_context(),
        "search": search,
        "scopes": SCOPES,
        "shown": shown,
        "rows": [(entry, may_change(entry, every)) for entry in shown.entries],
        "grants": domain.practice_grants(practice.id),
        "status": domain.ip_status(g.visit, current_app.config["PROXIES"]),
        "connection": trace_client_ip(request.environ, current_app.config["PROXIES"]),
        **state,
    }


def form_context(**state) -> dict:
    """What the add form shows: empty, or as typed and refused."""
    practice = g.visit.practice
    choices = [(str(practice.id), practice.name)] + ([(ALL, "All practices")] if manages_every_practice() else [])
    return {**NO_STATE, "form": EntryInput(practice=practice.id), "practice_choices": choices, **state}


def row_context(entry: AllowlistEntry, **state) -> dict:
    """One entry's row and nothing more."""
    return {**NO_STATE, "entry": entry, "may_change": may_change(entry), **state}


def entry_response(entry: AllowlistEntry, code: int = 200, **state):
    """The entry's row for htmx; for a browser the whole page, that row in the same state."""
    if wants_fragment():
        return render_template(ENTRY_ROW, **row_context(entry, **state)), code
    return render_template(PAGE, **page_context(**state)), code


def entry_or_404(entry_id: int, change: bool = True) -> AllowlistEntry:
    """An entry of a practice administered from here, or of all practices; anything else is not found."""
    entry = domain.find_entry(entry_id)
    if entry is None:
        abort(404)
    if not entry.is_all_practices:
        my_practice_or_404(entry.practice_id)
    elif change and not may_change(entry):
        abort(403, "Only a security administrator of every practice can change an All practices entry.")
    return entry


def typed_entry(form) -> EntryInput:
    """The add form as typed, cut to lengths no real entry exceeds (the domain says what is wrong with it)."""
    practice = form.get("practice", str(g.visit.practice.id)).strip()
    return EntryInput(address=form.get("address", "")[:200], label=form.get("label", "")[:200],
                      practice=ALL if practice == ALL else parse_id(practice),
                      confirm_broad=form.get("confirm_broad", "")[:100].strip(),
                      confirm_local=form.get("confirm_local", "")[:100].strip(),
                      until=form.get("until", "")[:100].strip())


@bp.route("/allowlist")
def allowlist():
    """The page; for htmx (a search) the list alone. A search that is not one: 422, which htmx shows."""
    practice_to_work_in()
    context = page_context()
    return render_page(PAGE, LIST, code=422 if context["search"].error else 200, **context)


@bp.route("/allowlist/status")
def allowlist_status():
    if wants_fragment():
        return render_template("security/_ip_status.html",
                               status=domain.ip_status(g.visit, current_app.config["PROXIES"]))
    return render_template(PAGE, **page_context())


@bp.route("/allowlist", methods=["POST"])
def add_entry():
    added = domain.add_entry(g.visit, typed_entry(request.form), administered_ids(),
                             broadest=current_app.config["BROADEST_PREFIX"], proxies=current_app.config["PROXIES"])
    if isinstance(added, EntryRefused):
        if wants_fragment():  # the form with what is wrong: the list stays as it is
            return render_page(PAGE, ADD_FORM, code=422, **form_context(form=added.typed, refused=added))
        return render_template(PAGE, **page_context(form=added.typed, refused=added)), 422
    message = f"Added {added.network} ({added.label}) to the allowlist."
    # htmx gets the fresh form, the new row and the status (whose covering entries may have changed): never the
    # whole list. A plain form post gets a redirect.
    context = dict(form_context(), entry=added, may_change=may_change(added),
                   status=domain.ip_status(g.visit, current_app.config["PROXIES"])) if wants_fragment() else {}
    context.pop("message", None)  # given to done(), which flashes it for a plain form post
    return done("security.allowlist", "security/_entry_added.html", message=message, **context)


@bp.route("/allowlist/<int:entry_id>/edit")
def edit_entry(entry_id: int):
    return entry_response(entry_or_404(entry_id), editing=entry_id)


@bp.route("/allowlist/<int:entry_id>/row")
def entry_row(entry_id: int):
    return entry_response(entry_or_404(entry_id, change=False))


@bp.route("/allowlist/<int:entry_id>/label", methods=["POST"])
def relabel_entry(entry_id: int):
    entry = entry_or_404(entry_id)
    result = domain.relabel(g.visit, entry, request.form.get("label", "")[:200])
    if isinstance(result, LabelRefused):
        entry.label = result.label  # shown back in the field, cleaned as it would have been saved
        return entry_response(entry, 422, editing=entry.id, label_error=result.error.message)
    return done("security.allowlist", ENTRY_ROW, **row_context(result))


@bp.route("/allowlist/<int:entry_id>/until", methods=["POST"])
def set_entry_until(entry_id: int):
    entry = entry_or_404(entry_id)
    result = domain.set_until(g.visit, entry, request.form.get("until", "")[:100], administered_ids())
    if isinstance(result, UntilRefused):
        return entry_response(entry, 422, editing=entry.id, until_error=result.error.message,
                              until_typed=result.until)
    if isinstance(result, Refusal):
        return entry_response(entry, 409, lockout=result, lockout_entry=entry.id)
    return done("security.allowlist", ENTRY_ROW, trigger="allowlist-changed", **row_context(result))


@bp.route("/allowlist/<int:entry_id>/active", methods=["POST"])
def set_entry_active(entry_id: int):
    entry = entry_or_404(entry_id)
    result = domain.set_active(g.visit, entry, request.form.get("active") == "1", administered_ids())
    if isinstance(result, Refusal):
        return entry_response(entry, 409, lockout=result, lockout_entry=entry.id)
    return done("security.allowlist", ENTRY_ROW, trigger="allowlist-changed", **row_context(result))


@bp.route("/allowlist/<int:entry_id>/delete", methods=["GET"])
def confirm_delete_entry(entry_id: int):
    return render_template("security/confirm_delete.html", entry=entry_or_404(entry_id))


@bp.route("/allowlist/<int:entry_id>/delete", methods=["POST"])
def delete_entry(entry_id: int):
    entry = entry_or_404(entry_id)
    refusal = domain.delete_entry(g.visit, entry, administered_ids())
    if refusal is not None:
        return entry_response(entry, 409, lockout=refusal, lockout_entry=entry.id)
    return done("security.allowlist", None, trigger="allowlist-changed",
                message=f"Deleted {entry.network} ({entry.label}).")


@bp.route("/grants/<int:grant_id>/revoke", methods=["POST"])
def revoke_grant(grant_id: int):
    grant = domain.find_grant(grant_id)
    if grant is None:
        abort(404)
    my_practice_or_404(grant.practice_id)
    refusal = domain.revoke_grant(g.visit, grant)
    if refusal is not None:
        state = dict(NO_STATE, lockout=refusal, lockout_grant=grant.id)
        if wants_fragment():
            return render_template(GRANT_ROW, grant=grant, **state), 409
        return render_template(PAGE, **page_context(**state)), 409
    return done("security.allowlist", None, trigger="allowlist-changed",
                message=f"Revoked {grant.user.name}'s access from {grant.ip}.")

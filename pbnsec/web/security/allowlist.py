"""Security Management › IP Allowlist."""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_network

from flask import abort, current_app, g, render_template, request
from flask_login import current_user
from peewee import JOIN, IntegrityError

from pbnsec.core.clientip import local_reason, trace_client_ip
from pbnsec.core.iprules import (
    EntryError,
    NetworkMatcher,
    covered_version,
    ipv6_privacy_network,
    is_broad,
    parse_entry,
)
from pbnsec.core.text import (
    TYPED_WHITESPACE,
    has_control_characters,
    without_control_characters,
)
from pbnsec.db import change_lock, database
from pbnsec.domain import audit
from pbnsec.domain.access import Refusal, last_entry_refusal, lockout_for
from pbnsec.models import (
    ALL_PRACTICES,
    AccessRequest,
    AllowlistEntry,
    Grant,
    Practice,
    User,
)
from pbnsec.web.pages import done, render_page
from pbnsec.web.security import (
    administered_ids,
    bp,
    manages_every_practice,
    my_practice,
    my_practice_or_404,
)

LABEL_MAX = 100


@dataclass
class EntryForm:
    address: str = ""
    label: str = ""
    practice: str = ""
    confirm_broad: str = ""  # the network the admin confirmed although it is broad
    broad: str = ""  # set when the address needs that confirmation: the network to confirm
    confirm_local: str = ""  # the network the admin confirmed although it holds loopback or a proxy
    local: str = ""  # set when the address needs that confirmation
    errors: dict[str, str] = field(default_factory=dict)


def clean_label(text: str) -> tuple[str, str | None]:
    label = " ".join((text or "").split())
    if not label:
        return label, "Enter a label, such as Office Network or Remote Provider."
    if len(label) > LABEL_MAX:
        return label, f"A label can be at most {LABEL_MAX} characters long (this one has {len(label)})."
    if has_control_characters(text, allowed=TYPED_WHITESPACE):
        # Invisible characters (NUL, bidi overrides) would let two labels look alike, or break PostgreSQL.
        return without_control_characters(label), "A label cannot contain control or invisible characters."
    return label, None


def visible_entries(practice):
    """The practice's entries and the "All practices" entries."""
    added_by = User.alias()
    return (
        AllowlistEntry.select(AllowlistEntry, Practice, added_by)
        .join(Practice, JOIN.LEFT_OUTER, on=(AllowlistEntry.practice == Practice.id))
        .switch(AllowlistEntry)
        .join(added_by, JOIN.LEFT_OUTER, on=(AllowlistEntry.added_by == added_by.id), attr="added_by")
        .where(AllowlistEntry.scope.in_([practice.id, ALL_PRACTICES]))
        .order_by(AllowlistEntry.scope.desc(), AllowlistEntry.added_at, AllowlistEntry.id)
    )


def entry_or_404(entry_id: int, change: bool = True) -> AllowlistEntry:
    """An entry of one of the user's practices (or of all practices); anything else is not found."""
    entry = AllowlistEntry.get_or_none(AllowlistEntry.id == entry_id)
    if entry is None:
        abort(404)
    if entry.is_all_practices:
        if change and not manages_every_practice():
            abort(403, "Only a security administrator of every practice can change an All practices entry.")
        return entry
    my_practice_or_404(entry.practice_id)
    return entry


def ip_status(entries) -> dict:
    """What the admin's own IP looks like against the active entries shown."""
    ip = g.client_ip
    matcher = NetworkMatcher((parse_entry(e.network), e) for e in entries if e.active)
    return {
        "ip": ip,
        "covered_by": matcher.match(ip),
        "ipv6_network": ipv6_privacy_network(ip) if ip is not None else None,
        "local": local_reason(ip_network(ip), current_app.config["PROXIES"]) if ip is not None else None,
    }


def practice_grants(practice):
    """User grants of the practice, each with the access request it came from."""
    return list(
        Grant.select(Grant, User, AccessRequest)
        .join(User, on=(Grant.user == User.id))
        .switch(Grant).join(AccessRequest, join_type=JOIN.LEFT_OUTER, on=(Grant.request == AccessRequest.id))
        .where(Grant.practice == practice)
        .order_by(User.name, Grant.ip)
    )


def page_context(form: EntryForm | None = None, editing: int | None = None) -> dict:
    practice = g.practice
    entries = list(visible_entries(practice))
    return {
        "entries": entries,
        "grants": practice_grants(practice),
        "status": ip_status(entries),
        "form": form or EntryForm(practice=str(practice.id)),
        "practice_choices": practice_choices(),
        "can_manage_all": manages_every_practice(),
        "editing": editing,
        "connection": trace_client_ip(request.environ, current_app.config["PROXIES"]),
    }


def practice_choices() -> list[tuple[str, str]]:
    choices = [(str(g.practice.id), g.practice.name)]
    if manages_every_practice():
        choices.append(("all", "All practices"))
    return choices


def _scope_for(form: EntryForm):
    """The practice an entry is for (None for all practices), checked against what the user may manage."""
    if form.practice == "all":
        if not manages_every_practice():
            form.errors["practice"] = "Only a security administrator of every practice can add an All practices entry."
        return None
    practice = my_practice(form.practice)
    if practice is None:
        form.errors["practice"] = "Choose one of your practices or All practices."
    return practice


@bp.route("/allowlist")
def allowlist():
    return render_template("security/allowlist.html", **page_context())


@bp.route("/allowlist/status")
def allowlist_status():
    return render_page("security/allowlist.html", "security/_ip_status.html", **page_context())


def everything_refusal(network, practice) -> str | None:
    """Why adding (or switching on) this network would, with the active entries there, allow every address."""
    active = AllowlistEntry.select(AllowlistEntry.network, AllowlistEntry.scope).where(AllowlistEntry.active)
    if practice is not None:
        active = active.where(AllowlistEntry.scope.in_([practice.id, ALL_PRACTICES]))
    by_scope: dict[int, list] = {}
    for row in active:
        by_scope.setdefault(row.scope, []).append(parse_entry(row.network))
    shared = by_scope.pop(ALL_PRACTICES, []) + [network]
    scopes = {practice.id: by_scope.get(practice.id, [])} if practice is not None else by_scope or {0: []}
    for practice_id, own in scopes.items():
        version = covered_version(shared + own)
        if version is not None:
            name = practice.name if practice is not None else (
                Practice.get_by_id(practice_id).name if practice_id else "every practice")
            return (f"{network} would, together with the entries already there, allow every IPv{version} address "
                    f"for {name}: enter a smaller network.")
    return None


def _confirms(text: str, network) -> bool:
    """Whether a confirmation field names exactly this network (in any spelling parse_entry accepts)."""
    try:
        return bool(text) and parse_entry(text) == network
    except EntryError:
        return False


def _local_refusal(form: EntryForm, network) -> str | None:
    """An entry holding loopback or a proxy address needs the admin to confirm it, warned what it may open."""
    reason = local_reason(network, current_app.config["PROXIES"])
    if reason is None or _confirms(form.confirm_local, network):
        return None
    form.local = str(network)
    return reason + " Check the Connection check below, then confirm only if people really connect from there."


def _broad_refusal(form: EntryForm, network) -> str | None:
    """A broad network needs the admin to confirm exactly it, knowing how many addresses it opens."""
    if not is_broad(network, current_app.config["BROADEST_PREFIX"]) or _confirms(form.confirm_broad, network):
        return None
    form.broad = str(network)
    limit = current_app.config["BROADEST_PREFIX"][network.version]
    return (f"{network} covers {network.num_addresses:,} addresses, more than a /{limit}: confirm below that "
            "you mean to allow all of them, or enter a smaller network.")


@bp.route("/allowlist", methods=["POST"])
def add_entry():
    form = EntryForm(
        address=request.form.get("address", "")[:200],
        label=request.form.get("label", "")[:200],
        practice=request.form.get("practice", str(g.practice.id)).strip(),
        confirm_broad=request.form.get("confirm_broad", "")[:100].strip(),
        confirm_local=request.form.get("confirm_local", "")[:100].strip(),
    )
    network = None
    try:
        network = parse_entry(form.address)
    except EntryError as exc:
        form.errors["address"] = exc.message
    form.label, label_error = clean_label(form.label)
    if label_error:
        form.errors["label"] = label_error
    practice = _scope_for(form)
    if network is not None and not form.errors:
        refusals = [r for r in (_broad_refusal(form, network), _local_refusal(form, network)) if r]
        if refusals:
            form.errors["address"] = " ".join(refusals)
    if network is not None and not form.errors:
        try:
            # Under the change lock, so two admins adding the two halves of everything at once cannot both win.
            with change_lock():
                if refusal := everything_refusal(network, practice):
                    form.errors["address"] = refusal
                else:
                    entry = AllowlistEntry.create(**AllowlistEntry.stored(
                        network, practice, label=form.label, added_by=current_user.id))
                    detail = f"label: {entry.label}"
                    if form.broad or is_broad(network, current_app.config["BROADEST_PREFIX"]):
                        detail += f"; broad network confirmed ({network.num_addresses:,} addresses)"
                    audit.record_by(g.visit, "entry_added", practice=practice, target=entry.network, detail=detail)
        except IntegrityError:
            where = practice.name if practice else "All practices"
            form.errors["address"] = f"{network} is already on the allowlist for {where}."
    if form.errors:
        return render_page("security/allowlist.html", "security/_allowlist.html", code=422,
                           **page_context(form))
    # The whole block (status included) is swapped in, so no allowlist-changed event is needed here.
    return done("security.allowlist", "security/_allowlist.html",
                message=f"Added {entry.network} ({entry.label}) to the allowlist.", **page_context())


@bp.route("/allowlist/<int:entry_id>/edit")
def edit_entry(entry_id: int):
    entry = entry_or_404(entry_id)
    return render_page("security/allowlist.html", "security/_entry_row.html",
                       entry=entry, label_error=None, **page_context(editing=entry.id))


@bp.route("/allowlist/<int:entry_id>/row")
def entry_row(entry_id: int):
    entry = entry_or_404(entry_id, change=False)
    return render_page("security/allowlist.html", "security/_entry_row.html",
                       entry=entry, label_error=None, **page_context())


@bp.route("/allowlist/<int:entry_id>/label", methods=["POST"])
def relabel_entry(entry_id: int):
    entry = entry_or_404(entry_id)
    label, error = clean_label(request.form.get("label", "")[:200])
    if error:
        entry.label = label
        return render_page("security/allowlist.html", "security/_entry_row.html", code=422,
                           entry=entry, label_error=error, **page_context(editing=entry.id))
    with database.atomic():
        old = entry.label
        AllowlistEntry.update(label=label).where(AllowlistEntry.id == entry.id).execute()
        audit.record_by(g.visit, "entry_edited", practice=entry.practice_id, target=entry.network,
                     detail=f"label: {old} -> {label}")
    entry.label = label
    return done("security.allowlist", "security/_entry_row.html",
                entry=entry, label_error=None, **page_context())


def removal_refusal(entry: AllowlistEntry):
    """Why this entry may not go (it would block the admin, or leave an enforced practice empty), else None.

    Called inside change_lock(), so the answer still holds when the change commits.
    """
    affected = sorted(administered_ids()) if entry.is_all_practices else [entry.practice_id]
    return (lockout_for(current_user, affected, g.client_ip, without="this entry", without_entry=entry.id)
            or last_entry_refusal(entry))


def refused_row(entry: AllowlistEntry, lockout):
    return render_page("security/allowlist.html", "security/_entry_row.html", code=409, entry=entry,
                       label_error=None, lockout=lockout, lockout_entry=entry.id, **page_context())


@bp.route("/allowlist/<int:entry_id>/active", methods=["POST"])
def set_entry_active(entry_id: int):
    entry = entry_or_404(entry_id)
    active = request.form.get("active") == "1"
    with change_lock():
        if active:
            covering = everything_refusal(parse_entry(entry.network), None if entry.is_all_practices else entry.practice)
            refusal = Refusal(covering, entry.practice_id or g.practice.id, False,
                              "Keep it off, or narrow the other broad entries first.",
                              code="covers_everything") if covering else None
        else:
            refusal = removal_refusal(entry)
        if refusal is None:
            AllowlistEntry.update(active=active).where(AllowlistEntry.id == entry.id).execute()
            audit.record_by(g.visit, "entry_enabled" if active else "entry_disabled", practice=entry.practice_id,
                         target=entry.network, detail=f"label: {entry.label}")
    if refusal:
        return refused_row(entry, refusal)
    entry.active = active
    return done("security.allowlist", "security/_entry_row.html", trigger="allowlist-changed",
                entry=entry, label_error=None, **page_context())


@bp.route("/allowlist/<int:entry_id>/delete", methods=["GET"])
def confirm_delete_entry(entry_id: int):
    return render_template("security/confirm_delete.html", entry=entry_or_404(entry_id))


@bp.route("/allowlist/<int:entry_id>/delete", methods=["POST"])
def delete_entry(entry_id: int):
    entry = entry_or_404(entry_id)
    with change_lock():
        refusal = removal_refusal(entry)
        if refusal is None and AllowlistEntry.delete().where(AllowlistEntry.id == entry.id).execute():
            audit.record_by(g.visit, "entry_deleted", practice=entry.practice_id, target=entry.network,
                         detail=f"label: {entry.label}")
    if refusal:
        return refused_row(entry, refusal)
    return done("security.allowlist", None, trigger="allowlist-changed",
                message=f"Deleted {entry.network} ({entry.label}).")


@bp.route("/grants/<int:grant_id>/revoke", methods=["POST"])
def revoke_grant(grant_id: int):
    grant = Grant.get_or_none(Grant.id == grant_id)
    if grant is None:
        abort(404)
    my_practice_or_404(grant.practice_id)
    with change_lock():
        lockout = lockout_for(current_user, [grant.practice_id], g.client_ip, without="this grant",
                              without_grant=grant.id)
        if lockout is None and Grant.delete().where(Grant.id == grant.id).execute():
            audit.record_by(g.visit, "grant_revoked", practice=grant.practice_id, target=f"{grant.user.email} from {grant.ip}",
                         detail=f"request #{grant.request_id}" if grant.request_id else "")
    if lockout is not None:
        return render_page("security/allowlist.html", "security/_grant_row.html", code=409, grant=grant,
                           lockout=lockout, lockout_grant=grant.id, **page_context())
    return done("security.allowlist", None, trigger="allowlist-changed",
                message=f"Revoked {grant.user.name}'s access from {grant.ip}.")

"""The IP allowlist of a practice: adding, relabelling, switching and deleting entries, revoking user grants, and
what the allowlist screen shows.

The caller has checked that the visit's user may change the entry or grant (its practice is administered from
where they are; an All practices entry needs every practice). Each change that could lock someone out or open
everything runs under change_lock(), so what it checked still holds when it commits, and each change is audited.
A refused change stores nothing. An entry that cannot be added comes back as an EntryRefused, one FieldError per
field; a change refused as a whole is a Refusal whose code says why:

- ``lockout``: the visit's user would be blocked from the IP they are using now;
- ``last_entry``: an enforced practice would be left without an active entry;
- ``covers_everything``: the active entries would together allow every IPv4 or IPv6 address.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime
from ipaddress import IPv6Network, ip_network

from peewee import JOIN, IntegrityError, fn

from pbnsec.core.clientip import Proxies, local_reason
from pbnsec.core.durations import UntilError, is_expired, parse_until
from pbnsec.core.iprules import (
    EntryError,
    IPAddress,
    IPNetwork,
    address_range,
    ipv6_privacy_network,
    is_broad,
    merged_size,
    parse_entry,
)
from pbnsec.core.text import (
    TYPED_WHITESPACE,
    has_control_characters,
    without_control_characters,
)
from pbnsec.core.timezones import local_text
from pbnsec.db import change_lock, database
from pbnsec.domain import audit
from pbnsec.domain.access import (
    LOCKOUT_MARGIN,
    Refusal,
    covered_until,
    entries_holding,
    last_entry_refusal,
    lockout_for,
)
from pbnsec.domain.paging import PAGE_SIZE, Cursor, among, beyond
from pbnsec.domain.visit import Visit
from pbnsec.models import (
    ALL_PRACTICES,
    AccessRequest,
    AllowlistEntry,
    Grant,
    Practice,
    User,
)

LABEL_MAX = 100
ALL = "all"  # the practice choice that means every practice

CHOOSE_PRACTICE = "Choose one of your practices or All practices."
NOT_EVERY_PRACTICE = "Only a security administrator of every practice can add an All practices entry."
KEEP_IT_OFF = "Keep it off, or narrow the other broad entries first."


@dataclass(frozen=True)
class EntryInput:
    """An allowlist entry as the admin typed it."""

    address: str = ""
    label: str = ""
    practice: int | str | None = None  # a practice id, ALL, or None when what was sent is not an id
    confirm_broad: str = ""  # the network the admin confirmed although it is broad
    confirm_local: str = ""  # the network the admin confirmed although it holds loopback or a proxy
    until: str = ""  # when it stops matching (UTC, see core.durations.parse_until); blank: never


@dataclass(frozen=True)
class FieldError:
    """Why one typed value cannot be taken: a code for code, a message for people."""

    code: str
    message: str


class HasFieldErrors:
    """A refusal with a FieldError per field (`errors`): its codes by field, for code and tests."""

    errors: dict[str, FieldError]

    @property
    def codes(self) -> dict[str, str]:
        return {name: error.code for name, error in self.errors.items()}


@dataclass(frozen=True)
class EntryRefused(HasFieldErrors):
    """An entry that was not added: what was typed (label cleaned), a FieldError per field, the confirmations asked.

    Address codes: invalid, needs_confirmation (see broad and local), covers_everything, duplicate. Label codes:
    blank, too_long, control_characters. Practice codes: not_yours, not_every_practice. Until codes: invalid, past,
    lockout (it holds the admin's IP, nothing else does, and it would expire within LOCKOUT_MARGIN).
    """

    typed: EntryInput
    errors: dict[str, FieldError] = field(default_factory=dict)
    broad: str = ""  # the network to confirm although it is broad, when that is what stands in the way
    local: str = ""  # the network to confirm although it holds loopback or a proxy


@dataclass(frozen=True)
class LabelRefused:
    """A label that was not saved, cleaned as it would have been, and why."""

    label: str
    error: FieldError


@dataclass(frozen=True)
class UntilRefused:
    """An entry's end that was not saved: as typed, and why."""

    until: str
    error: FieldError


@dataclass(frozen=True)
class IPStatus:
    """The admin's own IP against a practice's allowlist, as the banner at the top of the screen shows it."""

    ip: IPAddress | None
    covered_by: tuple[AllowlistEntry, ...]  # the active entries holding it, most specific first
    ipv6_network: IPv6Network | None  # its /64, offered for IPv6 privacy addresses
    local: str | None  # why allowlisting it could let everyone in (loopback or a proxy), else None


# --- what the screen shows ---

def _entries_with_details():
    added_by = User.alias()
    return (AllowlistEntry.select(AllowlistEntry, Practice, added_by)
            .join(Practice, JOIN.LEFT_OUTER, on=(AllowlistEntry.practice == Practice.id))
            .switch(AllowlistEntry)
            .join(added_by, JOIN.LEFT_OUTER, on=(AllowlistEntry.added_by == added_by.id), attr="added_by"))


def visible_entries(practice_id: int) -> list[AllowlistEntry]:
    """The practice's entries and the All practices entries, each with its practice and who added it."""
    return list(_entries_with_details()
                .where(AllowlistEntry.scope.in_([practice_id, ALL_PRACTICES]))
                .order_by(AllowlistEntry.scope.desc(), AllowlistEntry.added_at, AllowlistEntry.id))


SCOPES = {"": "Any", "practice": "This practice", "all-practices": "All practices"}  # the list's "Applies to" filter
SEARCH_MAX = 100


@dataclass(frozen=True)
class EntrySearch:
    """What the list is narrowed to: text in the address or label, a scope, the entries covering an IP."""

    text: str = ""
    scope: str = ""  # a key of SCOPES
    covering: str = ""  # an IP as typed; the entries whose network holds it
    after: str = ""  # where the page starts (EntryPage.next of the page before)
    error: str | None = None

    @classmethod
    def from_args(cls, args) -> "EntrySearch":
        text = without_control_characters(args.get("q", "").strip()[:SEARCH_MAX])
        scope = args.get("scope", "").strip()
        covering = args.get("covering", "").strip()[:SEARCH_MAX]
        errors = []
        if scope not in SCOPES:
            errors.append(f"Applies to is one of {', '.join(repr(k) for k in SCOPES if k)}, not {scope[:20]!r}.")
            scope = ""
        if covering and _ip_of(covering) is None:
            errors.append(f"{covering!r} is not an IP address: type one such as 203.0.113.7 or 2001:db8::1.")
        return cls(text, scope, covering, args.get("after", "").strip()[:60], " ".join(errors) or None)

    @property
    def narrowed(self) -> bool:
        return bool(self.text or self.scope or self.covering)

    def args(self, **changes) -> dict:
        found = {"q": self.text, "scope": self.scope, "covering": self.covering, "after": self.after, **changes}
        return {k: v for k, v in found.items() if v}


def _ip_of(text: str):
    try:
        network = ip_network(text.strip(), strict=True)
    except ValueError:
        return None
    return network.network_address if network.num_addresses == 1 else None


@dataclass(frozen=True)
class EntryPage:
    entries: list[AllowlistEntry]  # the practice's own first, then All practices ones; each by when added
    next: str = ""  # where the next page starts (a link's `after`); empty on the last


def _entry_place(text: str) -> tuple[int, Cursor] | None:
    group, _, rest = text.partition("-")
    cursor = Cursor.parse(rest)
    return (0 if group == "a" else 1, cursor) if group in ("a", "p") and cursor else None


def entries_page(practice_id: int, search: EntrySearch = EntrySearch(), size: int = PAGE_SIZE) -> EntryPage:
    """A page of the entries a practice's list shows, those matching the search, with their practice and who added
    them (one query: each scope read along its (scope, added_at) index; a covering search probes (scope, start))."""
    scopes = {"": [practice_id, ALL_PRACTICES], "practice": [practice_id], "all-practices": [ALL_PRACTICES]}[search.scope]
    where = []
    if search.text:
        where.append(AllowlistEntry.network.contains(search.text.lower()) | AllowlistEntry.label.contains(search.text))
    ip = _ip_of(search.covering) if search.covering else None
    if ip is not None:
        # At most one entry per prefix length per scope can hold it: a short list, never paged.
        found = (_entries_with_details().where(AllowlistEntry.scope.in_(scopes) & AllowlistEntry.holding(ip), *where)
                 .order_by(AllowlistEntry.scope.desc(), AllowlistEntry.added_at, AllowlistEntry.id))
        return EntryPage([e for e in found if ip in ip_network(e.network)])
    place = _entry_place(search.after)
    parts = []
    for scope in scopes:
        group = 0 if scope == ALL_PRACTICES else 1
        if place is not None and group > place[0]:
            continue  # that part of the list came before the page
        cursor = place[1] if place is not None and group == place[0] else None
        parts.append(AllowlistEntry.select(AllowlistEntry.id, AllowlistEntry.added_at.alias("place"))
                     .where(AllowlistEntry.scope == scope, *where,
                            *beyond(AllowlistEntry.added_at, AllowlistEntry.id, cursor, descending=False))
                     .order_by(AllowlistEntry.added_at, AllowlistEntry.id).limit(size + 1))
    if not parts:
        return EntryPage([])
    rows = list(among(_entries_with_details(), AllowlistEntry, parts, 2 * (size + 1), False)
                .order_by(AllowlistEntry.scope.desc(), AllowlistEntry.added_at, AllowlistEntry.id).limit(size + 1))
    if len(rows) <= size:
        return EntryPage(rows)
    last = rows[size - 1]
    return EntryPage(rows[:size], f"{'a' if last.is_all_practices else 'p'}-{Cursor(last.added_at, last.id)}")


def find_entry(entry_id: int) -> AllowlistEntry | None:
    """One entry with its practice and who added it (what its row shows), in one query; None when there is none."""
    return _entries_with_details().where(AllowlistEntry.id == entry_id).first()


def _grants_with_details():
    creator = User.alias()
    return (Grant.select(Grant, User, AccessRequest, creator)
            .join(User, on=(Grant.user == User.id))
            .switch(Grant).join(AccessRequest, JOIN.LEFT_OUTER, on=(Grant.request == AccessRequest.id))
            .switch(Grant).join(creator, JOIN.LEFT_OUTER, on=(Grant.created_by == creator.id), attr="created_by"))


def practice_grants(practice_id: int) -> list[Grant]:
    """The practice's user grants, each with its user, the access request it came from and who approved it."""
    return list(_grants_with_details().where(Grant.practice == practice_id).order_by(User.name, Grant.ip))


def find_grant(grant_id: int) -> Grant | None:
    """One user grant with what its row shows, in one query; None when there is none."""
    return _grants_with_details().where(Grant.id == grant_id).first()


def ip_status(visit: Visit, proxies: Proxies) -> IPStatus:
    """Whether the visit's IP is on its practice's allowlist, found by the same probe that decides access."""
    ip = visit.ip
    if ip is None:
        return IPStatus(None, (), None, None)
    holding = entries_holding([visit.practice.id], ip)[visit.practice.id]
    covering = sorted((rule for rule in holding if rule.active and not is_expired(rule.expires_at, visit.now)),
                      key=lambda rule: (-rule.network.prefixlen, -rule.ref.scope, rule.ref.id))
    return IPStatus(ip, tuple(rule.ref for rule in covering), ipv6_privacy_network(ip),
                    local_reason(ip_network(ip), proxies))


def administers_every_practice(administered: Collection[int]) -> bool:
    """Whether these practice ids are every practice there is (what an All practices entry reaches)."""
    return not Practice.select().where(Practice.id.not_in(list(administered))).exists()


# --- adding ---

def clean_label(text: str) -> tuple[str, FieldError | None]:
    """The label as it is stored (whitespace collapsed), and why it cannot be, if it cannot."""
    label = " ".join((text or "").split())
    if not label:
        return label, FieldError("blank", "Enter a label, such as Office Network or Remote Provider.")
    if len(label) > LABEL_MAX:
        return label, FieldError(
            "too_long", f"A label can be at most {LABEL_MAX} characters long (this one has {len(label)}).")
    if has_control_characters(text, allowed=TYPED_WHITESPACE):
        # Invisible characters (NUL, bidi overrides) would let two labels look alike, or break PostgreSQL.
        return (without_control_characters(label),
                FieldError("control_characters", "A label cannot contain control or invisible characters."))
    return label, None


def entry_time_zone(visit: Visit, practice_id: int | None) -> str:
    """The zone an entry's end is typed and read in: its practice's, or (all practices) the one being worked in."""
    if practice_id is not None:
        return Practice.select(Practice.time_zone).where(Practice.id == practice_id).scalar() or "UTC"
    return visit.practice.time_zone if visit.practice is not None else "UTC"


def until_error(visit: Visit, text: str, time_zone: str = "UTC") -> tuple[datetime | None, FieldError | None]:
    """An entry's end as typed on the clock of time_zone: when it stops matching (stored UTC; None: never), and why
    it cannot be, if it cannot."""
    try:
        until = parse_until(text, time_zone)
    except UntilError as exc:
        return None, FieldError("invalid", exc.message)
    if until is not None and until <= visit.now:
        return until, FieldError("past", f"{local_text(until, time_zone)} has passed: choose a later end, or none.")
    return until, None


def _expiry_lockout(visit: Visit, network: IPNetwork, until: datetime | None, practice_ids) -> FieldError | None:
    """Refuse an entry holding the admin's IP that expires within the margin when nothing else would let them in
    then (whether restrictions are on yet or not: they would be switched on relying on it)."""
    soon = visit.now + LOCKOUT_MARGIN
    if until is None or until > soon or visit.ip is None or visit.ip not in network:
        return None
    if covered_until(visit.user, practice_ids, visit.ip, soon):
        return None
    minutes = int(LOCKOUT_MARGIN.total_seconds() // 60)
    return FieldError("lockout", f"{network} holds your IP {visit.ip} and would expire within {minutes} minutes "
                                 "with nothing else letting you in: choose a later end, or add another entry first.")


def add_entry(visit: Visit, typed: EntryInput, administered: Collection[int], *, broadest: dict[int, int],
              proxies: Proxies) -> AllowlistEntry | EntryRefused:
    """Add an entry for one of the administered practices (or All practices, if that is every one); the new entry,
    or why it was not added.

    `broadest` is the shortest prefix per IP version taken without a confirmation; `proxies` says which addresses
    are proxies, which need one too.
    """
    errors: dict[str, FieldError] = {}
    network = None
    try:
        network = parse_entry(typed.address)
    except EntryError as exc:
        errors["address"] = FieldError("invalid", exc.message)
    label, label_error = clean_label(typed.label)
    typed = replace(typed, label=label)
    if label_error:
        errors["label"] = label_error
    practice = None  # All practices
    if typed.practice == ALL:
        if not administers_every_practice(administered):
            errors["practice"] = FieldError("not_every_practice", NOT_EVERY_PRACTICE)
    elif typed.practice in administered:
        practice = Practice.get_by_id(typed.practice)
    else:
        errors["practice"] = FieldError("not_yours", CHOOSE_PRACTICE)
    until, error = until_error(visit, typed.until, entry_time_zone(visit, practice.id if practice else None))
    if error:
        errors["until"] = error
    if network is None or errors:
        return EntryRefused(typed, errors)
    broad = str(network) if is_broad(network, broadest) and not _confirms(typed.confirm_broad, network) else ""
    local = local_reason(network, proxies) if not _confirms(typed.confirm_local, network) else None
    if broad or local:
        return EntryRefused(typed, {"address": FieldError("needs_confirmation", _confirmation_needed(
            network, broadest, broad, local))}, broad, str(network) if local else "")
    try:
        # Under the change lock, so two admins adding the two halves of everything at once cannot both win.
        with change_lock():
            confirmed = _confirms(typed.confirm_broad, network)
            # The usual list is far from adding up to anything broad: counts along an index say so, and only a
            # list that might is read whole (the exact checks below).
            half = 2 ** (network.max_prefixlen - 1)
            limit = half if confirmed else min(half, 2 ** (network.max_prefixlen - broadest[network.version]))
            scopes = _scopes_with(network, practice) if may_add_up(network, practice, limit) else None
            if scopes is not None and (covering := everything_refusal(network, practice, scopes)):
                return EntryRefused(typed, {"address": FieldError("covers_everything", covering)})
            # Entries that are each small may add up to a broad allowlist: that needs the same confirmation.
            if scopes is not None and not confirmed and (
                    adds_up := broad_union(network, practice, broadest, scopes)):
                return EntryRefused(typed, {"address": FieldError("needs_confirmation", adds_up)}, str(network), "")
            reached = [practice.id] if practice is not None else sorted(administered)
            if lockout := _expiry_lockout(visit, network, until, reached):
                return EntryRefused(typed, {"until": lockout})
            added = AllowlistEntry.create(**AllowlistEntry.stored(network, practice, label=label,
                                                                  added_by=visit.user.id, expires_at=until))
            detail = f"label: {added.label}"
            if until is not None:
                detail += f"; until {until:%Y-%m-%d %H:%M} UTC"
            if is_broad(network, broadest):
                detail += f"; broad network confirmed ({network.num_addresses:,} addresses)"
            audit.record_by(visit, "entry_added", practice=practice, target=added.network, detail=detail)
    except IntegrityError:
        where = practice.name if practice is not None else "All practices"
        return EntryRefused(typed, {"address": FieldError(
            "duplicate", f"{network} is already on the allowlist for {where}.")})
    return added


def _confirms(text: str, network: IPNetwork) -> bool:
    """Whether a confirmation field names exactly this network (in any spelling parse_entry accepts)."""
    try:
        return bool(text) and parse_entry(text) == network
    except EntryError:
        return False


def _confirmation_needed(network: IPNetwork, broadest: dict[int, int], broad: str, local: str | None) -> str:
    """What the admin is asked to confirm: how many addresses a broad network opens, what loopback or a proxy may."""
    reasons = []
    if broad:
        reasons.append(f"{network} covers {network.num_addresses:,} addresses, more than a "
                       f"/{broadest[network.version]}: confirm below that you mean to allow all of them, or enter a "
                       "smaller network.")
    if local:
        reasons.append(local + " Check the Connection check below, then confirm only if people really connect "
                               "from there.")
    return " ".join(reasons)


V4_END = f"{2 ** 32:032x}"  # the stored start of the first IPv6 network above the IPv4 numbers
ZERO = f"{0:032x}"  # the stored start of 0.0.0.0/n and of ::/n alike


def may_add_up(network: IPNetwork, practice: Practice | None, limit: int) -> bool:
    """Whether this network and the entries there (own and All practices', per practice reached) could together
    cover more than `limit` addresses of its IP version, or every address of either version.

    An upper bound from counts per prefix length along the (scope, prefix_length, start) index, no entry read:
    their sizes added up (overlaps and switched-off entries counted too). Stored starts tell the versions apart
    but for 0.0.0.0/n and ::/n, which are counted as both. False means no check of what they cover can fail.
    """
    scopes = [practice.id, ALL_PRACTICES] if practice is not None else None
    per_scope: dict[int, dict[int, int]] = {}  # scope -> version -> addresses

    def count(version: int, rows) -> None:
        bits = 32 if version == 4 else 128
        for scope, prefix, how_many in rows:
            if version == 6 or prefix <= 32:
                sizes = per_scope.setdefault(scope, {4: 0, 6: 0})
                sizes[version] += how_many * 2 ** (bits - prefix)

    by_prefix = (AllowlistEntry.select(AllowlistEntry.scope, AllowlistEntry.prefix_length, fn.COUNT(1))
                 .group_by(AllowlistEntry.scope, AllowlistEntry.prefix_length))
    if scopes is not None:
        by_prefix = by_prefix.where(AllowlistEntry.scope.in_(scopes))
    rows = list(by_prefix.tuples())
    count(4, rows)  # a prefix up to 32 may be IPv4
    count(6, [row for row in rows if row[1] > 32])  # a longer one is IPv6; a shorter IPv6 one is found here:
    # (Each a seek per prefix length along the index: the IPv4 entries in between are not read.)
    broad_v6 = [AllowlistEntry.select(AllowlistEntry.scope, AllowlistEntry.prefix_length, fn.COUNT(1))
                .where(AllowlistEntry.prefix_length.in_(list(range(1, 33))), starts)
                .group_by(AllowlistEntry.scope, AllowlistEntry.prefix_length)
                for starts in (AllowlistEntry.start >= V4_END, AllowlistEntry.start == ZERO)]
    if scopes is not None:
        broad_v6 = [query.where(AllowlistEntry.scope.in_(scopes)) for query in broad_v6]
    count(6, list((broad_v6[0] + broad_v6[1]).tuples()))
    nothing = {4: 0, 6: 0}
    shared = per_scope.pop(ALL_PRACTICES, nothing)
    largest = {v: shared[v] + max((own[v] for own in per_scope.values()), default=0) for v in (4, 6)}
    largest[network.version] += network.num_addresses
    return largest[network.version] > limit or largest[4] >= 2 ** 32 or largest[6] >= 2 ** 128


def _scopes_with(network: IPNetwork, practice: Practice | None) -> dict[str, dict[int, list[tuple[int, int]]]]:
    """Per practice affected (by name), the address ranges of its active entries (own and All practices) with this
    network added, per IP version: read from the stored start and prefix length, no address parsing per row."""
    active = AllowlistEntry.select(AllowlistEntry.network, AllowlistEntry.scope, AllowlistEntry.start,
                                   AllowlistEntry.prefix_length).where(AllowlistEntry.active)
    if practice is not None:
        active = active.where(AllowlistEntry.scope.in_([practice.id, ALL_PRACTICES]))
    by_scope: dict[int, list] = {}
    for row in active.tuples():
        stored, scope, start, prefix = row
        version, bits = (6, 128) if ":" in stored else (4, 32)
        first = int(start, 16)
        by_scope.setdefault(scope, []).append((version, (first, first + 2 ** (bits - prefix) - 1)))
    shared = by_scope.pop(ALL_PRACTICES, []) + [(network.version, address_range(network))]

    def per_version(ranges):
        out: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for version, pair in ranges:
            out[version].append(pair)
        return out

    if practice is not None:
        return {practice.name: per_version(shared + by_scope.get(practice.id, []))}
    names = {p.id: p.name for p in Practice.select(Practice.id, Practice.name)} if by_scope else {}
    return ({names[pid]: per_version(shared + own) for pid, own in by_scope.items()}
            or {"every practice": per_version(shared)})


def everything_refusal(network: IPNetwork, practice: Practice | None, scopes=None) -> str | None:
    """Why adding (or switching on) this network would, with the active entries there, allow every address, or
    more than half of all addresses of its IP version (many /8s add up as surely as two /1s)."""
    for name, ranges in (scopes or _scopes_with(network, practice)).items():
        for version, bits in ((4, 32), (6, 128)):
            if ranges[version] and merged_size(ranges[version]) == 2 ** bits:
                return (f"{network} would, together with the entries already there, allow every IPv{version} "
                        f"address for {name}: enter a smaller network.")
        bits = network.max_prefixlen
        total = merged_size(ranges[network.version])
        if total > 2 ** (bits - 1):
            return (f"{network} would, together with the entries already there, allow {total:,} IPv"
                    f"{network.version} addresses for {name}, more than half of all of them: enter smaller networks.")
    return None


def broad_union(network: IPNetwork, practice: Practice | None, broadest: dict[int, int],
                scopes=None) -> str | None:
    """When this network and the active entries there together cover more than one broad network: what they cover."""
    limit = 2 ** (network.max_prefixlen - broadest[network.version])
    for name, ranges in (scopes or _scopes_with(network, practice)).items():
        total = merged_size(ranges[network.version])
        if total > limit:
            return (f"Together with the entries already there, the allowlist for {name} would cover {total:,} "
                    f"addresses, more than a /{broadest[network.version]}: confirm below that you mean to allow "
                    "all of them, or enter a smaller network.")
    return None


# --- changing an entry ---

def relabel(visit: Visit, entry: AllowlistEntry, text: str) -> AllowlistEntry | LabelRefused:
    """Give an entry a new label; the entry as it now is, or why the label was not saved."""
    label, error = clean_label(text)
    if error:
        return LabelRefused(label, error)
    with database.atomic():
        AllowlistEntry.update(label=label).where(AllowlistEntry.id == entry.id).execute()
        audit.record_by(visit, "entry_edited", practice=entry.practice_id, target=entry.network,
                        detail=f"label: {entry.label} -> {label}")
    entry.label = label
    return entry


def set_until(visit: Visit, entry: AllowlistEntry, text: str,
              administered: Collection[int]) -> AllowlistEntry | UntilRefused | Refusal:
    """Give an entry an end (blank: none); the entry as it now is, an UntilRefused for an end that is no date or
    has passed, or the Refusal (lockout) when the admin's own way in would expire within LOCKOUT_MARGIN."""
    time_zone = entry_time_zone(visit, entry.practice_id)
    until, error = until_error(visit, text, time_zone)
    if error:
        return UntilRefused(text.strip()[:40], error)
    with change_lock():
        refusal = None
        if until is not None:
            affected = sorted(administered) if entry.is_all_practices else [entry.practice_id]
            refusal = lockout_for(visit.user, affected, visit.ip, entry_expiry=(entry.id, until), now=visit.now,
                                  lapse=f"this entry expires at {local_text(until, time_zone)}")
        if refusal is None:
            AllowlistEntry.update(expires_at=until).where(AllowlistEntry.id == entry.id).execute()
            shown = {None: "none"}
            old, new = (shown.get(t) or f"{t:%Y-%m-%d %H:%M} UTC" for t in (entry.expires_at, until))
            audit.record_by(visit, "entry_edited", practice=entry.practice_id, target=entry.network,
                            detail=f"until: {old} -> {new}")
    if refusal is not None:
        return refusal
    entry.expires_at = until
    return entry


def set_active(visit: Visit, entry: AllowlistEntry, active: bool,
               administered: Collection[int]) -> AllowlistEntry | Refusal:
    """Switch an entry on (unless that covers everything) or off (unless that locks the admin out or leaves an
    enforced practice without entries); the entry as it now is, or the Refusal."""
    with change_lock():
        refusal = _activation_refusal(visit, entry) if active else removal_refusal(visit, entry, administered)
        if refusal is None:
            AllowlistEntry.update(active=active).where(AllowlistEntry.id == entry.id).execute()
            audit.record_by(visit, "entry_enabled" if active else "entry_disabled", practice=entry.practice_id,
                            target=entry.network, detail=f"label: {entry.label}")
    if refusal is not None:
        return refusal
    entry.active = active
    return entry


def delete_entry(visit: Visit, entry: AllowlistEntry, administered: Collection[int]) -> Refusal | None:
    """Delete an entry unless that locks the admin out or leaves an enforced practice without entries; None when
    it is gone (also when someone else deleted it first), else the Refusal."""
    with change_lock():
        refusal = removal_refusal(visit, entry, administered)
        if refusal is None and AllowlistEntry.delete().where(AllowlistEntry.id == entry.id).execute():
            audit.record_by(visit, "entry_deleted", practice=entry.practice_id, target=entry.network,
                            detail=f"label: {entry.label}")
    return refusal


def _activation_refusal(visit: Visit, entry: AllowlistEntry) -> Refusal | None:
    network, practice = parse_entry(entry.network), None if entry.is_all_practices else entry.practice
    # The entry is counted twice (it is there, switched off): an upper bound all the same.
    if not may_add_up(network, practice, 2 ** (network.max_prefixlen - 1)):
        return None
    covering = everything_refusal(network, practice)
    if covering is None:
        return None
    return Refusal(covering, entry.practice_id or visit.practice.id, False, KEEP_IT_OFF, code="covers_everything")


def removal_refusal(visit: Visit, entry: AllowlistEntry, administered: Collection[int]) -> Refusal | None:
    """Why this entry may not go (it would block the admin, or leave an enforced practice empty), else None.

    Called inside change_lock(), so the answer still holds when the change commits.
    """
    # An All practices entry may be what lets the admin into any of the practices they administer from here.
    affected = sorted(administered) if entry.is_all_practices else [entry.practice_id]
    return (lockout_for(visit.user, affected, visit.ip, without="this entry", without_entry=entry.id,
                        now=visit.now)
            or last_entry_refusal(entry, visit.now))


# --- user grants ---

def revoke_grant(visit: Visit, grant: Grant) -> Refusal | None:
    """Take back one user's access from one IP, unless it is the admin's own way in; None when it is gone."""
    with change_lock():
        lockout = lockout_for(visit.user, [grant.practice_id], visit.ip, without="this grant",
                              without_grant=grant.id, now=visit.now)
        if lockout is None and Grant.delete().where(Grant.id == grant.id).execute():
            audit.record_by(visit, "grant_revoked", practice=grant.practice_id,
                            target=f"{grant.user.email} from {grant.ip}", subject_ip=grant.ip,
                            detail=f"request #{grant.request_id}" if grant.request_id else "")
    return lockout

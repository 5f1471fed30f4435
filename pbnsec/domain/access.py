"""Who may work where: the imperative shell around the pure decide().

`overview()` answers, once per visit, for every practice of the user, with the same few queries whatever the
number of practices. `decide_for()` answers for one practice, as things stand or as they would be after a
change (for lockout prevention).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple
from ipaddress import ip_network

from peewee import JOIN

from pbnsec.core.decision import (
    NOT_REQUESTED,
    Decision,
    Rule,
    Settings,
    Subject,
    decide,
    status_of,
)
from pbnsec.core.iprules import unmap
from pbnsec.core.windows import Hours, Window, describe, local_time
from pbnsec.models import (
    ALL_PRACTICES,
    AccessRequest,
    AllowlistEntry,
    Grant,
    IPRestriction,
    Membership,
    Practice,
    RestrictedRole,
    RestrictedUser,
    TimeRule,
    TimeRuleRole,
    TimeRuleUser,
    TimeWindow,
    User,
    utcnow,
)


def _hours(practice_ids, rows=None, practices=None) -> dict[int, Hours]:
    """Each practice's Time Windows. `rows`: the practices' TimeRule rows when the caller has them (else one query
    here); windows, zones and selected roles and users are loaded only when some practice has them switched on."""
    hours = {pid: Hours() for pid in practice_ids}
    if rows is None:
        rows = list(TimeRule.select().where(TimeRule.practice.in_(list(practice_ids)) & TimeRule.enabled))
    enabled = [r for r in rows if r.enabled]
    if not enabled:
        return hours
    ids = [r.practice_id for r in enabled]
    windows: dict[int, list[Window]] = {pid: [] for pid in ids}
    for w in TimeWindow.select().where(TimeWindow.practice.in_(ids)):
        windows[w.practice_id].append(Window(w.day, w.start_minute, w.end_minute))
    if practices is None:
        practices = {p.id: p for p in Practice.select().where(Practice.id.in_(ids))}
    scoped = [r.practice_id for r in enabled if not r.everyone]
    roles: dict[int, set[int]] = {pid: set() for pid in scoped}
    users: dict[int, set[int]] = {pid: set() for pid in scoped}
    if scoped:
        for r in TimeRuleRole.select().where(TimeRuleRole.practice.in_(scoped)):
            roles[r.practice_id].add(r.role_id)
        for r in TimeRuleUser.select().where(TimeRuleUser.practice.in_(scoped)):
            users[r.practice_id].add(r.user_id)
    for r in enabled:
        pid = r.practice_id
        # Until practices have a time zone of their own, their windows are read in UTC.
        zone = getattr(practices.get(pid), "time_zone", None) or "UTC"
        hours[pid] = Hours(True, r.everyone, frozenset(roles.get(pid, ())), frozenset(users.get(pid, ())),
                           tuple(sorted(windows[pid])), zone)
    return hours


def _settings(practice_ids, rows=None, time_rows=None, practices=None) -> tuple[dict[int, Settings], set[int]]:
    """Each practice's IP restrictions and Time Windows, and the practices that take no access requests.

    `rows`, `time_rows`: the practices' IPRestriction and TimeRule rows when the caller already has them (else a
    query each here); `practices`: the Practice rows by id, when the caller has them.
    """
    hours = _hours(practice_ids, time_rows, practices)
    settings = {pid: Settings(hours=hours[pid]) for pid in practice_ids}
    if rows is None:
        rows = list(IPRestriction.select().where(IPRestriction.practice.in_(list(practice_ids))))
    scoped = [r.practice_id for r in rows if not r.everyone]
    roles: dict[int, set[int]] = {pid: set() for pid in scoped}
    users: dict[int, set[int]] = {pid: set() for pid in scoped}
    if scoped:  # two more queries only when some practice restricts selected roles and users
        for r in RestrictedRole.select().where(RestrictedRole.practice.in_(scoped)):
            roles[r.practice_id].add(r.role_id)
        for r in RestrictedUser.select().where(RestrictedUser.practice.in_(scoped)):
            users[r.practice_id].add(r.user_id)
    for r in rows:
        settings[r.practice_id] = (Settings(enforced=r.enforced, hours=hours[r.practice_id]) if r.everyone else
                                   Settings(r.enforced, False, frozenset(roles[r.practice_id]),
                                            frozenset(users[r.practice_id]), hours[r.practice_id]))
    return settings, {r.practice_id for r in rows if not r.requests_allowed}


def settings_for(practice_id: int) -> Settings:
    """A practice's IP restrictions (its Time Windows left off: see _hours)."""
    return _settings([practice_id], time_rows=())[0][practice_id]


def practice_settings(practice_id: int) -> Settings:
    """A practice's IP restrictions with its Time Windows: everything its decisions depend on but entries and grants."""
    return _settings([practice_id])[0][practice_id]


def entries_holding(practice_ids, ip) -> dict[int, list[Rule]]:
    """Per practice, the entries (its own and All practices', switched off or not) whose network holds ip: indexed
    probes, no scan. The one matcher: access is decided on it and the allowlist's banner shows it."""
    found: dict[int, list[Rule]] = {pid: [] for pid in practice_ids}
    if ip is None or not found:
        return found
    rows = AllowlistEntry.select().where(
        AllowlistEntry.scope.in_([*practice_ids, ALL_PRACTICES]) & AllowlistEntry.holding(ip))
    for entry in rows:
        rule = Rule(ip_network(entry.network), active=entry.active, expires_at=entry.expires_at, ref=entry)
        if ip.version != rule.network.version or ip not in rule.network:
            continue
        for pid in (practice_ids if entry.scope == ALL_PRACTICES else [entry.scope]):
            found[pid].append(rule)
    return found


def _grants(user_id: int, practice_ids, ip) -> dict[int, list[Rule]]:
    found: dict[int, list[Rule]] = {pid: [] for pid in practice_ids}
    if ip is not None:
        for grant in Grant.select().where((Grant.user == user_id) & Grant.practice.in_(list(practice_ids))
                                          & (Grant.ip == str(ip))):
            found[grant.practice_id].append(Rule(ip_network(grant.ip), expires_at=grant.expires_at, ref=grant))
    return found


def _statuses(user_id: int, practice_ids, ip) -> dict[int, str]:
    """Per practice, the status of this user's latest access request from this IP."""
    found = {pid: NOT_REQUESTED for pid in practice_ids}
    if ip is not None:
        latest_first = (AccessRequest.select(AccessRequest.practice, AccessRequest.status)
                        .where((AccessRequest.user == user_id) & AccessRequest.practice.in_(list(practice_ids))
                               & (AccessRequest.ip == str(ip)))
                        .order_by(AccessRequest.created_at.desc(), AccessRequest.id.desc()))
        seen = set()
        for row in latest_first:
            if row.practice_id not in seen:
                seen.add(row.practice_id)
                found[row.practice_id] = row.status
    return found


def _decisions(user: User, practice_ids: list[int], ip, now: datetime, settings: dict[int, Settings],
               without_entry: int | None = None, without_grant: int | None = None,
               entry_expiry: tuple[int, datetime | None] | None = None,
               policies: dict | None = None) -> dict[int, Decision]:
    """decide() once per practice; entries only where restrictions apply, grants and statuses only if needed.

    `entry_expiry` (entry id, expiry): decide as if that entry expired then instead. `policies`: the practices'
    compiled policies (domain.policy), whose in-memory allowlists then stand in for the database's.
    """
    subject = Subject(user.id, user.role_id)
    applies = []
    for pid in practice_ids:  # (loops, not comprehensions: this runs on every request)
        if settings[pid].enforced and settings[pid].applies_to(subject):
            applies.append(pid)
    if policies is not None:
        entries = {}
        for pid in applies:
            entries[pid] = policies[pid].entries_holding(ip)
    else:
        entries = entries_holding(applies, ip)
    if entry_expiry is not None:
        changed_id, expires_at = entry_expiry
        entries = {pid: [replace(r, expires_at=expires_at) if r.ref.id == changed_id else r for r in rules]
                   for pid, rules in entries.items()}
    if without_entry is not None:
        entries = {pid: [r for r in rules if r.ref.id != without_entry] for pid, rules in entries.items()}
    # First on the entries alone: on a compiled policy that settles almost every request, with no query and
    # nothing set up to load grants or request statuses. A practice that does not let the visit in is decided
    # again with them (the same pure decision: what it allowed for is what grants and statuses cannot change).
    decisions, undecided = {}, []
    for pid in practice_ids:
        decisions[pid] = decision = decide(subject, ip, settings[pid], entries.get(pid, ()), (), now)
        if not decision.allowed:
            undecided.append(pid)
    if not undecided:
        return decisions
    loaded = {}

    def grants_of(pid):
        if "grants" not in loaded:
            loaded["grants"] = _grants(subject.user_id, applies, ip)
        return [r for r in loaded["grants"][pid] if r.ref.id != without_grant]

    def request_status(pid):
        if "statuses" not in loaded:
            loaded["statuses"] = _statuses(subject.user_id, applies, ip)
        return loaded["statuses"][pid]

    for pid in undecided:
        decisions[pid] = decide(subject, ip, settings[pid], entries.get(pid, ()), lambda pid=pid: grants_of(pid),
                                now, lambda pid=pid: request_status(pid))
    return decisions


def decide_for(user: User, practice_id: int, ip, settings: Settings | None = None,
               without_entry: int | None = None, without_grant: int | None = None,
               now: datetime | None = None) -> Decision:
    """The decision for one practice as things stand, or as they would be with other settings or one rule gone."""
    current = {practice_id: settings if settings is not None else _settings([practice_id])[0][practice_id]}
    ip = unmap(ip) if ip is not None else None
    return _decisions(user, [practice_id], ip, now or utcnow(), current, without_entry, without_grant)[practice_id]


class PracticeAccess(NamedTuple):
    """A practice as one user sees it from one IP: the decision, its status word, and whether they may ask (a
    tuple, like the overview: both are made on every request, and a frozen dataclass costs more to make)."""

    practice: Practice
    decision: Decision
    status: str  # allowed | approved | pending | rejected | not_requested
    can_request: bool
    settings: Settings = Settings()  # the practice's IP restrictions and Time Windows the decision was made on


class AccessOverview(NamedTuple):
    """Every practice of one user as seen from one IP at one time, in name order: worked out once per visit."""

    user: User
    rows: tuple[PracticeAccess, ...]
    home_id: int | None = None  # the user's home practice: their first membership (the one they were created in)

    @property
    def allowed(self) -> list[Practice]:
        """The practices this visit may work in (and, for security administrators, administer)."""
        return [row.practice for row in self.rows if row.decision.allowed]

    def row(self, practice_id) -> PracticeAccess | None:
        return next((row for row in self.rows if row.practice.id == practice_id), None)

    def first_allowed(self, preferred_id=None) -> Practice | None:
        """The preferred practice if it is allowed, else the home practice if it is, else the first allowed one by
        name; None when none is."""
        allowed = self.allowed
        for wanted in (preferred_id, self.home_id):
            found = next((p for p in allowed if p.id == wanted), None)
            if found is not None:
                return found
        return allowed[0] if allowed else None

    @property
    def from_office(self) -> bool:
        """Whether an allowlist entry or a grant of one of the user's practices lets this IP in."""
        return any(row.decision.reason in ("allowlist_entry", "user_grant") for row in self.rows)


def overview(user: User, ip, now: datetime | None = None, policies=None) -> AccessOverview:
    """Each of the user's practices as seen from this IP: the same few queries for one practice or twenty.

    `policies`: a domain.policy.PolicyCache. Then a visit costs one query (the practices with their policy
    generations) while their compiled policies are current, and decides on them in memory; without it (sign-in,
    the command line) everything is read from the database.
    """
    ip = unmap(ip) if ip is not None else None  # ::ffff:a.b.c.d is looked up as the IPv4 address it is
    if policies is not None:
        found = overview_on_policies(user, ip, now or utcnow(), policies.practices_of(user.id), policies)
        if found is not None:
            return found
    # The practices and their restrictions in one query: this runs on every request.
    practices = list(Practice.select(Practice, IPRestriction, TimeRule, Membership.id)
                     .join(Membership).switch(Practice)
                     .join(IPRestriction, JOIN.LEFT_OUTER, on=(IPRestriction.practice == Practice.id),
                           attr="restriction").switch(Practice)
                     .join(TimeRule, JOIN.LEFT_OUTER, on=(TimeRule.practice == Practice.id), attr="time_rule")
                     .where(Membership.user == user).order_by(Practice.name))
    ids = [p.id for p in practices]
    settings, no_requests = _settings(ids, [p.restriction for p in practices if p.restriction is not None],
                                      [p.time_rule for p in practices if p.time_rule is not None],
                                      {p.id: p for p in practices})
    decisions = _decisions(user, ids, ip, now or utcnow(), settings)
    return _overview(user, ip, practices, decisions, no_requests, settings)


def overview_on_policies(user: User, ip, now: datetime, practices: list[Practice], policies) -> AccessOverview | None:
    """The overview decided in memory on the practices' compiled policies (`practices` as
    PolicyCache.practices_of read them, `ip` unmapped); None when they could not be compiled (writes kept changing
    them): then the caller decides the direct way. What a request does after its one statement."""
    compiled = policies.for_practices(practices)
    if compiled is None:
        return None
    # One pass deciding on the entries alone, which lets almost every request in: _decisions' first round,
    # written out for the compiled case (this is the cost of a request beyond its one statement).
    subject = Subject(user.id, user.role_id)
    settings, no_requests, decisions, everywhere = {}, set(), {}, True
    for pid, policy in compiled.items():
        settings[pid] = rules = policy.settings
        if not policy.requests_allowed:
            no_requests.add(pid)
        entries = policy.entries.match(ip) if rules.enforced and rules.applies_to(subject) else ()
        decisions[pid] = decision = decide(subject, ip, rules, entries, (), now)
        everywhere = everywhere and decision.allowed
    if not everywhere:  # grants and request statuses matter somewhere: decided with them, the usual way
        decisions = _decisions(user, list(compiled), ip, now, settings, policies=compiled)
    return _overview(user, ip, practices, decisions, no_requests, settings)


def _overview(user: User, ip, practices: list[Practice], decisions: dict[int, Decision], no_requests: set[int],
              settings: dict[int, Settings]) -> AccessOverview:
    rows = []
    home_id, first_membership = None, None
    for practice in practices:
        pid = practice.id
        decision = decisions[pid]
        status = status_of(decision)
        # An access request approves an IP; it does not extend working hours.
        can_request = (not decision.allowed and status not in ("pending", "outside_hours")
                       and pid not in no_requests and ip is not None)
        rows.append(PracticeAccess(practice, decision, status, can_request, settings[pid]))
        # Home: the first membership, i.e. the practice the user was created in (later ones are added to it).
        membership = practice.membership.id
        if first_membership is None or membership < first_membership:
            home_id, first_membership = pid, membership
    return AccessOverview(user, tuple(rows), home_id)


def why_blocked(decision: Decision, practice: Practice, ip_text: str) -> str:
    """Which rule blocked a user, in words for them and the audit log."""
    if decision.reason == "outside_hours":
        return f"outside your working hours at {practice.name}: {decision.hours}"
    return f"IP {ip_text} is not approved"


def why_allowed(decision: Decision) -> str:
    """Which rule let a user in, for the audit log: the entry or grant by id and label, or why none was needed."""
    ref = decision.rule.ref if decision.rule is not None else None
    if decision.reason == "allowlist_entry" and ref is not None:
        scope = " (All practices)" if ref.scope == ALL_PRACTICES else ""
        return f"allowlist entry #{ref.id} {ref.network} \"{ref.label}\"{scope}"
    if decision.reason == "user_grant" and ref is not None:
        origin = f" approved in request #{ref.request_id}" if ref.request_id else ""
        return f"user grant #{ref.id} for {ref.ip}{origin}"
    return {"restrictions_off": "IP restrictions are off", "not_in_scope": "IP restrictions do not apply to them"}.get(
        decision.reason, decision.reason)


@dataclass(frozen=True)
class Refusal:
    """A refused security change, with a code for code and a message for people.

    Codes: lockout (it would block the admin making it), lockout_time (it would, by Time Windows), last_entry (it
    would empty an enforced allowlist), covers_everything (the active entries would allow every address), impact
    (it would block people who signed in recently: saved only when the administrator confirms; see `impact`).
    """

    message: str
    practice_id: int  # where adding the admin's IP would let the change through
    can_add_ip: bool  # False when that IP is already an entry there (it is the one being removed)
    advice: str = "Add another entry that covers your IP first, or switch IP restrictions off in General Settings."
    code: str = "lockout"
    impact: object = None  # code impact: the domain.impact.Impact to show before the administrator confirms

    @classmethod
    def bad_input(cls, practice, code: str, message: str) -> "Refusal":
        """A change refused for what was typed or chosen: nothing to add, no advice beyond the message."""
        return cls(message, practice.id, False, advice="", code=code)


# A change that lets the admin in now but not in this long (the rule letting them in expires) is refused too:
# they would be locked out before they noticed.
LOCKOUT_MARGIN = timedelta(minutes=15)


def lockout_for(user: User, practice_ids, ip, without: str = "", settings: Settings | None = None,
                without_entry: int | None = None, without_grant: int | None = None,
                now: datetime | None = None, entry_expiry: tuple[int, datetime | None] | None = None,
                lapse: str = "", hours: Hours | None = None) -> Refusal | None:
    """The Refusal a change would cause (other settings for one practice, an entry or grant gone, an entry's
    expiry moved), now or within LOCKOUT_MARGIN, else None.

    Two rounds of decisions for all the practices at once, as things stand and as they would be: the cost does
    not grow with the number of practices an All practices entry reaches. Two more only when what would let the
    admin in expires within the margin: then it is refused unless something else would still let them in (a
    lapse that happens whether or not the change is made is not the change's doing). `lapse` says what expires.
    `settings` are IP restrictions only (the practice keeps its Time Windows); `hours`: other Time Windows.
    """
    practice_ids, now, ip = list(practice_ids), now or utcnow(), unmap(ip) if ip is not None else None
    current, _ = _settings(practice_ids)
    changed = dict(current)
    if settings is not None or hours is not None:
        (only,) = practice_ids  # other settings are for one practice
        changed[only] = replace(settings or current[only], hours=hours or current[only].hours)
    before = _decisions(user, practice_ids, ip, now, current)
    after = _decisions(user, practice_ids, ip, now, changed, without_entry, without_grant, entry_expiry)
    soon = now + LOCKOUT_MARGIN
    lapsing = [pid for pid in practice_ids if before[pid].allowed and after[pid].allowed
               and after[pid].rule is not None and after[pid].rule.expires_at is not None
               and after[pid].rule.expires_at <= soon]
    before_soon = after_soon = {}
    if lapsing:
        before_soon = _decisions(user, lapsing, ip, soon, {pid: current[pid] for pid in lapsing})
        after_soon = _decisions(user, lapsing, ip, soon, {pid: changed[pid] for pid in lapsing},
                                without_entry, without_grant, entry_expiry)
    for practice_id in practice_ids:
        blocked_now = before[practice_id].allowed and not after[practice_id].allowed
        blocked_soon = (practice_id in after_soon and before_soon[practice_id].allowed
                        and not after_soon[practice_id].allowed)
        if blocked_now or blocked_soon:
            can_add_ip = ip is not None and not AllowlistEntry.select().where(
                (AllowlistEntry.scope == practice_id) & (AllowlistEntry.network == str(ip_network(ip)))
            ).exists()
            if blocked_now and after[practice_id].reason == "outside_hours":
                rule = after[practice_id].hours
                return Refusal(f"This would block you: it is {local_time(now, rule.zone):%a %H:%M} ({rule.zone}), "
                               f"outside the windows {describe(rule.windows)}.", practice_id, False,
                               "Add a window that covers now first, or leave Time Windows off.", code="lockout_time")
            if blocked_now:
                prefix = f"without {without}, " if without else ""
                message = f"This would block you: {prefix}your IP {ip or '(unknown)'} is not on the allowlist."
            else:
                minutes = int(LOCKOUT_MARGIN.total_seconds() // 60)
                message = (f"This would block you within the next {minutes} minutes: once "
                           f"{lapse or 'the entry or grant that lets you in expires'}, nothing else lets your IP "
                           f"{ip or '(unknown)'} in.")
            return Refusal(message, practice_id, can_add_ip)
    return None


def covered_until(user: User, practice_ids, ip, at: datetime) -> bool:
    """Whether an entry or grant, other than one being added, lets this user in from ip at `at` in every one of
    these practices, as if IP restrictions applied to them there."""
    ip = unmap(ip) if ip is not None else None
    practice_ids = list(practice_ids)
    on = {pid: Settings(enforced=True) for pid in practice_ids}
    return all(d.allowed for d in _decisions(user, practice_ids, ip, at, on).values())


def last_entry_refusal(entry: AllowlistEntry, now: datetime | None = None) -> Refusal | None:
    """Refuse to take away the last live entry of a practice whose IP restrictions are on (expired ones don't
    count: they let no one in)."""
    enforced = IPRestriction.select(IPRestriction.practice).where(IPRestriction.enforced)
    if entry.scope != ALL_PRACTICES:
        enforced = enforced.where(IPRestriction.practice == entry.practice_id)
    enforced_ids = [row.practice_id for row in enforced]
    if not enforced_ids:
        return None
    # Which scopes keep an active entry without this one: a few rows, whatever the number of practices.
    kept = {row.scope for row in AllowlistEntry.select(AllowlistEntry.scope).distinct().where(
        AllowlistEntry.scope.in_([*enforced_ids, ALL_PRACTICES]) & AllowlistEntry.live(now or utcnow())
        & (AllowlistEntry.id != entry.id))}
    emptied = [] if ALL_PRACTICES in kept else [pid for pid in enforced_ids if pid not in kept]
    if not emptied:
        return None
    practice = Practice.select().where(Practice.id.in_(emptied)).order_by(Practice.name).first()
    return Refusal(f"{entry.network} is the last active entry for {practice.name}, where IP restrictions are on: "
                   "without it everyone they apply to is blocked.", practice.id, False,
                   "Add another entry first, or switch IP restrictions off in General Settings.",
                   code="last_entry")

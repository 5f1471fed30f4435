"""Compiled policies: a practice's settings, Time Windows and allowlist in memory, per process, per database.

A request reads each practice's `policy_generation` with the practices it already loads (no extra statement). A
policy compiled at that generation is used as it is; any other is compiled again. Database triggers raise the
generation in the transaction of every write a decision depends on (migrations.POLICY_TABLES), so a policy
compiled before a write is never used by a request that starts after it commits, in any process.

What is cached is the policy, never a decision: entries keep their expiry and are decided against each visit's
`now`; grants and request statuses are per user and still read per visit, and only when the allowlist did not
already let the visit in.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Network, IPv6Network
from typing import NamedTuple

from pbnsec.core.decision import Rule, Settings
from pbnsec.core.iprules import IPAddress, NetworkMatcher
from pbnsec.db import database
from pbnsec.models import ALL_PRACTICES, AllowlistEntry, Membership, Practice

# How many times a compile is tried while writes keep raising the generation under it, before the visit is
# decided the direct way (see PolicyCache.for_practices).
ATTEMPTS = 3


class EntryRef(NamedTuple):
    """What a compiled rule keeps of its allowlist entry (a decision's messages name it by these)."""

    id: int
    scope: int
    network: str
    label: str
    expires_at: datetime | None


@dataclass(frozen=True)
class Policy:
    """Everything one practice's decisions depend on but the user's grants and requests, at one generation."""

    generation: int
    time_zone: str  # the practice's zone its Time Windows were compiled in (a change recompiles)
    settings: Settings
    requests_allowed: bool
    # Its own and All practices' switched-on entries, expired ones included; empty while its IP restrictions are
    # off, since no decision then looks at them (an allowlist of 10,000 entries is not compiled to be ignored).
    entries: NetworkMatcher[Rule]

    def entries_holding(self, ip: IPAddress | None) -> list[Rule]:
        """The switched-on entries whose network holds ip, most specific first (expiry is the decision's to
        judge, against the visit's now); none while IP restrictions are off."""
        return self.entries.match(ip)


def compile_policies(practice_ids) -> dict[int, Policy]:
    """Compile the policies of these practices from the database (generation and time zone left to the caller)."""
    from pbnsec.domain.access import _settings  # the one reading of settings and Time Windows

    practice_ids = list(practice_ids)
    settings, no_requests = _settings(practice_ids)
    matchers: dict[int, NetworkMatcher[Rule]] = {pid: NetworkMatcher() for pid in practice_ids}
    enforced = [pid for pid in practice_ids if settings[pid].enforced]
    if enforced:
        # Plain rows, each network made from its stored start and prefix length rather than parsed: a write to a
        # list of 10,000 entries costs every process one compile of them all on its next visit.
        query = (AllowlistEntry.select(AllowlistEntry.id, AllowlistEntry.scope, AllowlistEntry.network,
                                       AllowlistEntry.label, AllowlistEntry.expires_at, AllowlistEntry.start,
                                       AllowlistEntry.prefix_length)
                 .where(AllowlistEntry.scope.in_([*enforced, ALL_PRACTICES]) & AllowlistEntry.active))
        stored_time = AllowlistEntry.expires_at.python_value
        for entry_id, scope, text, label, expires_at, start, prefix in database.execute(query).fetchall():
            if expires_at is not None:
                expires_at = stored_time(expires_at)
            network = (IPv6Network if ":" in text else IPv4Network)((int(start, 16), prefix))
            rule = Rule(network, True, expires_at, EntryRef(entry_id, scope, text, label, expires_at))
            for pid in (enforced if scope == ALL_PRACTICES else (scope,)):
                matchers[pid].add(network, rule)
    return {pid: Policy(0, "", settings[pid], pid not in no_requests, matchers[pid]) for pid in practice_ids}


MEMBERSHIP_ID = (Membership.id,)


class PolicyCache:
    """One process's compiled policies for one database (the app keeps one: a new app, a new cache).

    Thread- and fork-safe without a lock: policies are immutable and a dict item is replaced whole, so a racing
    thread at worst keeps an older policy (labelled with its own generation: it is compiled again when next
    read); a forked process inherits a copy that is checked against the database like any other.
    """

    def __init__(self) -> None:
        self._policies: dict[int, Policy] = {}
        self.compiles = 0  # how many policies were compiled (for tests and the measurement)
        self._practices_sql: str | None = None

    def practices_of(self, user_id: int) -> list[Practice]:
        """The user's practices by name, each with its policy generation and `membership` (its id): the one
        statement of a visit while the policies are current. Its SQL is put together once, not per visit
        (peewee spends more time writing a query than the database spends answering it)."""
        fields = Practice._meta.sorted_fields
        if self._practices_sql is None:
            query = (Practice.select(*fields, Membership.id).join(Membership)
                     .where(Membership.user == -1).order_by(Practice.name, Practice.id))
            sql, params = query.sql()
            assert params == [-1], params  # the user id is the one parameter
            self._practices_sql = sql
        practices = []
        for row in database.execute_sql(self._practices_sql, (user_id,)).fetchall():
            practice = Practice.from_row(fields, row)
            practice.membership = Membership.from_row(MEMBERSHIP_ID, row[-1:])
            practices.append(practice)
        return practices

    def for_practices(self, practices: list[Practice]) -> dict[int, Policy] | None:
        """The policy of each practice at the generation its row (read by this visit) carries; None when writes
        kept changing them while they were compiled (the caller then decides the direct way)."""
        found = {}
        for practice in practices:  # every request: the usual case, every policy current, costs a dict look-up each
            pid = practice.id
            policy = self._policies.get(pid)
            if (policy is None or policy.generation != practice.policy_generation
                    or policy.time_zone != practice.time_zone):
                break
            found[pid] = policy
        else:
            return found
        wanted = {p.id: (p.policy_generation, p.time_zone) for p in practices}
        found, stale = {}, []
        for pid, (generation, zone) in wanted.items():
            policy = self._policies.get(pid)
            if policy is not None and policy.generation == generation and policy.time_zone == zone:
                found[pid] = policy
            else:
                stale.append(pid)
        for _ in range(ATTEMPTS):
            if not stale:
                return found
            compiled = compile_policies(stale)
            # Read the generations again: unchanged means no write to these practices committed between the
            # visit's read and the end of the compile, so what was read is the state at that generation.
            now = {row.id: (row.policy_generation, row.time_zone) for row in
                   Practice.select(Practice.id, Practice.policy_generation, Practice.time_zone)
                   .where(Practice.id.in_(stale))}
            still = []
            for pid in stale:
                if now.get(pid) != wanted[pid]:
                    still.append(pid)
                    continue
                generation, zone = wanted[pid]
                policy = Policy(generation, zone, compiled[pid].settings, compiled[pid].requests_allowed,
                                compiled[pid].entries)
                found[pid] = policy
                self._keep(pid, policy)
            # A practice written meanwhile: this visit started before that write committed, so deciding on the
            # state at the newer generation is as right as any; compile once more against it.
            for pid in still:
                if pid in now:
                    wanted[pid] = now[pid]
            stale = [pid for pid in still if pid in now]
            if len(still) != len(stale):
                return None  # a practice was deleted under the visit: let the direct way answer
        return None if stale else found

    def _keep(self, pid: int, policy: Policy) -> None:
        self.compiles += 1
        kept = self._policies.get(pid)
        if kept is None or kept.generation <= policy.generation:
            self._policies[pid] = policy

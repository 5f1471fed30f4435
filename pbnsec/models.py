"""Tables. Constraints live in Meta.indexes so the database, not the view, keeps the rules."""
from __future__ import annotations

import time
from datetime import datetime, timezone

from peewee import (
    SQL,
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from pbnsec.config import default_time_zone
from pbnsec.core.snippets import PROXY_FILES
from pbnsec.db import database


def utcnow() -> datetime:
    """Now in UTC, without tzinfo: every stored time is UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False

    @classmethod
    def from_row(cls, fields, values):
        """An instance from a row of its columns in `fields` order, as a peewee query makes one (each value through
        its field's python_value; nothing marked as changed), without peewee's per-attribute bookkeeping: for the
        few statements every request makes, written once as SQL (domain.policy, domain.gate)."""
        instance = cls.__new__(cls)
        instance.__data__ = {f.name: f.python_value(v) for f, v in zip(fields, values)}
        instance._dirty = set()
        instance.__rel__ = {}
        return instance


class Practice(BaseModel):
    name = CharField(max_length=100, unique=True)
    created_at = DateTimeField(default=utcnow)
    time_zone = CharField(max_length=64, default=default_time_zone)  # IANA name; every time shown there is in it
    # Raised by database triggers (migrations.POLICY_TABLES) in the transaction of every write its access decisions
    # depend on: a process's compiled policy for the practice (domain.policy) is good only at the number it was
    # compiled at, and every request reads it.
    # A new practice starts at the time in microseconds, like a raised one: one that takes a deleted practice's id
    # never meets that practice's compiled policy.
    policy_generation = BigIntegerField(default=lambda: time.time_ns() // 1000)


# The seeded roles; Owners and Admins are security administrators.
ROLES = (
    ("Owner", True),
    ("Admin", True),
    ("Office Manager", False),
    ("Provider", False),
    ("Hygienist", False),
    ("Front Desk", False),
    ("Billing", False),
)


class Role(BaseModel):
    name = CharField(max_length=50, unique=True)
    is_security_admin = BooleanField(default=False)
    position = IntegerField(default=0)


class User(BaseModel):
    email = CharField(max_length=254, unique=True)
    name = CharField(max_length=100)
    password_hash = CharField(max_length=255)
    active = BooleanField(default=True)
    role = ForeignKeyField(Role, backref="users")
    created_at = DateTimeField(default=utcnow)
    must_change_password = BooleanField(default=False)  # set for passwords shown once on a console
    sign_in_token = None  # the SignIn this request runs under (set by the user loader), never stored here

    # flask-login's interface
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str:
        return f"{self.id}:{self.sign_in_token}"

    @property
    def is_security_admin(self) -> bool:
        return self.role.is_security_admin

    def practices(self):
        return (
            Practice.select()
            .join(Membership)
            .where(Membership.user == self)
            .order_by(Practice.name)
        )


class SignIn(BaseModel):
    """One browser's sign-in, kept on the server so that signing out or a new password really ends it."""

    token = CharField(max_length=64, unique=True)
    user = ForeignKeyField(User, backref="sign_ins", on_delete="CASCADE")
    blocked = BooleanField(default=False)  # a blocked sign-in: may only see and submit access requests
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(index=True)
    # A blocked sign-in only: the IP its password was typed at, and a digest of the password hash it was typed
    # against (see sessions.find_blocked). NULL for a full sign-in, and a blocked one without them is not valid.
    ip = CharField(max_length=64, null=True)
    password_stamp = CharField(max_length=64, null=True)


class Invite(BaseModel):
    """A link that lets a person set their password once, within its lifetime; only a hash of its token is kept."""

    token_hash = CharField(max_length=64, unique=True)  # sha256 of the token in the link, as hex
    user = ForeignKeyField(User, backref="invites", on_delete="CASCADE")
    created_by = ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()
    used_at = DateTimeField(null=True)  # set once, by the conditional UPDATE that accepts it


class Membership(BaseModel):
    user = ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    practice = ForeignKeyField(Practice, backref="memberships", on_delete="CASCADE")

    class Meta:
        indexes = ((("user", "practice"), True),)


ALL_PRACTICES = 0  # AllowlistEntry.scope for entries that apply to every practice


class AllowlistEntry(BaseModel):
    # practice is NULL for "All practices"; scope repeats it as a number (0 for all) because a
    # unique index treats NULLs as distinct and would let the same all-practices network in twice.
    practice = ForeignKeyField(Practice, null=True, backref="entries", on_delete="CASCADE")
    scope = IntegerField()
    network = CharField(max_length=64)  # canonical form from iprules.parse_entry
    # The network's first address as 32 hex digits and its prefix length: a lookup probes the index
    # with the client IP masked to each prefix length instead of scanning every entry.
    start = CharField(max_length=32)
    prefix_length = IntegerField()
    label = CharField(max_length=100)
    active = BooleanField(default=True)
    added_by = ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    added_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(null=True)  # UTC; from then on it matches no one (kept for the record); None: never

    class Meta:
        indexes = (
            (("scope", "network"), True),
            (("scope", "start"), False),  # the lookup: (practice or all) x (ip masked per prefix length)
            (("scope", "added_at", "id"), False),  # a page of the list: the practice's entries, then All practices
            # How many entries of each prefix length (allowlist.may_add_up): counted in the index alone.
            (("scope", "prefix_length", "start"), False),
        )

    @property
    def is_all_practices(self) -> bool:
        return self.scope == ALL_PRACTICES

    @classmethod
    def stored(cls, network, practice=None, **fields) -> dict:
        """The columns for an entry of this network (practice None: All practices), storage encoding included."""
        return dict(practice=practice, scope=practice.id if practice is not None else ALL_PRACTICES,
                    network=str(network), start=f"{int(network.network_address):032x}",
                    prefix_length=network.prefixlen, **fields)

    @classmethod
    def live(cls, now):
        """The condition matching entries that let people in at `now`: switched on and not expired."""
        return cls.active & (cls.expires_at.is_null() | (cls.expires_at > now))

    @classmethod
    def holding(cls, ip):
        """The condition matching entries whose network could hold ip: the index probed once per prefix length."""
        bits, value = ip.max_prefixlen, int(ip)
        return cls.start.in_([f"{value >> (bits - n) << (bits - n):032x}" for n in range(bits + 1)])


class IPRestriction(BaseModel):
    """A practice's IP restrictions; a practice without a row has them off."""

    practice = ForeignKeyField(Practice, unique=True, backref="+", on_delete="CASCADE")
    enforced = BooleanField(default=False)
    everyone = BooleanField(default=True)  # False: only the selected roles and users
    requests_allowed = BooleanField(default=True)
    updated_at = DateTimeField(default=utcnow)
    default_duration = CharField(max_length=10, default="forever")  # what one-click Approve grants (core.durations)
    show_admin_emails = BooleanField(default=False)  # the blocked page shows administrators' emails, not just names


class RestrictedRole(BaseModel):
    practice = ForeignKeyField(Practice, backref="+", on_delete="CASCADE")
    role = ForeignKeyField(Role, backref="+", on_delete="CASCADE")

    class Meta:
        indexes = ((("practice", "role"), True),)


class RestrictedUser(BaseModel):
    practice = ForeignKeyField(Practice, backref="+", on_delete="CASCADE")
    user = ForeignKeyField(User, backref="+", on_delete="CASCADE")

    class Meta:
        indexes = ((("practice", "user"), True),)


class TimeRule(BaseModel):
    """A practice's Time Windows: when on, the people it applies to work only inside its windows.
    A practice without a row has them off."""

    practice = ForeignKeyField(Practice, unique=True, backref="+", on_delete="CASCADE")
    enabled = BooleanField(default=False)
    everyone = BooleanField(default=True)  # False: only the selected roles and users
    updated_at = DateTimeField(default=utcnow)


class TimeRuleRole(BaseModel):
    practice = ForeignKeyField(Practice, backref="+", on_delete="CASCADE")
    role = ForeignKeyField(Role, backref="+", on_delete="CASCADE")

    class Meta:
        indexes = ((("practice", "role"), True),)


class TimeRuleUser(BaseModel):
    practice = ForeignKeyField(Practice, backref="+", on_delete="CASCADE")
    user = ForeignKeyField(User, backref="+", on_delete="CASCADE")

    class Meta:
        indexes = ((("practice", "user"), True),)


class TimeWindow(BaseModel):
    """One weekly window of a practice, in its local wall-clock time (see core.windows.Window)."""

    practice = ForeignKeyField(Practice, backref="+", on_delete="CASCADE")
    day = IntegerField()  # 0 = Monday
    start_minute = IntegerField()
    end_minute = IntegerField()  # at or before start_minute: overnight into the next day

    class Meta:
        indexes = ((("practice", "day", "start_minute", "end_minute"), True),)


PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"


class AccessRequest(BaseModel):
    user = ForeignKeyField(User, backref="access_requests", on_delete="CASCADE")
    practice = ForeignKeyField(Practice, backref="+", on_delete="CASCADE")
    ip = CharField(max_length=64)  # as the server resolved it, never from a form
    note = TextField(default="")
    status = CharField(max_length=10, default=PENDING)
    created_at = DateTimeField(default=utcnow, index=True)
    decided_by = ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    decided_at = DateTimeField(null=True)
    reason = TextField(default="")  # why it was rejected, as the administrator typed it (optional; shown to the user)


# A page of a practice's pending requests (oldest first) and of its decided ones (latest first), however many.
AccessRequest.add_index(AccessRequest.index(AccessRequest.practice, AccessRequest.status, AccessRequest.created_at,
                                            AccessRequest.id))
AccessRequest.add_index(AccessRequest.index(AccessRequest.practice, AccessRequest.decided_at, AccessRequest.id))

# At most one pending request per user, practice and IP, even when two submit at once.
AccessRequest.add_index(
    AccessRequest.index(AccessRequest.user, AccessRequest.practice, AccessRequest.ip, unique=True)
    .where(AccessRequest.status == PENDING)
)


class Grant(BaseModel):
    """An approved access request: this user may work in this practice from this IP."""

    user = ForeignKeyField(User, backref="grants", on_delete="CASCADE")
    practice = ForeignKeyField(Practice, backref="+", on_delete="CASCADE")
    ip = CharField(max_length=64)
    request = ForeignKeyField(AccessRequest, null=True, backref="+", on_delete="SET NULL")
    created_by = ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(null=True)  # UTC; from then on it lets no one in (kept for the record); None: until revoked

    class Meta:
        indexes = ((("user", "practice", "ip"), True),)


class AuditEvent(BaseModel):
    at = DateTimeField(default=utcnow, index=True)
    actor = ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    actor_label = CharField(max_length=254)  # kept when the user is gone; "cli" for the command line
    actor_ip = CharField(max_length=64, default="")
    practice = ForeignKeyField(Practice, null=True, backref="+", on_delete="SET NULL")
    action = CharField(max_length=50, index=True)
    target = CharField(max_length=300, default="")
    detail = TextField(default="")
    # A refusal repeated within minutes (see audit.REPEATED_ACTIONS) is counted on its first event's row.
    count = IntegerField(default=1)
    last_at = DateTimeField(null=True)  # the last repeat; None while the row holds one event
    # The IP an event is about when that is not where it came from: an access request decided, a grant revoked.
    # A database default too, as migration 18 added it: a bulk load naming the columns it knows still works.
    subject_ip = CharField(max_length=64, default="", constraints=[SQL("DEFAULT ''")])

    class Meta:
        indexes = (
            # Finding the row a repeat is counted on (audit.count_repeat), however big the log.
            (("action", "actor_label", "actor_ip", "at"), False),
            # A page of one practice's events (or of none: IS NULL is indexed too), newest first, with or without
            # an action filter (audit.event_rows reads each practice along its index and merges them).
            (("practice", "at", "id"), False),
            (("practice", "action", "at", "id"), False),
            # The same for the events from one IP, and about one (the audit log's IP filter).
            (("practice", "actor_ip", "at", "id"), False),
            (("practice", "subject_ip", "at", "id"), False),
        )


class RateLimitHit(BaseModel):
    """One counted attempt (a failed sign-in, an access request) under a key such as 'login-ip:…'."""

    key = CharField(max_length=300)
    at = DateTimeField(default=utcnow, index=True)

    class Meta:
        indexes = ((("key", "at"), False),)


# Outbox mail: kinds, and where a row stands.
REQUESTS_WAITING, REQUEST_DECIDED = "requests_waiting", "request_decided"
QUEUED, SENDING, SENT, SKIPPED = "queued", "sending", "sent", "skipped"


class OutboxMail(BaseModel):
    """A mail to send, written in the transaction of the event that causes it and sent after that commits.

    What it says is put together when it is sent (see domain.notifications.compose): a "requests waiting" mail
    lists every request still pending then, so one row per administrator stands for any number of requests.
    """

    kind = CharField(max_length=20)  # REQUESTS_WAITING (to an administrator), REQUEST_DECIDED (to the requester)
    recipient = ForeignKeyField(User, backref="+", on_delete="CASCADE")
    request = ForeignKeyField(AccessRequest, null=True, backref="+", on_delete="CASCADE")  # the decided one
    status = CharField(max_length=10, default=QUEUED)
    created_at = DateTimeField(default=utcnow)
    send_after = DateTimeField()  # not before: batching, and backing off after a failure
    attempts = IntegerField(default=0)
    claimed_by = CharField(max_length=64, default="")  # the sender (process and thread) that is sending it
    claimed_until = DateTimeField(null=True)  # a sender that died mid-send leaves it to another from then on
    last_attempt_at = DateTimeField(null=True)
    last_error = TextField(default="")  # of the last failed try (or why it was skipped); kept once sent
    sent_at = DateTimeField(null=True)
    to_address = CharField(max_length=254, default="")  # as sent, for the record
    subject = CharField(max_length=300, default="")

    class Meta:
        indexes = ((("status", "send_after"), False),)  # what is due, however long the history


# One waiting "requests waiting" mail per administrator: a new request joins it instead of adding another.
OutboxMail.add_index(
    OutboxMail.index(OutboxMail.recipient, OutboxMail.kind, unique=True)
    .where((OutboxMail.status == QUEUED) & (OutboxMail.kind == REQUESTS_WAITING))
)


class SchemaVersion(BaseModel):
    """One row per schema version this database reached; the highest is its schema (see migrations.py)."""

    version = IntegerField(primary_key=True)
    name = CharField(max_length=200)
    applied_at = DateTimeField(default=utcnow)


class DeploymentSetting(BaseModel):
    """A fact every app instance on this database must agree on (the secret key's fingerprint), by name."""

    name = CharField(max_length=50, primary_key=True)
    value = CharField(max_length=200)


# How a protected app's proxy wants "sign in first" said (ProtectedApp.proxy): nginx's auth_request turns only
# 401/403 into its own answers (auth_request_set + error_page 401 picks up Location); Caddy and Traefik pass any
# other answer of the gate, a 302 included, straight back to the browser.
PROXIES = tuple(PROXY_FILES)


class ProtectedApp(BaseModel):
    """Another web tool of the practice that its reverse proxy lets through only when /gate/verify says so."""

    name = CharField(max_length=100, unique=True)
    host = CharField(max_length=262, unique=True)  # core.gate.Host as text: lower-case name, ":port" when not default
    proxy = CharField(max_length=10, default="nginx")  # one of PROXIES: the snippet shown, and 401 or 302
    all_roles = BooleanField(default=True)  # False: only the roles in ProtectedAppRole
    created_by = ForeignKeyField(User, null=True, backref="+", on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)


class ProtectedAppPractice(BaseModel):
    """A practice an app belongs to: its people use the app under that practice's rules."""

    app = ForeignKeyField(ProtectedApp, backref="practices", on_delete="CASCADE")
    practice = ForeignKeyField(Practice, backref="+", on_delete="CASCADE")

    class Meta:
        indexes = ((("app", "practice"), True), (("practice", "app"), False))


class ProtectedAppRole(BaseModel):
    """A role that may use an app whose all_roles is off."""

    app = ForeignKeyField(ProtectedApp, backref="roles", on_delete="CASCADE")
    role = ForeignKeyField(Role, backref="+", on_delete="CASCADE")

    class Meta:
        indexes = ((("app", "role"), True),)


class GateCount(BaseModel):
    """How many requests the gate answered for an app in one hour (UTC): each process counts in memory and adds
    its counts every few seconds (domain.gate.GateState.flush), so an allowed request writes no row of its own."""

    app = ForeignKeyField(ProtectedApp, backref="+", on_delete="CASCADE")
    hour = DateTimeField()  # the hour's start
    allowed = BigIntegerField(default=0)  # let through (200)
    refused = BigIntegerField(default=0)  # sent to sign in (401) or refused (403)

    class Meta:
        indexes = ((("app", "hour"), True),)


MODELS = [
    Practice, Role, User, SignIn, Membership, AllowlistEntry, IPRestriction, RestrictedRole, RestrictedUser,
    AccessRequest, Grant, AuditEvent, RateLimitHit, SchemaVersion, TimeRule, TimeRuleRole, TimeRuleUser, TimeWindow,
    OutboxMail,
    Invite,
    DeploymentSetting,
    ProtectedApp, ProtectedAppPractice, ProtectedAppRole,
    GateCount,
]


def seed_roles() -> None:
    """Add any seeded role that is missing; roles already there are left as they are."""
    for position, (name, is_admin) in enumerate(ROLES):
        Role.get_or_create(name=name, defaults={"is_security_admin": is_admin, "position": position})

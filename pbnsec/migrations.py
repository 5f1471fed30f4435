"""Schema migrations: the database records its schema version and upgrade() brings it to the latest.

Each migration is a function numbered by its place in MIGRATIONS. Databases made before versions were recorded
(pbnsec 0.1 and 0.2) can be in any state their releases left them in, so every migration checks what is already
there before it changes anything; an unversioned database then runs them all from version 0.
A migration never reads today's models: it describes the tables as they were when it was written.
"""
from __future__ import annotations

from peewee import (
    SQL,
    BigIntegerField,
    SqliteDatabase,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)
from playhouse.migrate import SchemaMigrator

from pbnsec import __version__
from pbnsec.config import ConfigError, default_time_zone
from pbnsec.db import change_lock, database
from pbnsec.models import MODELS, ROLES, Role, SchemaVersion, seed_roles, utcnow


class SchemaError(ConfigError):
    """The database cannot be used by this code: its schema is newer, or it is not a pbnsec database."""


# The tables of the first release: an unversioned database holding some of them is an old pbnsec database.
FIRST_RELEASE_TABLES = frozenset({
    "practice", "role", "user", "membership", "allowlist_entry", "ip_restriction", "restricted_role",
    "restricted_user", "access_request", "grant", "audit_event", "rate_limit_hit",
})


def _columns(table: str) -> set[str]:
    return {column.name for column in database.get_columns(table)}


def _indexes(table: str) -> set[str]:
    return {index.name for index in database.get_indexes(table)}


def index_rate_limit_hits_by_time(migrator: SchemaMigrator) -> None:
    """rate_limit_hit.at is indexed so old hits are pruned without a scan."""
    if "rate_limit_hit_at" not in _indexes("rate_limit_hit"):
        migrator.add_index("rate_limit_hit", ("at",), name="rate_limit_hit_at").run()


def add_must_change_password(migrator: SchemaMigrator) -> None:
    """user.must_change_password: a console password must be replaced at first sign-in."""
    if "must_change_password" not in _columns("user"):
        # NOT NULL with a database default in one ALTER: SQLite before 3.53 could only add NOT NULL later by
        # rebuilding the user table, and rebuilding a table other tables cascade from is not safe in a transaction.
        field = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])
        migrator.alter_add_column("user", "must_change_password", field, allow_not_null=True).run()


def index_allowlist_by_scope_and_start(migrator: SchemaMigrator) -> None:
    """allowlist_entry is looked up by (scope, start); the index on start alone goes."""
    indexes = _indexes("allowlist_entry")
    if "allowlist_entry_start" in indexes:
        migrator.drop_index("allowlist_entry", "allowlist_entry_start").run()
    if "allowlist_entry_scope_start" not in indexes:
        migrator.add_index("allowlist_entry", ("scope", "start"), name="allowlist_entry_scope_start").run()


class _UserAt4(Model):
    class Meta:
        database = database
        table_name = "user"
        legacy_table_names = False  # index names start with the table name, as the models' do


class _SignInAt4(Model):
    token = CharField(max_length=64, unique=True)
    user = ForeignKeyField(_UserAt4, backref="+", on_delete="CASCADE")
    pending = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(index=True)

    class Meta:
        database = database
        table_name = "sign_in"
        legacy_table_names = False


def add_sign_ins(migrator: SchemaMigrator) -> None:
    """sign_in table (server-side sign-ins); user.session_version, which it replaced, goes."""
    if not database.table_exists("sign_in"):
        database.create_tables([_SignInAt4])
    if "session_version" in _columns("user"):
        # It is NOT NULL without a database default, so while it stays no user can be created.
        migrator.drop_column("user", "session_version").run()


def rename_pending_sign_ins_to_blocked(migrator: SchemaMigrator) -> None:
    """sign_in.pending is called blocked (pending belongs to access requests)."""
    columns = _columns("sign_in")
    if "pending" in columns and "blocked" not in columns:
        migrator.rename_column("sign_in", "pending", "blocked").run()


def add_audit_event_repeats(migrator: SchemaMigrator) -> None:
    """audit_event.count and last_at: a repeated refusal is counted on one row; the lookup is indexed."""
    columns = _columns("audit_event")
    if "count" not in columns:
        # NOT NULL with a database default in one ALTER, as for must_change_password: every event already there
        # counts once, and a big audit table is not rebuilt.
        field = IntegerField(default=1, constraints=[SQL("DEFAULT 1")])
        migrator.alter_add_column("audit_event", "count", field, allow_not_null=True).run()
    if "last_at" not in columns:
        migrator.alter_add_column("audit_event", "last_at", DateTimeField(null=True)).run()
    if "audit_event_action_actor_label_actor_ip_at" not in _indexes("audit_event"):
        migrator.add_index("audit_event", ("action", "actor_label", "actor_ip", "at"),
                           name="audit_event_action_actor_label_actor_ip_at").run()


def add_expiry(migrator: SchemaMigrator) -> None:
    """grant.expires_at and allowlist_entry.expires_at (NULL: never expires); ip_restriction.default_duration."""
    for table in ("grant", "allowlist_entry"):
        if "expires_at" not in _columns(table):
            migrator.add_column(table, "expires_at", DateTimeField(null=True)).run()
    if "default_duration" not in _columns("ip_restriction"):
        # NOT NULL with a database default in one ALTER, as for must_change_password: every practice there keeps
        # approving until revoked, as it did.
        field = CharField(max_length=10, default="forever", constraints=[SQL("DEFAULT 'forever'")])
        migrator.alter_add_column("ip_restriction", "default_duration", field, allow_not_null=True).run()


def add_practice_time_zone(migrator: SchemaMigrator) -> None:
    """practice.time_zone (IANA name): existing practices get the server's zone, as new ones do."""
    if "time_zone" not in _columns("practice"):
        # NOT NULL with a database default in one ALTER, as for must_change_password. The name is a checked IANA
        # name (letters, digits, / _ - +), so it is safe inside the quotes.
        field = CharField(max_length=64, default="UTC", constraints=[SQL(f"DEFAULT '{default_time_zone()}'")])
        migrator.alter_add_column("practice", "time_zone", field, allow_not_null=True).run()


class _PracticeAt9(Model):
    class Meta:
        database = database
        table_name = "practice"
        legacy_table_names = False


class _RoleAt9(Model):
    class Meta:
        database = database
        table_name = "role"
        legacy_table_names = False


def _time_tables_at_9():
    """The Time Windows tables as migration 9 made them."""
    def meta(name, indexes=()):
        return type("Meta", (), {"database": database, "table_name": name, "legacy_table_names": False,
                                 "indexes": indexes})

    rule = type("_TimeRuleAt9", (Model,), {
        "practice": ForeignKeyField(_PracticeAt9, unique=True, backref="+", on_delete="CASCADE"),
        "enabled": BooleanField(default=False), "everyone": BooleanField(default=True),
        "updated_at": DateTimeField(default=utcnow), "Meta": meta("time_rule")})
    role = type("_TimeRuleRoleAt9", (Model,), {
        "practice": ForeignKeyField(_PracticeAt9, backref="+", on_delete="CASCADE"),
        "role": ForeignKeyField(_RoleAt9, backref="+", on_delete="CASCADE"),
        "Meta": meta("time_rule_role", ((("practice", "role"), True),))})
    user = type("_TimeRuleUserAt9", (Model,), {
        "practice": ForeignKeyField(_PracticeAt9, backref="+", on_delete="CASCADE"),
        "user": ForeignKeyField(_UserAt4, backref="+", on_delete="CASCADE"),
        "Meta": meta("time_rule_user", ((("practice", "user"), True),))})
    window = type("_TimeWindowAt9", (Model,), {
        "practice": ForeignKeyField(_PracticeAt9, backref="+", on_delete="CASCADE"),
        "day": IntegerField(), "start_minute": IntegerField(), "end_minute": IntegerField(),
        "Meta": meta("time_window", ((("practice", "day", "start_minute", "end_minute"), True),))})
    return [rule, role, user, window]


def add_time_windows(migrator: SchemaMigrator) -> None:
    """time_rule, time_rule_role, time_rule_user and time_window: a practice's Time Windows (off until switched on)."""
    database.create_tables(_time_tables_at_9())  # safe: only the missing ones


class _AccessRequestAt11(Model):
    class Meta:
        database = database
        table_name = "access_request"
        legacy_table_names = False


def _outbox_at_11():
    """The outbox_mail table as migration 11 made it."""
    queued, waiting = "queued", "requests_waiting"

    class _OutboxMailAt11(Model):
        kind = CharField(max_length=20)
        recipient = ForeignKeyField(_UserAt4, backref="+", on_delete="CASCADE")
        request = ForeignKeyField(_AccessRequestAt11, null=True, backref="+", on_delete="CASCADE")
        status = CharField(max_length=10, default=queued)
        created_at = DateTimeField(default=utcnow)
        send_after = DateTimeField()
        attempts = IntegerField(default=0)
        claimed_by = CharField(max_length=64, default="")
        claimed_until = DateTimeField(null=True)
        last_attempt_at = DateTimeField(null=True)
        last_error = TextField(default="")
        sent_at = DateTimeField(null=True)
        to_address = CharField(max_length=254, default="")
        subject = CharField(max_length=300, default="")

        class Meta:
            database = database
            table_name = "outbox_mail"
            legacy_table_names = False
            indexes = ((("status", "send_after"), False),)

    _OutboxMailAt11.add_index(
        _OutboxMailAt11.index(_OutboxMailAt11.recipient, _OutboxMailAt11.kind, unique=True)
        .where((_OutboxMailAt11.status == queued) & (_OutboxMailAt11.kind == waiting)))
    return _OutboxMailAt11


def add_outbox(migrator: SchemaMigrator) -> None:
    """outbox_mail: notification mails, written with the event that causes them and sent after it commits."""
    database.create_tables([_outbox_at_11()])  # safe: only when missing


def add_reasons_contacts_and_blocked_sign_in_binding(migrator: SchemaMigrator) -> None:
    """access_request.reason, ip_restriction.show_admin_emails, and sign_in.ip and password_stamp: rejections
    carry a reason, the blocked page names administrators, a blocked sign-in is bound to its IP and password."""
    if "reason" not in _columns("access_request"):
        # NOT NULL with a database default in one ALTER, as for must_change_password: no request had a reason.
        field = TextField(default="", constraints=[SQL("DEFAULT ''")])
        migrator.alter_add_column("access_request", "reason", field, allow_not_null=True).run()
    if "show_admin_emails" not in _columns("ip_restriction"):
        field = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])
        migrator.alter_add_column("ip_restriction", "show_admin_emails", field, allow_not_null=True).run()
    columns = _columns("sign_in")
    # NULL in the blocked sign-ins already there: they are no longer valid, and their users sign in again.
    for name in ("ip", "password_stamp"):
        if name not in columns:
            migrator.add_column("sign_in", name, CharField(max_length=64, null=True)).run()


def _invite_at_10():
    """The invite table as migration 10 made it."""
    return type("_InviteAt10", (Model,), {
        "token_hash": CharField(max_length=64, unique=True),
        "user": ForeignKeyField(_UserAt4, backref="+", on_delete="CASCADE"),
        "created_by": ForeignKeyField(_UserAt4, null=True, backref="+", on_delete="SET NULL"),
        "created_at": DateTimeField(default=utcnow), "expires_at": DateTimeField(),
        "used_at": DateTimeField(null=True),
        "Meta": type("Meta", (), {"database": database, "table_name": "invite", "legacy_table_names": False}),
    })


def add_invites(migrator: SchemaMigrator) -> None:
    """invite: links (72 h) that let a person set their password once."""
    database.create_tables([_invite_at_10()])  # safe: only when missing
def add_deployment_settings(migrator: SchemaMigrator) -> None:
    """deployment_setting: what every instance on the database must share (the secret key's fingerprint)."""
    meta = type("Meta", (), {"database": database, "table_name": "deployment_setting", "legacy_table_names": False})
    table = type("_DeploymentSettingAt13", (Model,), {
        "name": CharField(max_length=50, primary_key=True), "value": CharField(max_length=200), "Meta": meta})
    database.create_tables([table])  # safe: only when missing


# What each practice's compiled policy is made of, beside the practice row itself: a trigger on every one of these
# tables raises practice.policy_generation of the practices a written row belongs to, in the same transaction, so
# no write (by the app, the command line or by hand) can leave a process deciding on a policy compiled before it.
# Grants and access requests are not in a policy (a visit reads its user's own), so approving recompiles nothing;
# memberships and users are read per visit too, and raise it anyway: they are rare and about who the rules reach.
# (table, how a row names its practices: "practice" its practice_id, "scope" an allowlist entry's scope (0 = every
# practice), "user" every practice the user is a member of; columns whose change matters, None: any.)
POLICY_TABLES = (
    ("allowlist_entry", "scope", None),
    ("ip_restriction", "practice", None),
    ("restricted_role", "practice", None),
    ("restricted_user", "practice", None),
    ("time_rule", "practice", None),
    ("time_rule_role", "practice", None),
    ("time_rule_user", "practice", None),
    ("time_window", "practice", None),
    ("membership", "practice", None),
    ("user", "user", ("active", "role_id")),
)


def _bumped(kind: str, row: str) -> str:
    """The practices a row (NEW or OLD) reaches, as a WHERE condition on practice."""
    if kind == "scope":
        return f"({row}.scope = 0 OR id = {row}.scope)"
    if kind == "user":
        return f"id IN (SELECT practice_id FROM membership WHERE user_id = {row}.id)"
    return f"id = {row}.practice_id"


# Raised to the time in microseconds (or by one, if that is not more): a database restored from a backup, or made
# again, never hands a process a generation it compiled a different state at.
_SQLITE_NOW_US = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
_POSTGRESQL_NOW_US = "(extract(epoch from clock_timestamp()) * 1000000)::bigint"


def _bump(sqlite: bool) -> str:
    raised = (f"MAX(policy_generation + 1, {_SQLITE_NOW_US})" if sqlite else
              f"GREATEST(policy_generation + 1, {_POSTGRESQL_NOW_US})")
    return f"UPDATE practice SET policy_generation = {raised} WHERE "


def install_policy_triggers() -> None:
    """(Re)create the triggers that raise practice.policy_generation (see POLICY_TABLES); safe to run again."""
    if isinstance(database.obj, SqliteDatabase):
        bump = _bump(sqlite=True)
        for table, kind, columns in POLICY_TABLES:
            for op, rows in (("INSERT", ("NEW",)), ("UPDATE", ("OLD", "NEW")), ("DELETE", ("OLD",))):
                if columns is not None and op != "UPDATE":
                    continue  # a user without memberships reaches no practice; memberships have their own trigger
                when = (" WHEN " + " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in columns)) if columns else ""
                body = " ".join(f"{bump}{_bumped(kind, row)};" for row in rows)
                name = f"policy_generation_{table}_{op.lower()}"
                database.execute_sql(f'DROP TRIGGER IF EXISTS "{name}"')
                database.execute_sql(f'CREATE TRIGGER "{name}" AFTER {op} ON "{table}" FOR EACH ROW{when} '
                                     f"BEGIN {body} END")
        return
    branches, bump = [], _bump(sqlite=False)
    for table, kind, columns in POLICY_TABLES:
        steps = (f"IF TG_OP <> 'DELETE' THEN {bump}{_bumped(kind, 'NEW')}; END IF; "
                 f"IF TG_OP <> 'INSERT' THEN {bump}{_bumped(kind, 'OLD')}; END IF;")
        if columns is not None:
            changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in columns)
            steps = f"IF TG_OP = 'UPDATE' AND ({changed}) THEN {bump}{_bumped(kind, 'NEW')}; END IF;"
        branches.append(f"IF TG_TABLE_NAME = '{table}' THEN {steps} END IF;")
    database.execute_sql("CREATE OR REPLACE FUNCTION pbnsec_policy_generation() RETURNS trigger AS $$ BEGIN "
                         + " ".join(branches) + " RETURN NULL; END $$ LANGUAGE plpgsql")
    for table, _, columns in POLICY_TABLES:
        name = f"policy_generation_{table}"
        ops = "UPDATE" if columns is not None else "INSERT OR UPDATE OR DELETE"
        database.execute_sql(f'DROP TRIGGER IF EXISTS "{name}" ON "{table}"')
        database.execute_sql(f'CREATE TRIGGER "{name}" AFTER {ops} ON "{table}" FOR EACH ROW '
                             "EXECUTE PROCEDURE pbnsec_policy_generation()")


def add_policy_generations(migrator: SchemaMigrator) -> None:
    """practice.policy_generation, raised by triggers on every write access decisions depend on (cached policies)."""
    if "policy_generation" not in _columns("practice"):
        field = BigIntegerField(default=0, constraints=[SQL("DEFAULT 0")])
        migrator.alter_add_column("practice", "policy_generation", field, allow_not_null=True).run()
    install_policy_triggers()


# (table, columns) of the indexes migration 14 adds, with the names the models give them.
LIST_INDEXES_AT_14 = (
    ("audit_event", ("practice_id", "at", "id")),
    ("audit_event", ("practice_id", "action", "at", "id")),
    ("access_request", ("practice_id", "status", "created_at", "id")),
    ("access_request", ("practice_id", "decided_at", "id")),
    ("allowlist_entry", ("scope", "added_at", "id")),
)


def index_lists_for_paging(migrator: SchemaMigrator) -> None:
    """Indexes for paging the audit log, the access requests and the allowlist by practice and time."""
    for table, columns in LIST_INDEXES_AT_14:
        name = f"{table}_{'_'.join(columns)}"
        if name not in _indexes(table):
            migrator.add_index(table, columns, name=name).run()


def _protected_apps_at_16():
    """The protected app tables as migration 16 made them."""
    def meta(name, indexes=()):
        return type("Meta", (), {"database": database, "table_name": name, "legacy_table_names": False,
                                 "indexes": indexes})
    app = type("_ProtectedAppAt16", (Model,), {
        "name": CharField(max_length=100, unique=True), "host": CharField(max_length=262, unique=True),
        "proxy": CharField(max_length=10, default="nginx"), "all_roles": BooleanField(default=True),
        "created_by": ForeignKeyField(_UserAt4, null=True, backref="+", on_delete="SET NULL"),
        "created_at": DateTimeField(default=utcnow), "updated_at": DateTimeField(default=utcnow),
        "Meta": meta("protected_app")})
    practice = type("_ProtectedAppPracticeAt16", (Model,), {
        "app": ForeignKeyField(app, backref="+", on_delete="CASCADE"),
        "practice": ForeignKeyField(_PracticeAt9, backref="+", on_delete="CASCADE"),
        "Meta": meta("protected_app_practice", ((("app", "practice"), True), (("practice", "app"), False)))})
    role = type("_ProtectedAppRoleAt16", (Model,), {
        "app": ForeignKeyField(app, backref="+", on_delete="CASCADE"),
        "role": ForeignKeyField(_RoleAt9, backref="+", on_delete="CASCADE"),
        "Meta": meta("protected_app_role", ((("app", "role"), True),))})
    return [app, practice, role]


def add_protected_apps(migrator: SchemaMigrator) -> None:
    """protected_app (+ its practices and roles): other web tools the gate (/gate/verify) lets people into."""
    database.create_tables(_protected_apps_at_16())  # safe: only when missing


# The indexes migration 18 adds (with the names the model gives them), and the events whose target names the IP
# they are about ("hal@example.com from 203.0.113.7"), as the releases before it wrote them.
AUDIT_IP_INDEXES_AT_18 = (("practice_id", "actor_ip", "at", "id"), ("practice_id", "subject_ip", "at", "id"))
ABOUT_AN_IP_AT_18 = ("request_approved", "request_rejected", "grant_revoked")


def index_audit_events_by_ip(migrator: SchemaMigrator) -> None:
    """audit_event.subject_ip (the IP a decision is about) and indexes for the audit log's IP filter."""
    from pbnsec.core.iprules import client_address

    if "subject_ip" not in _columns("audit_event"):
        field = CharField(max_length=64, default="", constraints=[SQL("DEFAULT ''")])
        migrator.alter_add_column("audit_event", "subject_ip", field, allow_not_null=True).run()
    for columns in AUDIT_IP_INDEXES_AT_18:
        name = f"audit_event_{'_'.join(columns)}"
        if name not in _indexes("audit_event"):
            migrator.add_index("audit_event", columns, name=name).run()
    # The decisions already logged: their IP from their target (found along the index on action).
    found = (_AuditEventAt18.select(_AuditEventAt18.id, _AuditEventAt18.target)
             .where(_AuditEventAt18.action.in_(ABOUT_AN_IP_AT_18) & (_AuditEventAt18.subject_ip == "")).tuples())
    for event_id, target in list(found):
        ip = client_address(target.rpartition(" from ")[2])
        if ip is not None:
            _AuditEventAt18.update(subject_ip=str(ip)).where(_AuditEventAt18.id == event_id).execute()


class _AuditEventAt18(Model):
    """The audit_event columns migration 18 reads and writes."""

    action = CharField(max_length=50)
    target = CharField(max_length=300)
    subject_ip = CharField(max_length=64)

    class Meta:
        database = database
        table_name = "audit_event"
        legacy_table_names = False


def _gate_count_at_19():
    """gate_count as migration 19 made it."""
    app = type("_ProtectedAppAt19", (Model,), {"Meta": type("Meta", (), {
        "database": database, "table_name": "protected_app", "legacy_table_names": False})})
    return type("_GateCountAt19", (Model,), {
        "app": ForeignKeyField(app, backref="+", on_delete="CASCADE"), "hour": DateTimeField(),
        "allowed": BigIntegerField(default=0), "refused": BigIntegerField(default=0),
        "Meta": type("Meta", (), {"database": database, "table_name": "gate_count", "legacy_table_names": False,
                                  "indexes": ((("app", "hour"), True),)})})


def add_gate_counts(migrator: SchemaMigrator) -> None:
    """gate_count: requests the gate allowed and refused, per protected app and hour."""
    database.create_tables([_gate_count_at_19()])  # safe: only when missing


def index_allowlist_by_prefix_length(migrator: SchemaMigrator) -> None:
    """allowlist_entry is counted per scope and prefix length along an index, so adding one entry to a list of
    thousands need not read them all."""
    if "allowlist_entry_scope_prefix_length_start" not in _indexes("allowlist_entry"):
        migrator.add_index("allowlist_entry", ("scope", "prefix_length", "start"),
                           name="allowlist_entry_scope_prefix_length_start").run()


MIGRATIONS = [
    index_rate_limit_hits_by_time,
    add_must_change_password,
    index_allowlist_by_scope_and_start,
    add_sign_ins,
    rename_pending_sign_ins_to_blocked,
    add_audit_event_repeats,
    add_expiry,
    add_practice_time_zone,
    add_time_windows,
    add_invites,  # 10
    add_outbox,  # 11
    add_reasons_contacts_and_blocked_sign_in_binding,  # 12
    add_deployment_settings,  # 13
    index_lists_for_paging,  # 14
    add_policy_generations,  # 15
    add_protected_apps,  # 16
    index_allowlist_by_prefix_length,  # 17
    index_audit_events_by_ip,  # 18
    add_gate_counts,  # 19
]
LATEST = len(MIGRATIONS)


def _describe(number: int) -> str:
    return MIGRATIONS[number - 1].__doc__


def schema_version() -> int | None:
    """The schema version the database records (None for a database from before versions were recorded)."""
    if not SchemaVersion.table_exists():
        return None
    return SchemaVersion.select(SchemaVersion.version).order_by(SchemaVersion.version.desc()).scalar() or 0


def _refuse_if_newer(version: int) -> None:
    if version > LATEST:
        raise SchemaError(
            f"The database is at schema version {version}, newer than this pbnsec knows ({LATEST}): "
            f"run the release that upgraded it, or restore a backup made before that upgrade (this is pbnsec "
            f"{__version__}).")


def _roles_seeded() -> bool:
    names = {name for (name,) in Role.select(Role.name).tuples()}
    return all(name in names for name, _ in ROLES)


def upgrade() -> list[str]:
    """Bring the database to the latest schema, creating it when empty; returns what was done (usually nothing).

    Runs under the write lock, so instances starting together on one database take turns and the later ones
    find nothing to do.
    """
    version = schema_version()
    if version is not None:
        _refuse_if_newer(version)
        if version == LATEST and _roles_seeded():
            return []  # the start of every process: three reads, no lock
    done = []
    with change_lock():
        tables = set(database.get_tables())
        if SchemaVersion._meta.table_name in tables:
            version = schema_version()
            _refuse_if_newer(version)
        elif tables & FIRST_RELEASE_TABLES:
            missing = FIRST_RELEASE_TABLES - tables
            if missing:
                raise SchemaError(
                    "The database is not a pbnsec database, or a damaged one: it has some of pbnsec's tables "
                    f"but not {', '.join(sorted(missing))}.")
            version = 0
            database.create_tables([SchemaVersion])
        else:
            database.create_tables(MODELS)
            install_policy_triggers()
            SchemaVersion.create(version=LATEST, name="The tables were created at this version.")
            version = LATEST  # a new database: nothing was upgraded, so nothing to report

        migrator = SchemaMigrator.from_database(database)
        for number in range(version + 1, LATEST + 1):
            MIGRATIONS[number - 1](migrator)
            SchemaVersion.create(version=number, name=_describe(number))
            done.append(f"version {number}: {_describe(number)}")
        seed_roles()
    return done

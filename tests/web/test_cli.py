"""The command line: practices and users for self-hosters and scripted set-up."""
import pytest
from conftest import make_app

from pbnsec.models import AuditEvent, Membership, Practice, User

HIDDEN = ["\x00", "\x1b", "\u202e"]  # NUL, ESC, a right-to-left override
USER = ["users", "create", "--email", "x@example.com", "--name", "X", "--role", "Admin",
        "--practice", "Riverside Dental"]


def _with(args, option, value):
    """USER-like args with one option's value replaced."""
    args = list(args)
    args[args.index(option) + 1] = value
    return args


def test_init_db_creates_the_owner_once_and_shows_the_password_once(tmp_path):
    app = make_app(tmp_path, OWNER_EMAIL="boss@example.com", FIRST_PRACTICE="Riverside Dental")
    runner = app.test_cli_runner()
    first = runner.invoke(args=["init-db"])
    assert first.exit_code == 0
    assert "Email:    boss@example.com" in first.output
    password = first.output.split("Password: ")[1].split()[0]
    assert len(password) >= 16
    second = runner.invoke(args=["init-db"])
    assert second.exit_code == 0 and "Password" not in second.output
    from conftest import Visitor
    v = Visitor(app)
    assert v.login("boss@example.com", password).headers["Location"] == "/account/password"
    assert v.get("/").headers["Location"] == "/account/password"  # nothing else until it is replaced
    assert v.post("/account/password", {"current": password, "new": "a brand new passphrase",
                                        "repeat": "a brand new passphrase"}).status_code == 303
    assert "<h1>Riverside Dental</h1>" in v.get("/").text


def test_create_practice_and_user(runner, app):
    result = runner.invoke(args=["practices", "create", "Hillside Dental"])
    assert result.exit_code == 0 and "Created practice 'Hillside Dental'" in result.output
    result = runner.invoke(args=["users", "create", "--email", "New@Example.com", "--name", "Nia New",
                                 "--role", "Office Manager", "--practice", "Hillside Dental",
                                 "--practice", "Riverside Dental"])
    assert result.exit_code == 0, result.output
    assert "Password (shown once): " in result.output
    with app.app_context():
        user = User.get(User.email == "new@example.com")
        assert user.role.name == "Office Manager"
        assert sorted(p.name for p in user.practices()) == ["Hillside Dental", "Riverside Dental"]
        assert AuditEvent.select().where(AuditEvent.action == "user_created").count() == 1


@pytest.mark.parametrize("args,reason", [
    (["practices", "create", "Riverside Dental"], "A practice named 'Riverside Dental' already exists."),
    (["practices", "create", "  "], "Enter a practice name."),
    (["users", "create", "--email", "x@example.com", "--name", "X", "--role", "Boss", "--practice", "Riverside Dental"],
     "No role named 'Boss'"),
    (["users", "create", "--email", "x@example.com", "--name", "X", "--role", "Admin", "--practice", "Nowhere"],
     "No practice named 'Nowhere'"),
    (["users", "create", "--email", "ann@example.com", "--name", "X", "--role", "Admin", "--practice", "Riverside Dental"],
     "A user with the email 'ann@example.com' already exists."),
    (["users", "create", "--email", "x@example.com", "--name", "X", "--role", "Admin", "--practice", "Riverside Dental",
      "--password", "short"], "at least 12 characters"),
    (["users", "create", "--email", "x@example.com", "--name", "X", "--role", "Admin", "--practice", "Riverside Dental",
      "--password", "aaaaaaaaaaaaaaaa"], "too easy to guess"),
    (["users", "create", "--email", "not-an-email", "--name", "X", "--role", "Admin", "--practice", "Riverside Dental"],
     "is not an email address"),
    *[(["practices", "create", f"Hill{c}side"], "A practice name cannot contain control characters.") for c in HIDDEN],
    *[(_with(USER, "--name", f"Nia{c}"), "A name cannot contain control characters.") for c in HIDDEN],
    *[(_with(USER, "--email", f"x{c}@example.com"), "The email address contains a control character.")
      for c in HIDDEN],
    *[(_with(USER, "--role", f"Admin{c}"), "A role name cannot contain control characters.") for c in HIDDEN],
    *[(_with(USER, "--practice", f"Riverside{c} Dental"), "A practice name cannot contain control characters.")
      for c in HIDDEN],
    *[(USER + ["--password", f"a long enough{c} passphrase"], "The password contains a control character.")
      for c in HIDDEN],
    *[(["security", "unlock", "--practice", f"Riverside{c} Dental"],
       "A practice name cannot contain control characters.") for c in HIDDEN],
])
def test_bad_arguments_exit_non_zero_with_a_one_line_reason_and_change_nothing(runner, app, args, reason):
    with app.app_context():
        before = (User.select().count(), Membership.select().count(), Practice.select().count(),
                  AuditEvent.select().count())
    result = runner.invoke(args=args)
    assert result.exit_code != 0
    assert reason in result.output
    assert len(result.output.strip().splitlines()) == 1
    with app.app_context():
        assert (User.select().count(), Membership.select().count(), Practice.select().count(),
                AuditEvent.select().count()) == before


def test_demo_says_loudly_that_it_allowlists_this_machine(runner, app):
    result = runner.invoke(args=["demo", "--force"])
    assert result.exit_code == 0, result.output
    assert "WARNING: the demo allowlists 127.0.0.0/8 (this machine) for All practices" in result.output
    assert "EVERYONE looks like 127.0.0.1" in result.output


def test_demo_refuses_a_database_in_use(runner, app):
    # The seeded database has people of its own: no demo people with a published password unless forced.
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 1
    assert "This database is in use" in result.output and "sqlite:///instance/demo.db" in result.output
    from pbnsec.models import User
    with app.app_context():
        assert not User.select().where(User.email == "admin@riverside.example").exists()
    result = runner.invoke(args=["demo", "--force"])
    assert result.exit_code == 0
    with app.app_context():
        from pbnsec.models import AuditEvent
        assert AuditEvent.select().where(AuditEvent.action == "demo_loaded").exists()

"""Starting the app: a mistake in a setting, an unusable database or a taken port is one line and a non-zero exit."""
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import make_app
from realworld import SECRET, app_server, free_port, wait_for_port

from pbnsec.config import ConfigError
from pbnsec.db import DatabaseUnavailable

ROOT = Path(__file__).resolve().parents[2]


def flask(tmp_path, *args, **settings) -> subprocess.CompletedProcess:
    """Run `flask --app app …` as a self-hoster would, with these PBNSEC_* settings on a fresh database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBNSEC_")}
    env.update(PBNSEC_DATABASE_URL=f"sqlite:///{tmp_path}/pbnsec.db", PBNSEC_SECRET_KEY=SECRET,
               PBNSEC_PORT=str(free_port()))
    if "PBNSEC_PORT" not in settings:  # a free gate port too: the one after a free port may be another test's
        env["PBNSEC_GATE_PORT"] = str(free_port())
    env.update(settings)
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def assert_one_line(result, *expected):
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pbnsec: ")
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_a_taken_port_is_named_with_the_fix(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = flask(tmp_path, "serve", PBNSEC_PORT=str(port))
    line = assert_one_line(result)
    assert line == (f"pbnsec: cannot listen on 127.0.0.1:{port}: the port is already in use. "
                    "Stop the other program or set PBNSEC_PORT.")


def test_a_taken_gate_port_is_named_with_the_fix_and_nothing_is_left_serving(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        main = free_port()
        result = flask(tmp_path, "serve", PBNSEC_PORT=str(main), PBNSEC_GATE_PORT=str(port))
    line = assert_one_line(result)
    assert line == (f"pbnsec: cannot listen on 127.0.0.1:{port} for the gate (PBNSEC_GATE_PORT): the port is already "
                    "in use. Stop the other program or set PBNSEC_GATE_PORT (another port, or off).")
    assert "serving" not in result.stdout  # said only once both ports are pbnsec's


def test_a_host_name_that_does_not_resolve_is_named(tmp_path):
    assert_one_line(flask(tmp_path, "serve", PBNSEC_HOST="no-such-host.invalid"),
                    "cannot listen on no-such-host.invalid:", "Set PBNSEC_HOST")


@pytest.mark.parametrize("settings,expected", [
    ({"PBNSEC_PORT": "abc"}, ["PBNSEC_PORT must be a port number from 1 to 65535, got 'abc'"]),
    ({"PBNSEC_SECRET_KEY": "short"}, ["PBNSEC_SECRET_KEY must be at least 32 characters long"]),
    ({"PBNSEC_GATE_PORT": "abc"}, ["PBNSEC_GATE_PORT must be a port number from 1 to 65535, or off, got 'abc'"]),
    ({"PBNSEC_GATE_PORT": "0"}, ["PBNSEC_GATE_PORT must be a port number from 1 to 65535, or off, got '0'"]),
    ({"PBNSEC_GATE_PORT": "70000"}, ["PBNSEC_GATE_PORT must be a port number from 1 to 65535, or off, got '70000'"]),
    ({"PBNSEC_PORT": "8123", "PBNSEC_GATE_PORT": "8123"}, ["PBNSEC_GATE_PORT must differ from PBNSEC_PORT (8123)"]),
    ({"PBNSEC_PORT": "65535"}, ["PBNSEC_GATE_PORT must be set when PBNSEC_PORT is 65535"]),
    ({"PBNSEC_TRUSTED_PROXIES": "two"}, ["PBNSEC_TRUSTED_PROXIES"]),
    ({"PBNSEC_LOG_LEVEL": "loud"}, ["PBNSEC_LOG_LEVEL must be one of"]),
    ({"PBNSEC_DATABASE_URL": "sqlite:////proc/nope/x.db"}, ["/proc/nope", "PBNSEC_DATABASE_URL"]),
    ({"PBNSEC_DATABASE_URL": "mysterydb://somewhere/pbnsec"}, ["PBNSEC_DATABASE_URL", "mysterydb"]),
    ({"PBNSEC_OWNER_EMAIL": "not-an-email"}, ["PBNSEC_OWNER_EMAIL", "'not-an-email' is not an email address."]),
    ({"PBNSEC_SMTP_URL": "smtp://pbnsec:hunter2@mail.example.org:70000", "PBNSEC_MAIL_FROM": "pbnsec@example.org"},
     ["PBNSEC_SMTP_URL has a port that is not a number from 1 to 65535"]),
    ({"PBNSEC_SMTP_URL": "smtp://127.0.0.1:2525"}, ["PBNSEC_MAIL_FROM must be set when PBNSEC_SMTP_URL is"]),
])
def test_a_bad_setting_is_one_line_naming_it(tmp_path, settings, expected):
    assert_one_line(flask(tmp_path, "serve", **settings), *expected)


def test_a_database_path_that_cannot_be_opened_is_named(tmp_path):
    (tmp_path / "taken").mkdir()  # a folder where the database file should be
    line = assert_one_line(flask(tmp_path, "serve", PBNSEC_DATABASE_URL=f"sqlite:///{tmp_path}/taken"))
    assert f"{tmp_path}/taken" in line and "PBNSEC_DATABASE_URL" in line


def test_a_database_url_password_is_never_printed(tmp_path):
    url = "postgresql://pbnsec:hunter2secret@127.0.0.1:1/pbnsec"  # nothing listens on port 1
    line = assert_one_line(flask(tmp_path, "init-db", PBNSEC_DATABASE_URL=url), "PBNSEC_DATABASE_URL")
    assert "hunter2secret" not in line and "127.0.0.1:1" in line


def test_every_command_gets_the_same_one_line(tmp_path):
    assert_one_line(flask(tmp_path, "init-db", PBNSEC_PORT="abc"), "PBNSEC_PORT")
    assert_one_line(flask(tmp_path, "--help", PBNSEC_SECRET_KEY="short"), "PBNSEC_SECRET_KEY")


def test_outside_the_command_line_the_app_factory_raises_the_error_itself(tmp_path, monkeypatch):
    (tmp_path / "taken").mkdir()
    with pytest.raises(DatabaseUnavailable, match="cannot open the database file"):
        make_app(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/taken")
    monkeypatch.setenv("PBNSEC_PORT", "abc")
    with pytest.raises(ConfigError, match="PBNSEC_PORT"):
        make_app(tmp_path)


def test_a_good_start_logs_each_request_to_stderr(tmp_path, seeded_database):
    database = tmp_path / "pbnsec.db"
    shutil.copyfile(seeded_database, database)
    with app_server(tmp_path, database) as server:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz?probe=1", timeout=10) as response:
            assert response.read() == b"ok"
    stderr = server.output  # make run's stdout and stderr, as a terminal shows them
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO pbnsec\.access method=GET "
                     r'path="/healthz\?probe=1" status=200 bytes=2 ms=\S+ ip=127\.0\.0\.1$', stderr, re.M), stderr
    assert len(re.findall("pbnsec.access", stderr)) == 1


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_serve_answers_the_gate_on_its_own_port_and_nothing_else_there(tmp_path, seeded_database):
    database = tmp_path / "pbnsec.db"
    shutil.copyfile(seeded_database, database)
    gate = free_port()
    with app_server(tmp_path, database, PBNSEC_GATE_PORT=str(gate)) as server:
        wait_for_port(gate, server.process, server.log)
        status, body = get(f"http://127.0.0.1:{gate}/gate/verify")
        assert status == 403 and b"pbnsec cannot read the request" in body  # no original request described
        assert get(f"http://127.0.0.1:{gate}/login")[0] == 404
        assert get(f"http://127.0.0.1:{server.port}/login")[0] == 200
    assert f"pbnsec's gate (for the proxies of protected apps) answers on http://127.0.0.1:{gate}/gate/verify" \
        in server.output
    assert re.search(rf'pbnsec\.access method=GET path="/gate/verify" status=403 .* ip=127\.0\.0\.1$', server.output,
                     re.M), server.output


def test_with_the_gate_port_off_serve_answers_the_gate_on_its_main_port_only(tmp_path, seeded_database):
    database = tmp_path / "pbnsec.db"
    shutil.copyfile(seeded_database, database)
    with app_server(tmp_path, database, PBNSEC_GATE_PORT="off") as server:
        status, body = get(f"http://127.0.0.1:{server.port}/gate/verify")
        assert status == 403 and b"pbnsec cannot read the request" in body
        with socket.create_server(("127.0.0.1", server.port + 1)):
            pass  # the port after PBNSEC_PORT, where the gate listens by default, is not taken
    assert "pbnsec is serving on" in server.output and "pbnsec's gate" not in server.output


@pytest.mark.parametrize("command", [["version"], ["users", "create", "--email", "a@example.com", "--name", "A",
                                                    "--role", "Admin", "--practice", "Main Practice"]])
def test_a_mistyped_database_path_is_an_error_not_a_new_database(tmp_path, command):
    missing = tmp_path / "typo" / "pbnsec.db"
    line = assert_one_line(flask(tmp_path, *command, PBNSEC_DATABASE_URL=f"sqlite:///{missing}"),
                           f"there is no database at {missing}", "init-db")
    assert line.startswith("pbnsec: ")
    assert not missing.parent.exists()


def test_help_works_before_there_is_a_database(tmp_path):
    result = flask(tmp_path, "--help", PBNSEC_DATABASE_URL=f"sqlite:///{tmp_path}/none/pbnsec.db")
    assert result.returncode == 0 and "serve" in result.stdout
    assert not (tmp_path / "none").exists()


def test_make_demo_on_a_fresh_database_creates_it_and_loads_the_demo(tmp_path):
    result = flask(tmp_path, "demo")
    assert result.returncode == 0, result.stderr
    assert "Password: " in result.stdout and "Demo data loaded" in result.stdout

"""Several instances on one database share one secret key: a start with another key is refused in one line, and a
deliberate change is recorded with `security adopt-secret-key`."""
import pytest
from conftest import make_app
from realworld import SECRET, spawn_app, stop

from pbnsec.instances import SecretKeyMismatch, fingerprint
from pbnsec.models import AuditEvent, DeploymentSetting

KEY_A, KEY_B = "a" * 40, "b" * 40


def serving(tmp_path, key):
    return make_app(tmp_path, SECRET_KEY=key, BOOTSTRAP=True)  # as every server start does (make run, WSGI)


def test_the_first_start_records_the_key_and_a_start_with_another_is_refused(tmp_path):
    app = serving(tmp_path, KEY_A)
    with app.app_context():
        assert [(s.name, s.value) for s in DeploymentSetting.select()] == [("secret_key_fingerprint",
                                                                              fingerprint(KEY_A))]
    serving(tmp_path, KEY_A)  # the same key again: fine
    with pytest.raises(SecretKeyMismatch) as refused:
        serving(tmp_path, KEY_B)
    assert f"fingerprint {fingerprint(KEY_A)}, this instance's is {fingerprint(KEY_B)}" in str(refused.value)
    assert KEY_A not in str(refused.value) and KEY_B not in str(refused.value)


def test_make_run_with_another_key_stops_with_one_line(tmp_path):
    database = tmp_path / "pbnsec.db"
    serving(tmp_path, SECRET)  # the key realworld's servers use
    app = spawn_app(tmp_path, database, PBNSEC_SECRET_KEY=KEY_B)
    try:
        assert app.process.wait(timeout=60) != 0
    finally:
        stop(app.process)
    lines = [line for line in app.output.splitlines() if line.startswith("pbnsec:")]
    assert lines[-1].startswith("pbnsec: this database is served with another PBNSEC_SECRET_KEY")
    assert "Traceback" not in app.output


def test_adopt_secret_key_after_a_deliberate_change(tmp_path):
    serving(tmp_path, KEY_A)
    result = make_app(tmp_path, SECRET_KEY=KEY_B).test_cli_runner().invoke(args=["security", "adopt-secret-key"])
    assert result.exit_code == 0, result.output
    assert f"now uses this key (fingerprint {fingerprint(KEY_B)}; it was {fingerprint(KEY_A)})" in result.output
    app = serving(tmp_path, KEY_B)  # starts now
    with app.app_context():
        (event,) = AuditEvent.select().where(AuditEvent.action == "secret_key_adopted")
        assert (event.actor_label, event.detail) == ("cli", f"fingerprint {fingerprint(KEY_A)} -> {fingerprint(KEY_B)}")
    with pytest.raises(SecretKeyMismatch):
        serving(tmp_path, KEY_A)

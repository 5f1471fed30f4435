"""/healthz and /readyz for load balancers and monitors: plain words, no cookie, nothing else given away."""
import shutil

import pytest
from conftest import make_app, restrict

from pbnsec.web.hook import EXEMPT_ENDPOINTS

BLOCKED_IP = "127.0.0.2"


@pytest.mark.parametrize("url,body", [("/healthz", "ok"), ("/readyz", "ready")])
def test_health_answers_in_plain_words_without_a_cookie(client, url, body):
    response = client.get(url)
    assert (response.status_code, response.text, response.mimetype) == (200, body, "text/plain")
    assert "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert client.head(url).status_code == 200


@pytest.mark.parametrize("url", ["/healthz", "/readyz"])
def test_health_is_answered_whatever_the_ip_and_session(app, signed_in, url):
    restrict(app, "Riverside Dental", "127.0.0.1")
    v = signed_in("fay")
    v.ip = BLOCKED_IP  # a session that any other page would stop
    response = v.get(url)
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    assert v.get("/").headers["Location"] == "/login"  # the session itself is still stopped elsewhere
    assert {"health.healthz", "health.readyz"} <= EXEMPT_ENDPOINTS


def test_readyz_fails_when_the_database_is_gone_and_healthz_does_not(tmp_path):
    folder = tmp_path / "data"
    app = make_app(tmp_path, DATABASE_URL=f"sqlite:///{folder}/pbnsec.db")
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    shutil.rmtree(folder)  # the disk went away, or someone removed the folder
    response = client.get("/readyz")
    assert (response.status_code, response.text, response.mimetype) == (503, "database unavailable", "text/plain")
    assert "pbnsec.db" not in response.text and "sqlite" not in response.text.lower()
    healthy = client.get("/healthz")
    assert (healthy.status_code, healthy.text) == (200, "ok")

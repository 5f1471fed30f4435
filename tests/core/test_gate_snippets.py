"""The proxy snippets in deploy/gate/: what the Protected apps screen fills in, and what keeps the gate closed."""
import re
from pathlib import Path

import pytest

GATE = Path(__file__).resolve().parents[2] / "deploy" / "gate"
PLACEHOLDERS = {"app_host", "app_key", "app_server_name", "app_port", "app_scheme", "pbnsec_url",
                "pbnsec_upstream", "pbnsec_gate_address", "app_upstream"}
SNIPPETS = ["nginx.conf", "Caddyfile", "traefik.yml"]


@pytest.mark.parametrize("name", SNIPPETS)
def test_a_snippet_uses_only_the_placeholders_the_screen_fills_in(name):
    used = set(re.findall(r"\{\{\s*([^}]*?)\s*\}\}", (GATE / name).read_text()))
    assert used <= PLACEHOLDERS, used - PLACEHOLDERS
    assert {"app_host", "pbnsec_upstream", "app_upstream"} <= used


@pytest.mark.parametrize("name", SNIPPETS)
def test_a_snippet_passes_pbnsec_s_four_headers_and_only_pbnsec_s(name):
    text = (GATE / name).read_text()
    for header in ("X-Pbnsec-User", "X-Pbnsec-Name", "X-Pbnsec-Role", "X-Pbnsec-Practice"):
        assert header in text
    assert "/gate/verify" in text


def test_nginx_sets_every_pbnsec_header_toward_the_app_and_clears_the_other_description():
    text = (GATE / "nginx.conf").read_text()
    for name in ("User", "Name", "Role", "Practice"):
        # Set on every proxied request: a client's own header of that name never reaches the app.
        assert f"proxy_set_header X-Pbnsec-{name} $pbnsec_{name.lower()};" in text
        assert f"auth_request_set $pbnsec_{name.lower()} $upstream_http_x_pbnsec_{name.lower()};" in text
    for name in ("Host", "Uri", "Method", "Proto"):
        assert f'proxy_set_header X-Forwarded-{name} "";' in text
    assert "internal;" in text and "proxy_set_header Cookie $pbnsec_app_cookie;" in text

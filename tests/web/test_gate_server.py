"""The gate's own port (PBNSEC_GATE_PORT, web/gate_server.py), spoken to in raw bytes from loopback source addresses
as a reverse proxy speaks to it: the same answers as /gate/verify on the main port (waitress, started here too), the
same reading of a request's head, kept-alive and pipelined connections, no bodies, no other page, and its limits."""
from __future__ import annotations

import re
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import ip_network
from pathlib import Path

import pytest
from browser_support import _stop
from conftest import make_app, protect_app, restrict
from waitress import create_server

from pbnsec.web import gate_server
from pbnsec.web.gate_server import GateServer

BASE = "https://security.riverside.example"
CHARTS = "https://charts.riverside.example/patients?id=7"
NGINX = [("X-Original-URL", CHARTS), ("X-Original-Method", "GET")]
CADDY = [("X-Forwarded-Method", "GET"), ("X-Forwarded-Proto", "https"),
         ("X-Forwarded-Host", "charts.riverside.example"), ("X-Forwarded-Uri", "/patients?id=7")]
ELSEWHERE = "127.0.0.71"  # a loopback source address the practice's allowlist does not hold
WAIT_SECONDS = 10  # how long a client waits for an answer (or for the gate to let go) before the test fails


@dataclass
class Answer:
    version: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    @property
    def compared(self):
        """What a proxy acts on: the status, the headers but the server's own (Date, Server, Connection), the body."""
        own = ("date", "server", "connection")
        return self.status, sorted((k, v) for k, v in self.headers if k.lower() not in own), self.body


class Wire:
    """One client connection from a chosen loopback source address, reading answers off the socket as they come."""

    def __init__(self, port: int, source: str = "127.0.0.1", host: str = "127.0.0.1", rcvbuf: int | None = None):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(WAIT_SECONDS)
        self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def ask(self, data: bytes, head: bool = False) -> Answer:
        self.send(data)
        return self.answer(head)

    def answer(self, head: bool = False) -> Answer:
        status_line = self.file.readline()
        assert status_line, "the connection was closed without an answer"
        version, status, _ = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        headers = []
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
            headers.append((name, value.strip()))
        length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
        return Answer(version, int(status), headers, b"" if head else self.file.read(length))

    def closed(self) -> bool:
        """Whether the gate has closed the connection (nothing more to read); waits up to WAIT_SECONDS."""
        try:
            return self.file.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def request(path: str = "/gate/verify", headers=NGINX, method: str = "GET", version: str = "1.1",
            cookie: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: pbnsec.internal", *(f"{n}: {v}" for n, v in headers)]
    if cookie is not None:
        lines.append(f"Cookie: pbnsec_session={cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class Ports:
    gate: GateServer
    main: int  # waitress, as `flask --app app serve` runs it
    wires: list[Wire] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.gate.sockets[0].getsockname()[1]

    def wire(self, source: str = "127.0.0.1", port: int | None = None, **kwargs) -> Wire:
        """A connection to the gate's port (or `port`), closed when the test ends."""
        self.wires.append(Wire(port or self.port, source, **kwargs))
        return self.wires[-1]

    def both(self, data: bytes, source: str = "127.0.0.1", head: bool = False) -> tuple[Answer, Answer]:
        """The same bytes sent to the gate's port and to the main port, from the same address: both answers."""
        answers = []
        for port in (self.port, self.main):
            answers.append(self.wire(source, port).ask(data, head))
        return answers[0], answers[1]


@contextmanager
def serving(app, hosts=("127.0.0.1",)):
    """The app's gate port (on free loopback ports) and its main port, until the block ends."""
    gate = GateServer(app.extensions["pbnsec.gate_front"], list(hosts), 0)
    gate.start()
    main = create_server(app, host="127.0.0.1", port=0, threads=2, clear_untrusted_proxy_headers=False)
    thread = threading.Thread(target=main.run, name="main-port", daemon=True)
    thread.start()
    ports = Ports(gate, int(main.effective_port))
    try:
        yield ports
    finally:
        for wire in ports.wires:
            wire.close()
        _stop(main, thread)
        gate.stop()


@pytest.fixture
def ports(app, charts):
    with serving(app) as found:
        yield found


@pytest.fixture
def charts(app):
    """The Charts app of Riverside Dental behind nginx, pbnsec's address set, and Riverside's allowlist holding
    127.0.0.1 only; the app's id."""
    app.config["BASE_URL"] = BASE
    restrict(app, "Riverside Dental", "127.0.0.1")
    return protect_app(app, "Charts", "charts.riverside.example")


@pytest.fixture
def fay(signed_in):
    """Fay's pbnsec session cookie (Front Desk, Riverside Dental)."""
    return signed_in("fay").client.get_cookie("pbnsec_session").value


def access_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "pbnsec.access" in line]


# --- 1. the same answers as the main port ---

@pytest.mark.parametrize("case", [
    dict(who="fay", status=200),
    dict(who="fay", method="HEAD", status=200),
    dict(who=None, status=401),
    dict(who=None, query="?redirect=1", status=302),
    dict(who="fay", source=ELSEWHERE, status=403),
    dict(who="fay", source=ELSEWHERE, query="?redirect=1", status=302),
    dict(who="fay", headers=[("X-Original-URL", "https://payroll.riverside.example/")], status=403),
    dict(who="fay", headers=[*NGINX, ("X-Forwarded-Host", "charts.riverside.example")], status=403),
    dict(who="fay", headers=[("X-Original-URL", "not a url")], status=403),
    dict(who="fay", headers=[], status=403),
    dict(who="fay", query="?redirect=yes", status=403),
    dict(who="fay", headers=CADDY, status=200),
    dict(who=None, headers=CADDY, query="?redirect=1", status=302),
    dict(who="fay", method="POST", status=405),
    dict(who="fay", method="OPTIONS", status=405),
    dict(who="fay", headers=[*NGINX, ("Content-Length", "0")], status=200),
], ids=lambda case: "-".join(str(v) for v in case.values()))
def test_the_gate_port_answers_exactly_as_the_main_port(app, ports, fay, case):
    data = request(f"/gate/verify{case.get('query', '')}", case.get("headers", NGINX), case.get("method", "GET"),
                   cookie=fay if case["who"] else None)
    head = case.get("method") == "HEAD"
    gate, main = ports.both(data, case.get("source", "127.0.0.1"), head=head)
    assert gate.status == case["status"]
    assert gate.compared == main.compared
    if gate.status == 200:
        assert gate.header("X-Pbnsec-User") == "fay@example.com"
        assert gate.header("X-Pbnsec-Practice") == "Riverside Dental"
    if gate.status in (401, 302) and case["who"] is None:
        assert gate.header("Location").startswith(f"{BASE}/login?next=")


def test_a_non_ascii_name_reaches_the_upstream_as_the_same_utf8_bytes_on_both_ports(app, ports, fay):
    from pbnsec.models import User

    with app.app_context():
        User.update(name="Fäy Désk").where(User.email == "fay@example.com").execute()
    gate, main = ports.both(request(cookie=fay))
    assert gate.status == 200 and gate.compared == main.compared
    assert gate.header("X-Pbnsec-Name").encode("latin-1") == "Fäy Désk".encode("utf-8")


def test_a_forged_or_expired_cookie_is_not_signed_in_on_either_port(app, ports, fay):
    forged = fay[:-2] + ("AA" if not fay.endswith("AA") else "BB")
    gate, main = ports.both(request(cookie=forged))
    assert gate.status == 401 and gate.compared == main.compared
    app.config["PERMANENT_SESSION_LIFETIME"] = 0  # every cookie is now older than a session lives
    ports.gate.front._session_reader = None
    gate, main = ports.both(request(cookie=fay))
    assert gate.status == 401 and gate.compared == main.compared


# --- 2. a request's head read as the main port reads it ---

def test_a_header_named_with_underscores_is_not_read_on_either_port(app, ports, fay):
    data = request(headers=[("X_Original_URL", CHARTS)], cookie=fay)
    gate, main = ports.both(data)
    assert gate.status == 403 and gate.compared == main.compared
    assert gate.header("X-Pbnsec-User") is None


def test_a_header_sent_twice_is_joined_so_two_original_urls_are_refused(app, ports, fay):
    data = request(headers=[("X-Original-URL", CHARTS), ("X-Original-URL", "https://charts.riverside.example/b")],
                   cookie=fay)
    gate, main = ports.both(data)
    assert gate.status == 403 and gate.compared == main.compared
    assert gate.header("X-Pbnsec-User") is None


@pytest.mark.parametrize("head", [
    b"GET /gate/verify HTTP/1.1\rX-Original-URL: https://charts.riverside.example/\r\n\r\n",
    b"GET /gate/verify HTTP/1.1\r\n folded onto nothing\r\n\r\n",
    b"GET /gate/verify HTTP/1.1\r\nX-Original-URL https://charts.riverside.example/\r\n\r\n",
    b"GET /gate/verify HTTP/1.1\r\nX-Original-URL: https://charts.riverside.example/\nX-A: b\r\n\r\n",
    b"GET /gate/verify HTTP/1.1\r\nContent-Length: five\r\n\r\n",
    b"get /gate/verify HTTP/1.1\r\n\r\n",
    b"GET /gate/verify HTTP/1.1 extra\r\n\r\n",
])
def test_an_unreadable_head_is_400_and_the_connection_closes(app, ports, head, log_lines):
    wire = ports.wire()
    answer = wire.ask(head)
    assert answer.status == 400 and answer.header("X-Pbnsec-User") is None
    assert answer.header("Connection") == "close" and wire.closed()
    assert ports.wire(port=ports.main).ask(head).status == 400  # as the main port reads it
    assert access_lines(log_lines) == []  # nothing was decided


def test_a_head_over_waitresss_limit_is_431_and_the_connection_closes(app, ports):
    limit = gate_server.ADJUSTMENTS.max_request_header_size
    start = b"GET /gate/verify HTTP/1.1\r\nX-Original-URL: " + CHARTS.encode() + b"\r\nX-Padding: "
    data = start + b"a" * (limit - len(start))  # exactly the limit: the gate has read everything when it answers
    for port in (ports.port, ports.main):
        wire = ports.wire(port=port)
        assert wire.ask(data).status == 431, port
        assert wire.closed()


@pytest.mark.parametrize("fold,status", [("\t", 200), (" folded", 403)])
def test_a_folded_header_line_is_read_as_the_main_port_reads_it(app, ports, fay, fold, status):
    data = request(headers=[("X-Original-URL", f"https://charts.riverside.example/\r\n{fold}")], cookie=fay)
    gate, main = ports.both(data)
    assert gate.status == status and gate.compared == main.compared  # joined: "/ folded" holds a space


# --- 3. kept-alive and pipelined connections ---

def test_several_requests_on_one_connection_are_each_answered(app, ports, fay):
    wire = ports.wire()
    assert wire.ask(request(cookie=fay)).status == 200
    assert wire.ask(request()).status == 401
    wire_elsewhere = ports.wire(ELSEWHERE)
    assert wire_elsewhere.ask(request(cookie=fay)).status == 403
    assert wire.ask(request(cookie=fay)).header("X-Pbnsec-User") == "fay@example.com"
    assert wire.ask(request("/login")).status == 404


def test_pipelined_requests_in_one_send_are_answered_in_order(app, ports, fay):
    wire = ports.wire()
    wire.send(request(cookie=fay) + request() + request("/") + request(method="HEAD", cookie=fay)
              + request("/", method="HEAD") + b"\r\n" + request("/gate/verify?redirect=1"))
    assert [wire.answer().status, wire.answer().status, wire.answer().status] == [200, 401, 404]
    head = wire.answer(head=True)
    assert head.status == 200 and head.header("X-Pbnsec-User") == "fay@example.com"
    assert wire.answer(head=True).status == 404  # no body after a HEAD's answer: the next answer reads right
    assert wire.answer().status == 302  # the blank line between requests is skipped, as waitress skips it


def test_connection_close_closes_after_the_answer(app, ports, fay):
    wire = ports.wire()
    wire.send(request(headers=[*NGINX, ("Connection", "close")], cookie=fay) + request(cookie=fay))
    answer = wire.answer()
    assert answer.status == 200 and answer.header("Connection") == "close"
    assert wire.closed()  # the request sent after it is not answered


def test_http_1_0_closes_unless_kept_alive(app, ports, fay):
    wire = ports.wire()
    answer = wire.ask(request(cookie=fay, version="1.0"))
    assert (answer.version, answer.status, answer.header("Connection")) == ("HTTP/1.0", 200, "close")
    assert wire.closed()
    wire = ports.wire()
    answer = wire.ask(request(headers=[*NGINX, ("Connection", "keep-alive")], cookie=fay, version="1.0"))
    assert answer.status == 200 and answer.header("Connection") == "Keep-Alive"
    assert wire.ask(request(version="1.0")).status == 401


def test_another_http_version_is_505_and_closes(app, ports, fay, log_lines):
    wire = ports.wire()
    answer = wire.ask(request(cookie=fay, version="2.0"))
    assert answer.status == 505 and answer.header("X-Pbnsec-User") is None
    assert wire.closed()
    assert access_lines(log_lines) == []


# --- 4. no request bodies ---

@pytest.mark.parametrize("headers,body,status", [
    ([("Content-Length", "5")], b"hello", 400),
    ([("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n0\r\n\r\n", 400),
    ([("Transfer-Encoding", "gzip, chunked")], b"5\r\nhello\r\n0\r\n\r\n", 501),
    ([("Transfer-Encoding", "gzip")], b"hello", 501),
])
def test_a_request_with_a_body_is_refused_and_closed_with_nothing_decided(app, ports, fay, log_lines, headers, body,
                                                                          status):
    wire = ports.wire()
    # A body that would read as a request of its own, were the gate to skip the body and read on.
    answer = wire.ask(request(headers=[*NGINX, *headers], cookie=fay) + body + request(cookie=fay))
    assert answer.status == status and answer.header("X-Pbnsec-User") is None
    assert answer.header("Connection") == "close" and wire.closed()
    assert access_lines(log_lines) == []


def test_an_http_1_0_request_announcing_a_chunked_body_is_refused_not_read_as_two(app, ports, fay, log_lines):
    # HTTP/1.0 has no chunked bodies (waitress then reads no body at all): the framing is faulty, the body could
    # be a request of its own smuggled behind the first (RFC 9112, 6.1).
    wire = ports.wire()
    answer = wire.ask(request(headers=[*NGINX, ("Connection", "keep-alive"), ("Transfer-Encoding", "chunked")],
                              version="1.0") + request(cookie=fay))
    assert answer.status == 400 and answer.header("Connection") == "close"
    assert wire.closed()
    assert access_lines(log_lines) == []


def test_a_body_announced_and_not_yet_sent_is_refused_at_once(app, ports, fay):
    wire = ports.wire()
    answer = wire.ask(request(headers=[*NGINX, ("Content-Length", "100")], cookie=fay))  # the body never comes
    assert answer.status == 400 and b"no request body" in answer.body
    assert wire.closed()


# --- 5. /gate/verify and nothing else ---

@pytest.mark.parametrize("path", ["//gate/verify", "///gate/verify?redirect=0", "/gate/%76erify", "/gate%2Fverify",
                                  "http://pbnsec.internal/gate/verify"])
def test_the_spellings_of_gate_verify_the_main_port_answers_are_answered_alike(app, ports, fay, path):
    gate, main = ports.both(request(path, cookie=fay))
    assert gate.status == 200 and gate.compared == main.compared


@pytest.mark.parametrize("path", ["/", "/login", "/security/allowlist", "/gate/verify/", "/gate/blocked?app=1",
                                  "/healthz", "/static/pbnsec.css", "/gate/verify;x", "/GATE/VERIFY", "*"])
def test_every_other_path_is_404_and_never_a_pbnsec_page(app, ports, fay, path, log_lines):
    for method in ("GET", "POST"):
        answer = ports.wire().ask(request(path, method=method, cookie=fay))
        assert answer.status == 404, (method, path)
        assert answer.header("Content-Type") == "text/plain; charset=utf-8"
        assert b"answers /gate/verify only" in answer.body
        assert answer.header("Set-Cookie") is None and answer.header("X-Pbnsec-User") is None
    assert len(access_lines(log_lines)) == 2
    assert "status=404" in access_lines(log_lines)[0]


# --- 6. the client IP by the one rule ---

def test_behind_one_trusted_proxy_x_forwarded_for_decides_as_on_the_main_port(app, charts, tmp_path, signed_in,
                                                                            log_lines):
    proxied = make_app(tmp_path, TRUSTED_PROXIES=1, BASE_URL=BASE)  # the same database, one proxy in front
    cookie = signed_in("fay").client.get_cookie("pbnsec_session").value
    log_lines.clear()  # the sign-in's
    with serving(proxied) as ports:
        # nginx on 127.0.0.71 (loopback: a proxy by default) for a browser at the office, then elsewhere.
        office = ports.both(request(headers=[*NGINX, ("X-Forwarded-For", "127.0.0.1")], cookie=cookie), ELSEWHERE)
        away = ports.both(request(headers=[*NGINX, ("X-Forwarded-For", "127.0.0.72")], cookie=cookie))
    assert office[0].status == 200 and office[0].compared == office[1].compared
    assert away[0].status == 403 and away[0].compared == away[1].compared
    lines = access_lines(log_lines)
    assert "ip=127.0.0.1" in lines[0] and "status=200" in lines[0]
    assert "ip=127.0.0.72" in lines[2] and "status=403" in lines[2]


def test_x_forwarded_for_from_a_source_that_is_not_the_trusted_proxy_is_ignored(app, charts, tmp_path, signed_in,
                                                                               log_lines):
    proxied = make_app(tmp_path, TRUSTED_PROXIES=1, TRUSTED_PROXY_ADDRS=(ip_network("127.0.0.1/32"),),
                       BASE_URL=BASE)
    cookie = signed_in("fay").client.get_cookie("pbnsec_session").value
    log_lines.clear()  # the sign-in's
    with serving(proxied) as ports:
        gate, main = ports.both(request(headers=[*NGINX, ("X-Forwarded-For", "127.0.0.1")], cookie=cookie),
                                source=ELSEWHERE)
    assert gate.status == 403 and gate.compared == main.compared  # the header did not make 127.0.0.71 the office
    assert f"ip={ELSEWHERE}" in access_lines(log_lines)[0]  # not a proxy: the client itself


def test_without_trusted_proxies_x_forwarded_for_is_ignored(app, ports, fay, log_lines):
    gate, main = ports.both(request(headers=[*NGINX, ("X-Forwarded-For", "127.0.0.1")], cookie=fay),
                            source=ELSEWHERE)
    assert gate.status == 403 and gate.compared == main.compared
    assert f"ip={ELSEWHERE}" in access_lines(log_lines)[0]


# --- 7. timeouts and limits ---

def test_a_head_that_never_ends_is_408_and_closed(app, ports, monkeypatch):
    monkeypatch.setattr(gate_server, "HEAD_SECONDS", 0.2)
    wire = ports.wire()
    wire.send(b"GET /gate/verify HTTP/1.1\r\nX-Original-URL: " + CHARTS.encode() + b"\r\n")
    answer = wire.answer()
    assert answer.status == 408 and answer.header("Connection") == "close"
    assert wire.closed()


def test_a_head_sent_a_byte_at_a_time_does_not_restart_the_clock(app, ports, monkeypatch):
    monkeypatch.setattr(gate_server, "HEAD_SECONDS", 0.5)
    wire = ports.wire()
    for byte in b"GET /gate/verify HTTP/1.1\r\nX-Original-URL: " + CHARTS.encode():
        try:
            wire.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        time.sleep(0.02)  # a slow client: each byte well within the limit, the whole head not
    assert wire.answer().status == 408
    assert wire.closed()


def test_an_idle_kept_alive_connection_is_closed(app, ports, fay, monkeypatch):
    monkeypatch.setattr(gate_server, "IDLE_SECONDS", 0.2)
    wire = ports.wire()
    assert wire.ask(request(cookie=fay)).status == 200
    assert wire.closed()


def test_a_connection_that_never_asks_keeps_its_place_only_as_long_as_a_head_may_take(app, ports, monkeypatch):
    """Not the 75 s of a kept-alive proxy connection: whoever opens connections and sends nothing takes the places
    of MAX_CONNECTIONS for HEAD_SECONDS only."""
    monkeypatch.setattr(gate_server, "HEAD_SECONDS", 0.2)
    silent = ports.wire()  # connected, never asks
    assert silent.closed()


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_beyond_max_connections_new_ones_are_closed_and_a_place_freed_is_taken(app, ports, fay, monkeypatch):
    monkeypatch.setattr(gate_server, "MAX_CONNECTIONS", 2)
    first, second = ports.wire(), ports.wire()
    assert first.ask(request(cookie=fay)).status == 200
    assert second.ask(request(cookie=fay)).status == 200
    assert ports.wire().closed()  # a third is let go at once, before it asks anything
    assert first.ask(request(cookie=fay)).status == 200  # the two it holds are served on
    second.close()
    wait_until(lambda: ports.gate.connections < 2, "the closed connection's place was not freed")
    assert ports.wire().ask(request(cookie=fay)).status == 200


# Its answer carries the long URL back, encoded, in its Location: many times what the question was.
LONG_ASKING = request(headers=[("X-Original-URL", "https://charts.riverside.example/" + "a/" * 4000)])


def flood(wire: Wire, data: bytes) -> int:
    """Send `data` again and again without reading an answer, until the connection takes no more; how many."""
    wire.sock.setblocking(False)
    sent, pending = 0, b""
    while sent < 1_000_000:
        pending = pending or data
        try:
            pending = pending[wire.sock.send(pending):]
        except BlockingIOError:
            time.sleep(0.05)  # the gate may still be reading: give it a moment, then look again
            try:
                pending = pending[wire.sock.send(pending):]
            except BlockingIOError:
                return sent
        if not pending:
            sent += 1
    return sent


def test_a_proxy_that_does_not_read_its_answers_is_not_buffered_without_bound(app, ports, fay, log_lines):
    greedy = ports.wire(rcvbuf=4096)
    sent = flood(greedy, LONG_ASKING)
    answered = len(access_lines(log_lines))
    assert answered < sent  # the gate stopped reading questions whose answers it could not send
    assert ports.wire().ask(request(cookie=fay)).status == 200  # and answers everyone else meanwhile
    greedy.sock.setblocking(True)
    greedy.sock.settimeout(WAIT_SECONDS)
    statuses = {greedy.answer().status for _ in range(sent)}  # read at last: every one answered, in order
    assert statuses == {401}
    assert len(access_lines(log_lines)) == sent + 1


def test_a_connection_that_does_not_read_its_answers_gives_up_its_place_when_idle(app, ports, fay, monkeypatch):
    monkeypatch.setattr(gate_server, "IDLE_SECONDS", 0.5)
    monkeypatch.setattr(gate_server, "MAX_CONNECTIONS", 1)
    greedy = ports.wire(rcvbuf=4096)
    flood(greedy, LONG_ASKING)
    wait_until(lambda: ports.gate.connections == 0, "a connection that reads nothing kept its place")
    assert ports.wire().ask(request(cookie=fay)).status == 200


# --- 8. one access line per answer ---

def test_every_answer_writes_one_access_line_with_the_client_ip(app, ports, fay, log_lines):
    wire = ports.wire(ELSEWHERE)
    assert wire.ask(request(cookie=fay)).status == 403
    assert wire.ask(request("/login?next=x")).status == 404
    assert wire.ask(request(method="HEAD"), head=True).status == 401
    lines = access_lines(log_lines)
    assert len(lines) == 3, lines
    assert 'method=GET path="/gate/verify" status=403' in lines[0] and f"ip={ELSEWHERE}" in lines[0]
    assert 'email="fay@example.com"' in lines[0]
    assert 'method=GET path="/login?next=x" status=404' in lines[1] and f"ip={ELSEWHERE}" in lines[1]
    assert 'method=HEAD path="/gate/verify" status=401' in lines[2] and f"ip={ELSEWHERE}" in lines[2]


def test_the_gate_port_and_the_main_port_write_the_same_access_line(app, ports, fay, log_lines):
    gate, main = ports.both(request("/gate/verify?redirect=0", cookie=fay), ELSEWHERE)
    assert gate.status == main.status == 403
    lines = [re.sub(r"^\S+ | ms=\S+", "", line) for line in access_lines(log_lines)]  # not when, nor how long
    assert len(lines) == 2 and lines[0] == lines[1]
    assert re.fullmatch(r'INFO pbnsec\.access method=GET path="/gate/verify\?redirect=0" status=403 bytes=\d+ '
                        rf'user_id=\d+ email="fay@example\.com" ip={re.escape(ELSEWHERE)}', lines[0]), lines[0]


# --- where it listens ---

def test_it_listens_on_ipv4_and_ipv6_loopback_and_knows_which_the_client_used(app, charts, fay, log_lines):
    gate = GateServer(app.extensions["pbnsec.gate_front"], ["127.0.0.1", "::1"], 0)
    gate.start()
    try:
        assert len(gate.addresses) == 2 and gate.addresses[1].startswith("[::1]:")
        v6 = gate.sockets[1].getsockname()[1]
        wire = Wire(v6, "::1", host="::1")
        answer = wire.ask(request(cookie=fay))
        assert answer.status == 403  # ::1 is not on Riverside's allowlist (127.0.0.1 is)
        assert "ip=::1" in access_lines(log_lines)[-1]
        wire.close()
    finally:
        gate.stop()


def test_a_taken_port_is_an_error_when_the_server_is_made_with_nothing_left_listening(app):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            GateServer(app.extensions["pbnsec.gate_front"], ["::1", "127.0.0.1"], port)
    with socket.create_server(("::1", port), family=socket.AF_INET6):
        pass  # the ::1 socket made before the failure was closed again


def open_files(path) -> int:
    """How many of this process's file descriptors have `path` open."""
    folder = Path("/proc/self/fd")
    found = 0
    for fd in folder.iterdir():
        try:
            found += fd.resolve() == path
        except OSError:
            pass  # closed meanwhile
    return found


@pytest.mark.sqlite_only  # about the SQLite connection the gate keeps open between answers
def test_stopping_closes_the_database_connection_its_thread_kept(app, charts, fay, tmp_path):
    database = (tmp_path / "pbnsec.db").resolve()
    assert open_files(database) == 0
    gate = GateServer(app.extensions["pbnsec.gate_front"], ["127.0.0.1"], 0)
    gate.start()
    wire = Wire(gate.sockets[0].getsockname()[1])
    assert wire.ask(request(cookie=fay)).status == 200
    assert open_files(database) == 1  # kept between answers: opening one costs more than an answer
    wire.close()
    gate.stop()
    assert open_files(database) == 0


def test_stopping_closes_the_connections_it_holds(app, charts, fay):
    gate = GateServer(app.extensions["pbnsec.gate_front"], ["127.0.0.1"], 0)
    gate.start()
    wire = Wire(gate.sockets[0].getsockname()[1])
    assert wire.ask(request(cookie=fay)).status == 200  # kept alive, as a proxy keeps it
    gate.stop()
    assert wire.closed()
    wire.close()


def test_a_failure_outside_the_decision_is_a_500_that_closes_the_connection_and_is_logged(app, ports, fay,
                                                                                          monkeypatch, log_lines):
    def broken(environ):
        raise RuntimeError("an environ the answer could not take")

    monkeypatch.setattr(ports.gate.front, "answer", broken)
    wire = ports.wire()
    answer = wire.ask(request(cookie=fay))
    assert answer.status == 500 and answer.header("X-Pbnsec-User") is None
    assert wire.closed()
    assert any("the gate port could not answer" in line for line in log_lines)


def test_a_connection_pipelining_many_requests_lets_the_others_be_answered_in_between(app, ports, fay, monkeypatch):
    """One proxy connection that sends 40 requests at once is answered ANSWERS_PER_TURN at a time, the other
    connections in between: no connection holds the one gate thread for all of its backlog."""
    monkeypatch.setattr(gate_server, "ANSWERS_PER_TURN", 2, raising=False)
    order = []
    answer = ports.gate.front.answer

    def recorded(environ, **kwargs):
        order.append(environ["HTTP_X_ORIGINAL_URL"])
        return answer(environ, **kwargs)

    monkeypatch.setattr(ports.gate.front, "answer", recorded)
    busy, other = ports.wire(), ports.wire()
    burst = b"".join(request(headers=[("X-Original-URL", f"https://charts.riverside.example/busy/{n}")],
                             cookie=fay) for n in range(40))
    busy.send(burst)
    other.send(request(headers=[("X-Original-URL", "https://charts.riverside.example/other")], cookie=fay))
    assert other.answer().status == 200
    for _ in range(40):
        assert busy.answer().status == 200
    assert len(order) == 41
    assert order.index("https://charts.riverside.example/other") < 40  # not after the whole burst
    assert [url for url in order if "/busy/" in url] == [f"https://charts.riverside.example/busy/{n}"
                                                         for n in range(40)]  # each connection's in order

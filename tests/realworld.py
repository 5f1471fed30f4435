"""The real topology for end-to-end tests: the app started as `make run` starts it, a private nginx in front,
and HTTP clients connecting from chosen loopback source addresses (no forged forwarding headers)."""
from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
SECRET = "end-to-end-tests-share-this-secret-key-0123456789"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_SITE = ROOT / "deploy" / "nginx" / "pbnsec.conf"
GATE_SNIPPET = ROOT / "deploy" / "gate" / "nginx.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    stop(process)
    raise RuntimeError(f"nothing listened on port {port}:\n{log.read_text()}")


def stop(process: subprocess.Popen) -> None:
    """Stop a process and everything it started (make starts flask, nginx starts workers)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


class AppProcess:
    def __init__(self, port: int, log: Path, process: subprocess.Popen, gate_port: int | None = None):
        self.port, self.log, self.process = port, log, process
        self.gate_port = gate_port  # the gate's own port, which `flask --app app serve` opens (None: not opened)

    @property
    def output(self) -> str:
        return self.log.read_text()


# How the README starts the app: `make run`, and the documented waitress-serve line for other setups.
COMMANDS = {
    "make run": lambda port: ["make", "-s", "-C", str(ROOT), "run"],
    "waitress-serve": lambda port: [str(ROOT / ".venv" / "bin" / "waitress-serve"), "--no-clear-untrusted-proxy-headers", "--threads=8",
                                    f"--listen=127.0.0.1:{port}", "--call", "pbnsec:create_app"],
}


def spawn_app(folder: Path, database: Path, proxies: int = 0, proxy_addrs: str | None = None,
              command: str = "make run", **env) -> AppProcess:
    """Start the app on a free loopback port the way the README says, without waiting for it to listen. `make run`
    also opens the gate's own port: a free one too, unless PBNSEC_GATE_PORT is given."""
    port = free_port()
    environment = dict(os.environ, PBNSEC_DATABASE_URL=f"sqlite:///{database}", PBNSEC_PORT=str(port),
                       PBNSEC_HOST="127.0.0.1", PBNSEC_SECRET_KEY=SECRET, PBNSEC_TRUSTED_PROXIES=str(proxies),
                       PBNSEC_GATE_PORT=str(free_port()))
    environment.update(env)
    gate = environment["PBNSEC_GATE_PORT"]
    gate_port = int(gate) if command == "make run" and gate.isdigit() else None
    environment.pop("PBNSEC_TRUSTED_PROXY_ADDRS", None)
    if proxy_addrs is not None:
        environment["PBNSEC_TRUSTED_PROXY_ADDRS"] = proxy_addrs
    log = folder / f"app-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(COMMANDS[command](port), cwd=ROOT, env=environment, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return AppProcess(port, log, process, gate_port)


@contextmanager
def app_server(folder: Path, database: Path, **options):
    """Serve the app (see spawn_app) until the block ends; yields the AppProcess once it listens."""
    app = spawn_app(folder, database, **options)
    try:
        wait_for_port(app.port, app.process, app.log)
        if app.gate_port is not None:
            wait_for_port(app.gate_port, app.process, app.log)
        yield app
    finally:
        stop(app.process)


def site_location_block(upstream_port: int) -> str:
    """The proxying `location / { … }` block of the shipped nginx site file (the one the README tells people to
    use), pointed at upstream_port instead of 8000."""
    text = NGINX_SITE.read_text()
    start = 0
    while (start := text.find("location / {", start)) != -1:
        depth, end = 0, start
        for end in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0 and text[end] == "}":
                break
        block = text[start:end + 1]
        if "proxy_pass http://127.0.0.1:8000;" in block:
            return block.replace("127.0.0.1:8000", f"127.0.0.1:{upstream_port}")
        start = end
    raise ValueError(f"no location / block proxying to 127.0.0.1:8000 in {NGINX_SITE}")


def app_server_block(port: int, host: str, gate_port: int, app_port: int, pbnsec_url: str) -> str:
    """deploy/gate/nginx.conf filled in for one app, listening on this test's loopback port and asking pbnsec's
    gate at gate_port (the gate's own port, or pbnsec's main port, which answers /gate/verify too)."""
    from pbnsec.core.gate import parse_host
    from pbnsec.core.snippets import host_values

    text = GATE_SNIPPET.read_text()
    for placeholder, value in {**host_values(parse_host(host)), "app_scheme": "http", "pbnsec_url": pbnsec_url,
                               "pbnsec_upstream": f"http://127.0.0.1:{gate_port}",
                               "pbnsec_gate_address": f"127.0.0.1:{gate_port}",
                               "app_upstream": f"http://127.0.0.1:{app_port}"}.items():
        text = text.replace("{{" + placeholder + "}}", value)
    assert "{{" not in text
    listen = "    listen 80;\n    listen [::]:80;\n"
    assert listen in text
    return text.replace(listen, f"    listen 127.0.0.1:{port};\n    listen [::1]:{port};\n")


def proxy_block(upstream_port: int, forwarded_for: str | None) -> str:
    """A location block proxying to the upstream port; forwarded_for None sends no X-Forwarded-For at all."""
    xff = f"proxy_set_header X-Forwarded-For {forwarded_for};" if forwarded_for else ""
    return f"location / {{ proxy_pass http://127.0.0.1:{upstream_port}; proxy_set_header Host $host; {xff} }}"


@contextmanager
def nginx(folder: Path, location: str, http_extra: str = "", port: int | None = None):
    """A private nginx on a free loopback port (IPv4 and ::1) with one location block (and http_extra, such as an
    upstream block or servers of their own on `port` given here, beside its server); yields the port."""
    port = port or free_port()
    prefix = folder / f"nginx-{port}"
    prefix.mkdir()
    user = "user root;" if os.geteuid() == 0 else ""
    temp = " ".join(f"{kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (prefix / "nginx.conf").write_text(f"""
{user}
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 128; }}
http {{
    access_log {prefix}/access.log;
    {temp}
    {http_extra}
    server {{
        listen 127.0.0.1:{port};
        listen [::1]:{port};
        server_name localhost;
        {location}
    }}
}}
""")
    log = prefix / "stderr.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")], stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, process, log)
        yield port
    finally:
        stop(process)


_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class HttpVisitor:
    """A tiny browser over real HTTP: one cookie jar, one chosen loopback source address (IPv4 or ::1)."""

    def __init__(self, source_ip: str):
        self.source_ip = source_ip
        self.cookie = None
        self.token = None

    def request(self, port, method, path, form=None, headers=None):
        host = "::1" if ":" in self.source_ip else "127.0.0.1"
        conn = http.client.HTTPConnection(host, port, timeout=15, source_address=(self.source_ip, 0))
        all_headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        if self.cookie:
            all_headers["Cookie"] = f"pbnsec_session={self.cookie}"
        body = urlencode(dict(form, csrf_token=self.token)) if form is not None else None
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        text = response.read().decode()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie" and value.startswith("pbnsec_session="):
                self.cookie = value.split(";")[0].split("=", 1)[1]
        if found := _TOKEN.search(text):
            self.token = found.group(1)
        conn.close()
        return response.status, response.getheader("Location"), text

    def sign_in(self, port, email, password):
        self.request(port, "GET", "/login")
        status, location, text = self.request(port, "POST", "/login", {"email": email, "password": password})
        assert status == 303, (status, text[:2000])
        return location


@contextmanager
def header_echo_server():
    """A tiny upstream app on a free loopback port standing for a protected web tool: every request is answered
    200 with a JSON body of the X-Pbnsec-* headers it arrived with, X_Pbnsec_* spellings included (name in lower case
    -> every value, so a header sent twice shows twice) and the path; yields the port."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self):
            seen: dict[str, list[str]] = {}
            for name, value in self.headers.items():
                if name.lower().replace("_", "-").startswith("x-pbnsec"):  # X_Pbnsec_User too, as sent
                    # raw bytes as sent (http.server reads headers as latin-1): UTF-8 names come back whole
                    seen.setdefault(name.lower(), []).append(value.encode("latin-1").decode("utf-8", "replace"))
            body = json.dumps({"path": self.path, "headers": seen}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()

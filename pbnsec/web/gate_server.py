"""The gate's own port (PBNSEC_GATE_PORT): `GET /gate/verify` answered from one event loop in a thread of the
`flask --app app serve` process, for the reverse proxies in front of the practice's other web tools.

A proxy asks before every request to a protected app, so the answer must not be what limits the app. Through
waitress each answer is handed from its socket thread to a worker thread and back, and the threads take turns at
Python's one lock; on a small server that costs several times the answer itself. Here one thread reads a request,
answers it and writes the answer, nothing else: the same answer (web/gate.VerifyFront.answer, which the main port
gives too), read by waitress's own request parser with the main port's limits, so both ports read a request the same
way — a header named with underscores (X_Original_URL) is dropped, one sent twice is joined with ", ".

Only /gate/verify is answered (anything else: 404). A request with a body is refused (the gate reads none), as is
one whose head takes longer than HEAD_SECONDS to arrive; an idle kept-alive connection is closed after
IDLE_SECONDS (dropped, when its client has not read the answers it was sent), and beyond MAX_CONNECTIONS new ones are
closed at once.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

from waitress.adjustments import Adjustments
from waitress.parser import HTTPRequestParser

from pbnsec import db
from pbnsec.logs import access_line
from pbnsec.web.gate import VERIFY_PATH, VerifyFront

IDLE_SECONDS = 75.0  # longer than nginx keeps an idle upstream connection (60 s): nginx closes it first
HEAD_SECONDS = 10.0  # from a request's first byte to the end of its headers
MAX_CONNECTIONS = 1000
BACKLOG = 1024  # connections the kernel queues before they are taken
ANSWERS_PER_TURN = 32  # requests answered from one connection's buffer before the others get a turn
READ_CHUNK = 8192  # bytes handed to the parser at a time (a head longer than this arrives in several)
ADJUSTMENTS = Adjustments()  # waitress's defaults, as on the main port: the same header size limit
_RENAMED = {"CONTENT_LENGTH": "CONTENT_LENGTH", "CONTENT_TYPE": "CONTENT_TYPE"}  # no HTTP_ prefix (WSGI)
_NOT_HERE = b"pbnsec's gate port answers /gate/verify only: pbnsec's pages are on its main port (PBNSEC_PORT).\n"
_NO_BODY = b"The gate reads no request body: ask with GET or HEAD and no body.\n"


class GateServer:
    """The listening sockets (bound when made: a port in use is an error at once, in the starting thread) and the
    thread serving them."""

    def __init__(self, front: VerifyFront, hosts: list[str], port: int) -> None:
        self.front, self.port = front, port
        self.sockets = bind(hosts, port)
        self.open: set[_Connection] = set()  # touched by the loop's thread only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def addresses(self) -> list[str]:
        """Where it listens, as `host:port` ([host]:port for IPv6)."""
        found = []
        for sock in self.sockets:
            host, port = sock.getsockname()[:2]
            found.append(f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}")
        return found

    @property
    def connections(self) -> int:
        return len(self.open)

    def start(self) -> None:
        """Serve from a thread of its own; the counts of gate requests are saved by the front's timer thread (not
        by this one, whose every moment is the proxies')."""
        self._thread = threading.Thread(target=self._run, name="pbnsec-gate", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("pbnsec's gate port did not start serving within 10 seconds")
        if not self.front.app.testing:
            self.front.flusher.ensure_running()

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._thread is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._drop_all, loop)
            self._thread.join(10)
        for sock in self.sockets:
            sock.close()

    def _drop_all(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop: every connection dropped (their sockets are closed by callbacks this queues), then stop."""
        for connection in list(self.open):
            connection.transport.abort()
        loop.call_soon(loop.stop)

    def _run(self) -> None:
        self._loop = loop = asyncio.new_event_loop()
        servers = [loop.run_until_complete(loop.create_server(lambda: _Connection(self), sock=sock,
                                                              backlog=BACKLOG))
                   for sock in self.sockets]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            for server in servers:
                server.close()
            loop.close()
            db.release_connection()  # the connection its answers kept (SQLite): it dies with this thread


def bind(hosts: list[str], port: int) -> list[socket.socket]:
    """A listening socket for every address the hosts name (as waitress resolves PBNSEC_HOST); OSError when one
    cannot be had (the port is taken, the address is not this machine's), with none left open."""
    sockets: list[socket.socket] = []
    try:
        seen = set()
        for host in hosts:
            for family, _, _, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE):
                if (family, address[:2]) in seen or family not in (socket.AF_INET, socket.AF_INET6):
                    continue
                seen.add((family, address[:2]))
                sockets.append(socket.create_server(address[:2], family=family, backlog=BACKLOG))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _Connection(asyncio.Protocol):
    """One proxy connection: requests in order (kept alive, pipelined or not), each answered before the next is
    read."""

    def __init__(self, server: GateServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser: HTTPRequestParser | None = None
        self.unread = bytearray()
        self.turn_pending = False
        self.closing = False
        self.paused = False
        self.timer: asyncio.TimerHandle | None = None

    # --- asyncio's calls ---

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.open.add(self)
        if len(self.server.open) > MAX_CONNECTIONS:
            self.closing = True
            transport.abort()
            return
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.environ = {
            "REMOTE_ADDR": peer[0], "REMOTE_HOST": peer[0], "REMOTE_PORT": str(peer[1]),
            "SERVER_NAME": str(local[0]), "SERVER_PORT": str(local[1]), "SERVER_SOFTWARE": "pbnsec-gate",
            "SCRIPT_NAME": "", "wsgi.url_scheme": "http",
        }
        self._wait(HEAD_SECONDS)  # a connection that never asks anything keeps its place only so long

    def connection_lost(self, exc) -> None:
        self.server.open.discard(self)
        self.closing = True
        if self.timer is not None:
            self.timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.unread += data
        self._read()

    def pause_writing(self) -> None:  # the proxy is not reading its answers: read no more questions until it does
        self.paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if not self.closing:
            self.transport.resume_reading()
            self._read()

    # --- requests ---

    def _read(self) -> None:
        answered = 0
        while self.unread and not self.closing and not self.paused:
            if answered == ANSWERS_PER_TURN:
                # Pipelined requests wait for the next turn: the other connections are answered in between.
                if not self.turn_pending:
                    self.turn_pending = True
                    asyncio.get_running_loop().call_soon(self._next_turn)
                return
            if self.parser is None:
                self.parser = HTTPRequestParser(ADJUSTMENTS)
                self._wait(HEAD_SECONDS)
            parser = self.parser
            used = parser.received(bytes(self.unread[:READ_CHUNK]))
            del self.unread[:used]  # from the front of a bytearray: no copy of what is left
            # A body, announced by length or chunked; or a Transfer-Encoding waitress leaves in place (HTTP/1.0,
            # where it reads no body): what follows could be read as a request of its own.
            if parser.headers_finished and not parser.error and (
                    parser.content_length > 0 or parser.chunked or "TRANSFER_ENCODING" in parser.headers):
                self._send("1.1", "400 Bad Request", _text_headers(_NO_BODY), _NO_BODY, close=True)
                return
            if not parser.completed:
                if used == 0:
                    break
                continue
            self.parser = None
            if parser.empty:  # blank lines between requests
                continue
            if parser.error is not None:
                error = parser.error
                body = f"{error.reason}: {error.body}\n".encode("latin-1", "replace")
                self._send("1.1", f"{error.code} {error.reason}", _text_headers(body), body, close=True)
                return
            answered += 1
            try:
                self._answer(parser)
            except Exception:  # never a connection left waiting for an answer: nothing passes, the log says why
                logging.getLogger("pbnsec").exception("pbnsec: the gate port could not answer")
                body = b"pbnsec could not answer; see its log.\n"
                self._send("1.1", "500 Internal Server Error", _text_headers(body), body, close=True)
                return
        if self.parser is None and not self.closing:
            self._wait(IDLE_SECONDS)

    def _next_turn(self) -> None:
        self.turn_pending = False
        if not self.closing:
            self._read()

    def _answer(self, parser: HTTPRequestParser) -> None:
        if parser.version not in ("1.0", "1.1"):
            body = b"The gate speaks HTTP/1.0 and HTTP/1.1.\n"
            self._send("1.1", "505 HTTP Version Not Supported", _text_headers(body), body, close=True)
            return
        path = parser.path
        if path.startswith("/"):
            path = "/" + path.lstrip("/")  # as waitress reads //gate/verify on the main port
        environ = dict(self.environ, REQUEST_METHOD=parser.command.upper(), PATH_INFO=path,
                       QUERY_STRING=parser.query, REQUEST_URI=parser.request_uri,
                       SERVER_PROTOCOL=f"HTTP/{parser.version}")
        for key, value in parser.headers.items():
            environ.setdefault(_RENAMED.get(key, "HTTP_" + key), value)
        if path == VERIFY_PATH:
            status, headers, body = self.server.front.answer(environ, flush=False)
        else:
            started = time.perf_counter()
            status, headers, body = "404 Not Found", _text_headers(_NOT_HERE), _NOT_HERE
            if parser.command.upper() == "HEAD":
                body = b""
            access_line(environ["REQUEST_METHOD"], path, parser.query, 404, len(_NOT_HERE), started, None,
                        self.server.front.client_ip(environ))
        self._send(parser.version, status, headers, body, close=parser.connection_close)

    def _send(self, version: str, status: str, headers: list[tuple[str, str]], body: bytes, close: bool) -> None:
        lines = [f"HTTP/{version} {status}", *(f"{name}: {value}" for name, value in headers)]
        if close:
            lines.append("Connection: close")
        elif version == "1.0":
            lines.append("Connection: Keep-Alive")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if close:
            self.closing = True
            self.transport.close()
            self._wait(IDLE_SECONDS)  # closed once the answer is sent; let go if the client never takes it

    def _wait(self, seconds: float) -> None:
        """(Re)start the clock: a connection that sends nothing more within `seconds` is closed."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        if self.closing or self.transport.get_write_buffer_size():
            # Answers the client has not read in all that time: a close would wait for them to be sent, for ever
            # if it never reads, holding the connection's place (MAX_CONNECTIONS) and the answers' memory.
            self.closing = True
            self.transport.abort()
        elif self.parser is not None and self.parser.header_plus:  # a request begun and never finished
            body = b"The request's headers took too long to arrive.\n"
            self._send("1.1", "408 Request Timeout", _text_headers(body), body, close=True)
        else:
            self.closing = True
            self.transport.close()


def _text_headers(body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store")]

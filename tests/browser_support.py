"""Helpers for real-browser tests: the app served over HTTP on loopback, and a Chromium page to drive it.

    with live_app(tmp_path, setup=seed) as (app, base_url), chromium_page() as page:
        page.goto(base_url + "/login")

`setup(app)` runs inside an app context before the server starts, so it can create practices and users.
Playwright drives Debian's Chromium (/usr/bin/chromium); it never downloads a browser of its own.
"""
from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright
from waitress import wasyncore
from waitress.server import create_server

from pbnsec import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
DEFAULT_TIMEOUT_MS = 10_000
SERVER_START_SECONDS = 10

# urllib must not send loopback requests through a proxy from the environment.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _wait_until_serving(url: str) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        try:
            with _direct.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the test server did not answer at {url}")
        time.sleep(0.05)


def _stop(server, thread: threading.Thread) -> None:
    """server.close() and every open connection, run on the server's own loop thread so nothing races it."""
    def close_everything():
        server.close()
        wasyncore.close_all(server._map, ignore_all=True)  # keep-alive connections; ends the loop

    server.trigger.pull_trigger(close_everything)
    thread.join(timeout=5)
    server.task_dispatcher.shutdown(timeout=5)
    if thread.is_alive():
        raise RuntimeError("the test server thread did not stop")


@contextmanager
def live_app(tmp_path: Path, setup: Callable | None = None, **config) -> Iterator[tuple[object, str]]:
    """A fresh app on its own SQLite file, served by waitress on 127.0.0.1; yields (app, base_url)."""
    settings = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/pbnsec.db",
        "INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "browser-test-secret-" + "x" * 40,
        "TRUSTED_PROXIES": 0,
        "BOOTSTRAP": False,
    }
    settings.update(config)
    app = create_app(settings)
    if setup is not None:
        with app.app_context():
            setup(app)
    # Port 0: the listening socket is bound to a free loopback port at once, so no other process can take it.
    # As `flask serve` does: X-Forwarded-For reaches the app, which alone decides whether to believe it.
    server = create_server(app, host="127.0.0.1", port=0, threads=4, clear_untrusted_proxy_headers=False)
    base_url = f"http://127.0.0.1:{server.effective_port}"
    thread = threading.Thread(target=server.run, name="live-app", daemon=True)
    thread.start()
    try:
        _wait_until_serving(base_url + "/login")
        yield app, base_url
    finally:
        _stop(server, thread)
        # Its counts of gate requests are saved now, into its own database: its timer thread would otherwise add
        # them later to whichever database a later test's app points the models at.
        app.extensions["pbnsec.gate_front"].flusher.stop()
        from pbnsec.db import database
        if not database.is_closed():
            database.close()


@contextmanager
def gate_port(app) -> Iterator[int]:
    """The gate's own port for a live_app, as `flask --app app serve` opens it (pbnsec.web.gate_server), on a free
    loopback port; yields the port."""
    from pbnsec.web.gate_server import GateServer

    gate = GateServer(app.extensions["pbnsec.gate_front"], ["127.0.0.1"], 0)
    gate.start()
    try:
        yield gate.sockets[0].getsockname()[1]
    finally:
        gate.stop()


@contextmanager
def chromium_page(timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Iterator[Page]:
    """A Page in a new browser context of a headless Chromium; actions and `expect` wait up to timeout_ms."""
    with chromium_pages(1, timeout_ms) as (page,):
        yield page


def overflow(page) -> dict:
    """How wide the page is against the window: fits when scroll <= inner (no sideways scrolling)."""
    return page.evaluate("({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})")


def fits(page) -> bool:
    size = overflow(page)
    return size["scroll"] <= size["inner"]


def stays_in_place(page: Page, url: str, navigations: list):
    """Mark the page, then return a check that it is still that document at `url`: htmx swapped, nothing reloaded."""
    page.evaluate("window.__sameDocument = true")
    navigations.clear()

    def check():
        expect(page).to_have_url(url)
        assert navigations == [], f"the browser navigated instead of swapping: {navigations}"
        assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"

    return check


@contextmanager
def chromium_pages(count: int, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Iterator[list[Page]]:
    """`count` Pages of one headless Chromium, each in a browser context of its own (its own cookies),
    for two people using the app at once; actions and `expect` wait up to timeout_ms."""
    with chromium_browsers(*[[]] * count, timeout_ms=timeout_ms, one_browser=True) as pages:
        yield pages


@contextmanager
def chromium_browsers(*switches: list[str], timeout_ms: int = DEFAULT_TIMEOUT_MS,
                      one_browser: bool = False) -> Iterator[list[Page]]:
    """A Page per list of extra command-line switches, each in a headless Chromium of its own started with them
    (e.g. --host-resolver-rules: which address a name leads to is per browser, not per context); with
    one_browser, contexts of one Chromium instead (the switches must then be empty)."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (never `playwright install`)")
    expect.set_options(timeout=timeout_ms)
    with sync_playwright() as p:
        browsers, contexts = [], []
        try:
            for extra in switches:
                if not browsers or not one_browser:
                    browsers.append(p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                      args=CHROMIUM_ARGS + list(extra)))
                context = browsers[-1].new_context()
                context.set_default_timeout(timeout_ms)
                contexts.append(context)
            yield [context.new_page() for context in contexts]
        finally:
            for context in contexts:
                context.close()
            for browser in browsers:
                browser.close()


def sign_in(page: Page, base_url: str, email: str, password: str) -> None:
    """Sign in through the form, as a person does."""
    page.goto(base_url + "/login")
    page.locator("#email").fill(email)
    page.locator("#password").fill(password)
    page.get_by_role("button", name="Sign in").click()

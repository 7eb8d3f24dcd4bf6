"""A real console in a real browser: `recycler console`'s application served by uvicorn on a
free local port, driven by Debian's Chromium through Playwright (no browser download)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright

from jobs.clock import SystemClock
from jobs.console import create_console
from jobs.staff.accounts import add_staff
from tests.support.world import World

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SIZE = {"width": 1280, "height": 800}


@dataclass
class Person:
    username: str
    password: str
    secret: str  # TOTP

    def code(self) -> str:
        return pyotp.TOTP(self.secret).now()


@dataclass
class Console:
    url: str
    world: World
    screenshots: Path

    def person(self, username: str, role: str, *, totp: bool = False) -> Person:
        """An account with its temporary password already changed to a known one."""
        new = add_staff(
            self.world.database, username, role, totp=totp, actor="test", now=SystemClock().now()
        )
        secret = pyotp.parse_uri(new.totp_uri).secret
        return Person(username, new.password, secret)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Per module, not per session: Playwright's synchronous API keeps an event loop running in this
# thread while it is open, and every later test that runs one of its own (the sender's) would
# find it there.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def console(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    port = _free_port()
    application = create_console(world.database, world.settings, SystemClock())
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the console did not start"
        time.sleep(0.02)
    folder = tmp_path_factory.mktemp("screenshots")
    try:
        yield Console(f"http://127.0.0.1:{port}", world, folder)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=SIZE)
    opened = context.new_page()
    yield opened
    context.close()

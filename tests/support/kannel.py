"""A real Kannel for tests: Debian's bearerbox and smsbox, with Kannel's own fake SMSC
(``fakesmsc`` from kannel-extras) standing for the operator's SMSC, on free local ports.

bearerbox's ``fake`` SMSC connection hands every message to the fakesmsc client, which prints
it (sender, receiver, and the text: plain for GSM text, URL-encoded bytes for UCS-2 or with a
UDH), and it reports each message delivered when asked to; smsbox calls the message's dlr-url
for the SMSC's acceptance (type 8) and for that delivery (type 1).
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.api import free_port

__all__ = ["BEARERBOX", "FAKESMSC", "SMSBOX", "Kannel", "SmscMessage", "kannel_missing"]

BEARERBOX = Path("/usr/sbin/bearerbox")
SMSBOX = Path("/usr/sbin/smsbox")
FAKESMSC = Path("/usr/lib/kannel/test/fakesmsc")
USERNAME = "recycler"
PASSWORD = "kannel-test-password"
_ADMIN_PASSWORD = "kannel-admin"
_LINE = re.compile(r"Got message \d+: <(.*)>$")


def kannel_missing() -> str | None:
    """Why Kannel cannot run here, or None."""
    absent = [str(path) for path in (BEARERBOX, SMSBOX, FAKESMSC) if not path.exists()]
    if absent:
        return f"Kannel needs Debian's kannel and kannel-extras ({', '.join(absent)} missing)"
    return None


@dataclass(frozen=True)
class SmscMessage:
    """One message as the SMSC received it."""

    sender: str
    receiver: str
    kind: str  # "text", "ucs-2", "data" or "udh"
    udh: bytes
    payload: bytes

    @property
    def text(self) -> str:
        """The payload read as what it is: UCS-2 (UTF-16BE) or GSM text."""
        if self.kind == "text":
            return self.payload.decode()
        return self.payload.decode("utf-16-be")


def _bytes(encoded: str) -> bytes:
    """fakesmsc's URL encoding, where a space is '+'."""
    return urllib.parse.unquote_to_bytes(encoded.replace("+", "%20"))


def _parse(line: str) -> SmscMessage:
    sender, receiver, kind, rest = line.split(" ", 3)
    if kind == "udh":
        udh, _, data = rest.partition(" data ")
        if not data:
            udh, _, data = rest.partition(" ")
        return SmscMessage(
            sender,
            receiver,
            kind,
            _bytes(udh),
            _bytes(data),
        )
    if kind == "text":
        return SmscMessage(sender, receiver, kind, b"", rest.encode())
    return SmscMessage(sender, receiver, kind, b"", _bytes(rest))


class Kannel:
    """bearerbox, smsbox and fakesmsc, configured in `folder`, until ``stop``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.admin_port, self.box_port, self.sendsms_port, self.smsc_port = (
            free_port() for _ in range(4)
        )
        self.processes: list[subprocess.Popen[bytes]] = []
        self.smsc_log = folder / "fakesmsc.log"

    @property
    def sendsms_url(self) -> str:
        """smsbox's sendsms interface."""
        return f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms"

    def configuration(self) -> str:
        """kannel.conf: one fake SMSC, one smsbox, one sendsms user allowed long messages."""
        return f"""
group = core
admin-port = {self.admin_port}
admin-password = {_ADMIN_PASSWORD}
admin-interface = 127.0.0.1
smsbox-port = {self.box_port}
smsbox-interface = 127.0.0.1
box-allow-ip = 127.0.0.1
log-file = "{self.folder}/bearerbox.log"
log-level = 1
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
port = {self.smsc_port}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {self.box_port}
sendsms-port = {self.sendsms_port}
sendsms-interface = 127.0.0.1
log-file = "{self.folder}/smsbox.log"
log-level = 1
http-request-retry = 3
http-queue-delay = 1

group = sendsms-user
username = {USERNAME}
password = {PASSWORD}
max-messages = 10
concatenation = true
"""

    def start(self) -> Kannel:
        config = self.folder / "kannel.conf"
        config.write_text(self.configuration())
        self._spawn([str(BEARERBOX), str(config)], self.folder / "bearerbox.out")
        self._wait_for_port(self.box_port)
        self._spawn([str(SMSBOX), str(config)], self.folder / "smsbox.out")
        self._spawn(
            [str(FAKESMSC), "-H", "127.0.0.1", "-r", str(self.smsc_port), "-m", "0", "0 0 text x"],
            self.smsc_log,
        )
        self._wait_for_port(self.sendsms_port)
        deadline = time.monotonic() + 30
        while "online" not in self.status():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the fake SMSC never came online:\n{self.status()}")
            time.sleep(0.1)
        return self

    def _spawn(self, command: list[str], output: Path) -> None:
        with output.open("wb") as sink:
            self.processes.append(
                subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=self.folder)
            )

    def _wait_for_port(self, port: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                if any(process.poll() is not None for process in self.processes):
                    raise RuntimeError(f"Kannel stopped; see {self.folder}") from None
                time.sleep(0.05)
        raise RuntimeError(f"nothing listens on port {port}; see {self.folder}")

    def status(self) -> str:
        """bearerbox's status page."""
        url = f"http://127.0.0.1:{self.admin_port}/status.txt?password={_ADMIN_PASSWORD}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return str(answer.read().decode())
        except OSError as error:
            return str(error)

    def received(self) -> list[SmscMessage]:
        """Every message the fake SMSC received so far, in order."""
        lines = self.smsc_log.read_text(errors="replace").splitlines()
        return [
            _parse(found.group(1)) for line in lines if (found := _LINE.search(line)) is not None
        ]

    def wait_for(self, count: int, timeout: float = 30) -> list[SmscMessage]:
        """Until the SMSC has received `count` messages (parts)."""
        deadline = time.monotonic() + timeout
        while len(received := self.received()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the SMSC received {len(received)} of {count} messages")
            time.sleep(0.05)
        return received

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

"""A TCP proxy in front of PostgreSQL that can make the server look stopped or frozen, for one
process under test, without touching the real server the rest of the suite uses.

- ``cut()``: every connection is closed and new ones are refused, as when the server stops;
  ``restore()`` listens again on the same port, as when it comes back.
- ``freeze()``: connections stay open but no byte goes through, either way, as when the
  server's processes are stopped with SIGSTOP; ``thaw()`` lets the bytes flow again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

__all__ = ["FaultyProxy"]

_CHUNK = 65_536


class FaultyProxy:
    """127.0.0.1:port → target, with faults on demand."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._stopped = False

    def start(self) -> FaultyProxy:
        self._listen()
        return self

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: cut or stopped
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK):
                self._flowing.wait()
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
            with self._lock:
                self._sockets.difference_update((source, target))

    def cut(self) -> None:
        """The server is gone: connections reset, new ones refused."""
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would leave the
            # socket listening until that call returned.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            open_sockets = list(self._sockets)
        for end in open_sockets:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        """The server is back on the same address."""
        self._listen()

    def freeze(self) -> None:
        """No byte goes through until thawed; connections stay open."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def stop(self) -> None:
        self.thaw()
        self.cut()

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def proxied(url: str) -> Iterator[tuple[FaultyProxy, str]]:
    """A proxy in front of the database of a PostgreSQL URL, and the URL through it."""
    import sqlalchemy as sa  # noqa: PLC0415

    parsed = sa.make_url(url)
    with FaultyProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
        yield (
            proxy,
            parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
        )

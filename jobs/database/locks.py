"""The run lock: one nightly run at a time, across processes and machines.

PostgreSQL: a session-level advisory lock, held by a dedicated connection for the whole run, so
that the lock dies with the process however it dies. SQLite: an exclusive ``flock`` on a file next
to the database, which the kernel releases when the process ends.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.database.engine import Database

__all__ = ["RUN_LOCK_KEY", "LockBusy", "run_alive", "run_lock", "sqlite_sender_lock"]

# An arbitrary, fixed 64-bit key: "recycler run" in ASCII, truncated to fit a signed bigint.
RUN_LOCK_KEY = 0x7265_6379_636C_6572 & 0x7FFF_FFFF_FFFF_FFFF


class LockBusy(Exception):
    """Another process holds the lock."""


@contextmanager
def run_lock(
    database: Database,
    *,
    wait_seconds: float = 0.0,
    stop: threading.Event | None = None,
) -> Iterator[None]:
    """Hold the run lock for the block; raise LockBusy if it stays taken for `wait_seconds`
    (or `stop` is set while waiting)."""
    if database.is_postgresql:
        with _advisory_lock(database, RUN_LOCK_KEY, wait_seconds, stop):
            yield
        return
    path = database.sqlite_path
    if path is None:  # an in-memory database lives in one process: nothing to share
        yield
        return
    with _file_lock(path.with_name(path.name + ".run-lock"), wait_seconds, stop):
        yield


def run_alive(connection: Connection, host: str, pid: int) -> bool | None:
    """Whether the run recorded as running on `host` by `pid` can still be alive: on
    PostgreSQL, whether anyone holds the run lock; on SQLite, whether that process exists on
    this machine. None when it cannot be told (a SQLite run recorded by another machine)."""
    if connection.dialect.name == "postgresql":
        held = connection.execute(
            sa.text(
                # pg_locks lists the whole server's locks, and advisory locks belong to a
                # database: a run in another database on the same server (staging beside
                # production) holds a lock of the same key that says nothing about this one.
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = :high AND objid = :low AND objsubid = 1"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"high": RUN_LOCK_KEY >> 32, "low": RUN_LOCK_KEY & 0xFFFF_FFFF},
        ).scalar_one()
        return bool(held)
    if host != socket.gethostname()[:255]:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


@contextmanager
def sqlite_sender_lock(database: Database) -> Iterator[None]:
    """On SQLite, one sender at a time: a second one is refused (LockBusy) rather than left to
    fight over the database's single write lock."""
    path = database.sqlite_path
    if not database.is_sqlite or path is None:
        yield
        return
    with _file_lock(path.with_name(path.name + ".send-lock"), 0.0, None):
        yield


def _retrying(
    try_once: Callable[[], bool], wait_seconds: float, stop: threading.Event | None
) -> None:
    deadline = time.monotonic() + wait_seconds
    while not try_once():
        if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            raise LockBusy
        time.sleep(0.2)


@contextmanager
def _advisory_lock(
    database: Database, key: int, wait_seconds: float, stop: threading.Event | None
) -> Iterator[None]:
    # Autocommit: the lock belongs to the session, and no transaction may sit open for hours.
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as holder:

        def try_once() -> bool:
            taken = holder.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar_one()
            return bool(taken)

        _retrying(try_once, wait_seconds, stop)
        try:
            yield
        finally:
            holder.execute(sa.select(sa.func.pg_advisory_unlock(key)))


@contextmanager
def _file_lock(path: Path, wait_seconds: float, stop: threading.Event | None) -> Iterator[None]:
    with path.open("a") as handle:

        def try_once() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        _retrying(try_once, wait_seconds, stop)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

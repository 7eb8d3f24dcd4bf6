"""Connections to the two databases recycler runs on, with the same transaction semantics on both.

SQLite (the embedded default) is put in WAL mode, waits for locks instead of failing at once, and
takes its write lock when a writing transaction begins, so that two writers queue rather than
deadlock. PostgreSQL (production) is reached through psycopg 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from jobs.errors import ExitCode, RecyclerError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "BASE_LOCK_KEY",
    "BaseBusy",
    "BaseLock",
    "Database",
    "Timeouts",
    "is_transient",
    "retried",
]

# The key of the base lock (see BaseLock): "recycler base" in ASCII, truncated to a bigint.
BASE_LOCK_KEY = 0x7265_6379_6261_7365 & 0x7FFF_FFFF_FFFF_FFFF
# SQLSTATEs a transaction may simply be tried again after: deadlock, serialization failure.
_TRANSIENT = frozenset({"40P01", "40001"})
_ATTEMPTS = 3
_PAUSE_SECONDS = 0.2
_Arguments = ParamSpec("_Arguments")
_Result = TypeVar("_Result")
log = structlog.get_logger(__name__)


class BaseLock(StrEnum):
    """How a writing transaction holds the base lock, taken before anything else it does.

    Every transaction that changes numbers, ownerships or warnings takes it: the nightly run,
    the imports, the seed and the safeguards exclusively, the senders shared among themselves.
    Since no row lock is ever taken before it, two of these can only wait for one another on
    the base lock itself, never in a cycle: no deadlock, whatever the timing. Readers take
    nothing (PostgreSQL's snapshots never block them). SQLite needs none: its write
    transactions already take the one database lock first.
    """

    EXCLUSIVE = "exclusive"
    SHARED = "shared"


def is_transient(error: BaseException) -> bool:
    """Whether the database refused a transaction in a way that trying it again can cure."""
    code = getattr(getattr(error, "orig", None), "sqlstate", None)
    return code in _TRANSIENT


def retried(function: Callable[_Arguments, _Result]) -> Callable[_Arguments, _Result]:
    """Run a whole transaction again when the database refused it as a deadlock victim or a
    serialization failure: the tool retries, not the operator. recycler's own processes cannot
    deadlock one another (the base lock); this covers a session from outside, a DBA's say."""

    @functools.wraps(function)
    def again(*args: _Arguments.args, **kwargs: _Arguments.kwargs) -> _Result:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return function(*args, **kwargs)
            except sa.exc.DBAPIError as error:
                if attempt == _ATTEMPTS or not is_transient(error):
                    raise
                log.warning(
                    "database.retry",
                    work=function.__name__,
                    attempt=attempt,
                    error=str(error.orig).splitlines()[0],
                )
                time.sleep(_PAUSE_SECONDS * attempt * random.uniform(0.5, 1.5))  # noqa: S311
        raise AssertionError("unreachable")

    return again


_WRITE_OPTION = "recycler_write"
# SQLSTATE of a lock wait that ran out of lock_timeout.
_LOCK_NOT_AVAILABLE = "55P03"


class BaseBusy(RecyclerError):
    """Another job is changing the base (a nightly run or an import): try again shortly."""

    exit_code = ExitCode.BUSY


@dataclass(frozen=True)
class Timeouts:
    """How long recycler waits for the database, so that nothing waits without bound.

    ``statement_seconds`` bounds every statement (and a wait for the base lock, after which
    the command says the base is busy); long jobs (the nightly run, imports, the seed) raise it
    for their own transaction. A connection idle inside a transaction for longer than
    ``idle_in_transaction_seconds`` is closed by the server, its locks released. Keepalives let
    a client notice, within about a minute, a server that vanished from the network.
    """

    connect_seconds: float = 10
    statement_seconds: float = 60
    idle_in_transaction_seconds: float = 60


class Database:
    """An engine and the two kinds of transaction recycler uses: reading and writing."""

    def __init__(
        self,
        url: str,
        *,
        timeouts: Timeouts | None = None,
        echo: bool = False,
        connections: int = 4,
    ) -> None:
        self.url = sa.make_url(url)
        self.dialect = self.url.get_backend_name()
        self.timeouts = timeouts or Timeouts()
        self._connections = connections
        self._connect_args: dict[str, Any] = {}
        self._asynchronous: AsyncEngine | None = None
        if self.dialect == "sqlite":
            self.engine = sa.create_engine(self.url, echo=echo)
            _prepare_sqlite(self.engine, self.timeouts)
        else:
            limits = {
                "statement_timeout": _milliseconds(self.timeouts.statement_seconds),
                "idle_in_transaction_session_timeout": _milliseconds(
                    self.timeouts.idle_in_transaction_seconds
                ),
                # recycler's large statements are index probes and bulk writes, which
                # PostgreSQL's JIT compiler does not speed up; it only spent 150-300 ms compiling
                # each of them (at 1,000,000 numbers: the first night 8.4 -> 7.4 s, an import of
                # 1,000,000 subscribers 18.4 -> 17.1 s, of 100,000 top-ups 6.6 -> 5.8 s).
                "jit": "off",
                # The run's and the imports' work tables (the night's queued warnings, an import's
                # staging rows) are temporary tables, kept in the session's own buffers up to
                # this size; PostgreSQL's default of 8 MB wrote them out to files and read them
                # back. Taken only by a session that uses temporary tables, as it fills them
                # (steady night at ten million 13.5-14.1 -> 13.0-13.1 s; importing 1,000,000
                # subscribers 15.4 -> 14.7 s, its first night 5.6 -> 5.2 s).
                "temp_buffers": "256MB",
            }
            self._connect_args = {
                "connect_timeout": max(1, math.ceil(self.timeouts.connect_seconds)),
                "options": " ".join(f"-c {name}={value}" for name, value in limits.items()),
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
            }
            self.engine = sa.create_engine(
                self.url,
                echo=echo,
                pool_pre_ping=True,
                # ``connections`` kept open, as many more opened (and closed again) at a peak.
                pool_size=connections,
                max_overflow=connections,
                connect_args=self._connect_args,
            )
        # The connections in use right now, so that a stop signal can cancel what they run.
        self._in_use: set[Any] = set()
        self._in_use_lock = threading.Lock()
        event.listen(self.engine, "checkout", self._checked_out)
        event.listen(self.engine, "checkin", self._checked_in)

    def _checked_out(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        with self._in_use_lock:
            self._in_use.add(dbapi_connection)

    def _checked_in(self, dbapi_connection: Any, _record: Any) -> None:
        with self._in_use_lock:
            self._in_use.discard(dbapi_connection)

    def cancel_statements(self, timeout_seconds: float = 3.0) -> int:
        """Cancel whatever statement each connection in use is running (from any thread): the
        waiting call raises, and its transaction rolls back. Returns how many were asked."""
        with self._in_use_lock:
            connections = list(self._in_use)
        for dbapi_connection in connections:
            with contextlib.suppress(Exception):  # a connection already gone: nothing to stop
                if self.is_sqlite:
                    dbapi_connection.interrupt()
                else:
                    dbapi_connection.cancel_safe(timeout=timeout_seconds)
        return len(connections)

    @property
    def is_sqlite(self) -> bool:
        """Whether this is the embedded SQLite database."""
        return self.dialect == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        """Whether this is PostgreSQL."""
        return self.dialect == "postgresql"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, or None for PostgreSQL and in-memory SQLite."""
        if not self.is_sqlite or not self.url.database or self.url.database == ":memory:":
            return None
        return Path(self.url.database)

    def describe(self) -> str:
        """The URL without its password, for messages and logs."""
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def each_statement(self) -> Iterator[Connection]:
        """A connection on which every statement is its own transaction, for a request that
        reads one answer and then records one row, where the two need not be one snapshot:
        on PostgreSQL no BEGIN and COMMIT round trips (half the time of a short request); on
        SQLite, whose transactions are local calls, an ordinary writing transaction."""
        if not self.is_postgresql:
            with self.write() as connection:
                yield connection
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            yield connection

    async def each_statement_async(
        self,
        function: Callable[Concatenate[Connection, _Arguments], _Result],
        /,
        *args: _Arguments.args,
        **kwargs: _Arguments.kwargs,
    ) -> _Result:
        """Call ``function`` with a connection as ``each_statement`` gives it, from an event
        loop without blocking it: on PostgreSQL through psycopg's asynchronous connections
        (the function's statements are awaited on the loop, no thread hand-off per request);
        on SQLite in a worker thread."""
        if not self.is_postgresql:

            def in_thread() -> _Result:
                with self.each_statement() as connection:
                    return function(connection, *args, **kwargs)

            return await asyncio.to_thread(in_thread)
        try:
            async with self._async_engine().connect() as connection:
                return await connection.run_sync(function, *args, **kwargs)
        except sa.exc.DBAPIError as error:
            # The server ended the connection (a restart, a failover): SQLAlchemy has already
            # discarded every connection opened before, so this one more try runs on a new
            # connection. It stands in for a "ping" before each use, which would cost every
            # request a round trip. A function called here must be safe to call twice in that
            # case: a connection lost during its statement may have committed it.
            if not error.connection_invalidated:
                raise
        async with self._async_engine().connect() as connection:
            return await connection.run_sync(function, *args, **kwargs)

    def _async_engine(self) -> AsyncEngine:
        if self._asynchronous is None:
            # Imported here: only `recycler api` answers on the event loop, and SQLAlchemy's
            # asyncio layer (with the ORM it brings) costs every other command a tenth of a
            # second at start.
            from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415

            # A fixed pool, no overflow and no ping: a request beyond ``connections`` waits on
            # the loop for one to come back instead of opening (and closing again) its own,
            # which halved the rate at twice as many requests in flight as connections; and a
            # lost connection is tried again once (above) instead of pinged before every use.
            self._asynchronous = create_async_engine(
                self.url,
                pool_size=self._connections,
                max_overflow=0,
                isolation_level="AUTOCOMMIT",
                connect_args=self._connect_args,
            )
        return self._asynchronous

    async def dispose_async(self) -> None:
        """Close the asynchronous connections (the synchronous ones stay)."""
        if self._asynchronous is not None:
            await self._asynchronous.dispose()
            self._asynchronous = None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction that only reads; committed (harmlessly) at the end."""
        with self.engine.connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def write(
        self,
        *,
        commit: bool = True,
        lock: BaseLock | None = None,
        statement_seconds: float | None = None,
        sqlite_foreign_keys: bool = True,
    ) -> Iterator[Connection]:
        """A transaction that writes: committed when the block ends, rolled back on error.

        ``commit=False`` rolls back even on success: a dry run does all the work and keeps none.
        ``lock`` takes the base lock first (see BaseLock), waiting at most the statement
        timeout for it (BaseBusy after that). ``statement_seconds`` raises the statement
        timeout for this transaction alone, and the wait for the lock with it: long jobs.
        ``sqlite_foreign_keys=False`` turns SQLite's foreign keys off for the transaction (a
        pragma that only takes effect outside one), for migrations that copy tables.
        """
        limit = statement_seconds or self.timeouts.statement_seconds
        with self.engine.connect() as connection:
            pragmas = connection.connection.driver_connection if self.is_sqlite else None
            if pragmas is not None:
                if not sqlite_foreign_keys:
                    pragmas.execute("PRAGMA foreign_keys = OFF")
                # A writer waits this long for another one before the base counts as busy.
                pragmas.execute(f"PRAGMA busy_timeout = {_milliseconds(limit)}")
            try:
                connection.execution_options(**{_WRITE_OPTION: True})
                try:
                    transaction = connection.begin()
                except sa.exc.OperationalError as error:
                    if "database is locked" in str(error.orig):
                        raise BaseBusy() from None
                    raise
                try:
                    if self.is_postgresql:
                        self._prepare_transaction(connection, lock, statement_seconds)
                    yield connection
                except BaseException:
                    transaction.rollback()
                    raise
                if commit:
                    transaction.commit()
                else:
                    transaction.rollback()
            finally:
                if pragmas is not None:
                    if not sqlite_foreign_keys:
                        pragmas.execute("PRAGMA foreign_keys = ON")
                    pragmas.execute(
                        f"PRAGMA busy_timeout = {_milliseconds(self.timeouts.statement_seconds)}"
                    )

    def _prepare_transaction(
        self, connection: Connection, lock: BaseLock | None, statement_seconds: float | None
    ) -> None:
        if statement_seconds is not None:
            connection.exec_driver_sql(
                f"SET LOCAL statement_timeout = {_milliseconds(statement_seconds)}"
            )
        if lock is None:
            return
        function = (
            sa.func.pg_advisory_xact_lock
            if lock is BaseLock.EXCLUSIVE
            else sa.func.pg_advisory_xact_lock_shared
        )
        # A little under the statement timeout, so that a long wait ends as "busy".
        wait = 0.95 * (statement_seconds or self.timeouts.statement_seconds)
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {_milliseconds(wait)}")
        try:
            connection.execute(sa.select(function(BASE_LOCK_KEY)))
        except sa.exc.OperationalError as error:
            if getattr(error.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                raise BaseBusy(
                    "another job is changing the base (a nightly run or an import) and did "
                    f"not finish within {wait:g} s; nothing was changed: try again when it has"
                ) from None
            raise
        # Rows are never waited on after the base lock is held; no limit but the statement's.
        connection.exec_driver_sql("SET LOCAL lock_timeout = 0")

    def refresh_statistics(self, *tables: str, vacuum: bool = False) -> None:
        """Have the query planner look at tables again after a bulk load.

        PostgreSQL plans from statistics that autovacuum refreshes only some time after a large
        change; a nightly run planned on "empty table" estimates right after a million-row load
        walks the whole base row by row. ``vacuum`` also marks the new rows all-visible, so that
        index-only scans stay index-only. SQLite's planner needs no such help here.
        """
        if not self.is_postgresql:
            return
        command = "VACUUM ANALYZE" if vacuum else "ANALYZE"
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql(f"{command} {', '.join(tables)}")

    def estimated_rows(self, table: str) -> float:
        """The planner's idea of a table's size (0 when it has none yet, or on SQLite)."""
        if not self.is_postgresql:
            return 0.0
        with self.read() as connection:
            rows = connection.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE oid = CAST(:name AS regclass)"),
                {"name": table},
            ).scalar()
        return max(float(rows or 0), 0.0)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _prepare_sqlite(engine: Engine, timeouts: Timeouts) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module, which would otherwise begin
        # transactions lazily and commit behind SQLAlchemy's back around DDL.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {_milliseconds(timeouts.statement_seconds)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A writer takes the lock up front: a deferred transaction that reads and then writes can
        # fail with "database is locked" without waiting, which would abort a nightly run.
        if connection.get_execution_options().get(_WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")

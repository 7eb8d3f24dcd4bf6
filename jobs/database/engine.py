"""Connections to the two databases recycler runs on, with the same transaction semantics on both.

SQLite (the embedded default) is put in WAL mode, waits for locks instead of failing at once, and
takes its write lock when a writing transaction begins, so that two writers queue rather than
deadlock. PostgreSQL (production) is reached through psycopg 3.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

__all__ = ["BASE_LOCK_KEY", "BaseLock", "Database", "is_transient", "retried"]

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


# How long a SQLite writer waits for another one before giving up, in milliseconds.
_SQLITE_BUSY_TIMEOUT_MS = 60_000
_WRITE_OPTION = "recycler_write"


class Database:
    """An engine and the two kinds of transaction recycler uses: reading and writing."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = sa.make_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect == "sqlite":
            self.engine = sa.create_engine(self.url, echo=echo)
            _prepare_sqlite(self.engine)
        else:
            self.engine = sa.create_engine(
                self.url, echo=echo, pool_pre_ping=True, pool_size=4, max_overflow=4
            )

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
        sqlite_foreign_keys: bool = True,
    ) -> Iterator[Connection]:
        """A transaction that writes: committed when the block ends, rolled back on error.

        ``commit=False`` rolls back even on success: a dry run does all the work and keeps none.
        ``lock`` takes the base lock first (see BaseLock). ``sqlite_foreign_keys=False`` turns
        SQLite's foreign keys off for the transaction (a pragma that only takes effect outside
        one), for migrations that copy tables.
        """
        with self.engine.connect() as connection:
            pragmas = connection.connection.driver_connection if self.is_sqlite else None
            if pragmas is not None and not sqlite_foreign_keys:
                pragmas.execute("PRAGMA foreign_keys = OFF")
            try:
                connection.execution_options(**{_WRITE_OPTION: True})
                transaction = connection.begin()
                try:
                    if lock is not None and self.is_postgresql:
                        function = (
                            "pg_advisory_xact_lock"
                            if lock is BaseLock.EXCLUSIVE
                            else "pg_advisory_xact_lock_shared"
                        )
                        connection.execute(sa.select(getattr(sa.func, function)(BASE_LOCK_KEY)))
                    yield connection
                except BaseException:
                    transaction.rollback()
                    raise
                if commit:
                    transaction.commit()
                else:
                    transaction.rollback()
            finally:
                if pragmas is not None and not sqlite_foreign_keys:
                    pragmas.execute("PRAGMA foreign_keys = ON")

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

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _prepare_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module, which would otherwise begin
        # transactions lazily and commit behind SQLAlchemy's back around DDL.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
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

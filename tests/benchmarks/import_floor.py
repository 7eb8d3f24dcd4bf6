"""Benchmark: the least an import of new numbers can cost the database; print figures.

Not a test (pytest does not collect it). Every new number of a subscriber import is three rows:
its ownership, the number and its ``ownership.started`` audit event (PRODUCT.md: every change of
ownership is an event). This script writes just those rows for N numbers from a table already
in the database, in SQL, on a schema made by ``recycler db upgrade``: no file, no Python per row,
no staging table, no checks. Its seconds are a floor under ``recycler import subscribers`` of N
new numbers on this machine, whatever the code around them; N divided by them is the most rows a
second an import can reach. On PostgreSQL it also writes the same rows with the tables' indexes
dropped first and built after (what a bulk load by the tables' owner could do), to show what
that would leave. Each try is rolled back.

    python tests/benchmarks/import_floor.py --numbers 1000000
    python tests/benchmarks/import_floor.py --numbers 1000000 \\
        --server postgresql+psycopg://postgres@127.0.0.1/test

docs/scaling.md ("The floor under an import") has the figures.
"""

from __future__ import annotations

import argparse
import functools
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jobs.importing.loader import ImportContext  # noqa: E402
from jobs.importing.reader import CsvFile  # noqa: E402
from jobs.importing.subscribers import SUBSCRIBERS, _Parser  # noqa: E402
from jobs.settings import Settings  # noqa: E402
from tests.benchmarks.exports import subscriber_export  # noqa: E402

# The new numbers, scattered as an export lists them, then in key order as the import's work
# table holds them (jobs.importing.common.add_owned_numbers).
_POSTGRESQL_NUMBERS = """
CREATE TEMPORARY TABLE new_numbers AS
SELECT '+8551' || lpad(((g::bigint * 7919) % {count})::text, 8, '0') AS msisdn,
       'C' || g AS owner_id, 'km'::text AS language,
       date '2026-08-01' + (g % 180) AS validity_end, NULL::date AS owner_since
FROM generate_series(1, {count}) AS g ORDER BY 1
"""
_SQLITE_NUMBERS = """
CREATE TEMPORARY TABLE new_numbers AS
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {count})
SELECT '+8551' || substr('00000000' || ((n * 7919) % {count}), -8) AS msisdn,
       'C' || n AS owner_id, 'km' AS language,
       date('2026-08-01', '+' || (n % 180) || ' days') AS validity_end, NULL AS owner_since
FROM g ORDER BY 1
"""
# The three rows, as the import writes them (ownerships first: the numbers' insert checks that
# each new number starts with an imported ownership).
_ROWS = {
    "ownerships": """
        INSERT INTO ownerships (msisdn, owner_id, language, started_at, started_on, start_cause,
                                started_by, owner_since)
        SELECT msisdn, owner_id, language, {now}, {today}, 'import', 'floor', owner_since
        FROM new_numbers""",
    "numbers": """
        INSERT INTO numbers (msisdn, owner_id, language, validity_end, cycle, on_hold, updated_at)
        SELECT msisdn, owner_id, language, validity_end, 1, {false}, {now} FROM new_numbers""",
    "audit events": """
        INSERT INTO audit_events (occurred_at, event_type, msisdn, actor, owner_id,
                                  validity_end_after, reason)
        SELECT {now}, 'ownership.started', msisdn, 'floor', owner_id, validity_end,
               'imported from the subscriber file'
        FROM new_numbers""",
}
_POSTGRESQL_VALUES = {"now": "now()", "today": "current_date", "false": "false"}
_SQLITE_VALUES = {"now": "'2026-11-27 00:00:00.000000'", "today": "'2026-11-27'", "false": "0"}
# What a bulk load by the tables' owner would drop and build again (the indexes a new number
# adds entries to; the unique ones are constraints while they exist).
_DROPPED = (
    "ALTER TABLE numbers DROP CONSTRAINT pk_numbers CASCADE",
    "ALTER TABLE ownerships DROP CONSTRAINT pk_ownerships CASCADE",
    "ALTER TABLE audit_events DROP CONSTRAINT pk_audit_events CASCADE",
    "DROP INDEX ix_ownerships_msisdn_started_at, ix_ownerships_open_msisdn, "
    "ix_numbers_owned_validity_end, ix_audit_events_msisdn_id",
)
_BUILT = (
    "ALTER TABLE numbers ADD CONSTRAINT pk_numbers PRIMARY KEY (msisdn)",
    "ALTER TABLE ownerships ADD CONSTRAINT pk_ownerships PRIMARY KEY (id)",
    "ALTER TABLE audit_events ADD CONSTRAINT pk_audit_events PRIMARY KEY (id)",
    "CREATE INDEX ix_ownerships_msisdn_started_at ON ownerships (msisdn, started_at)",
    "CREATE UNIQUE INDEX ix_ownerships_open_msisdn ON ownerships (msisdn) WHERE ended_at IS NULL",
    "CREATE INDEX ix_numbers_owned_validity_end ON numbers (validity_end) "
    "WHERE owner_id IS NOT NULL",
    "CREATE INDEX ix_audit_events_msisdn_id ON audit_events (msisdn, id)",
)


def upgrade(url: str) -> None:
    """The schema as recycler makes it."""
    subprocess.run(
        [sys.executable, "-m", "jobs", "db", "upgrade"],
        cwd=ROOT,
        env={**os.environ, "RECYCLER_DATABASE_URL": url},
        check=True,
        capture_output=True,
    )


def timed(label: str, action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    print(f"    {label:<28}{seconds:8.2f} s", flush=True)
    return seconds


def write_rows(execute: Callable[[str], object], values: dict[str, str]) -> float:
    """The three inserts, each timed; their seconds in all."""
    total = 0.0
    for table, sql in _ROWS.items():
        total += timed(table, functools.partial(execute, sql.format(**values)))
    return total


def reading(count: int) -> float:
    """The other share, Python's: reading and checking an export's rows (the import's own
    reader and parser), nothing written."""
    with tempfile.TemporaryDirectory() as folder:
        context = ImportContext(settings=Settings(), now=datetime.now(UTC), actor="floor")
        export = subscriber_export(Path(folder) / "subscribers.csv", count, context.today)
        parse = _Parser(context)
        started = time.perf_counter()
        for row in CsvFile(export, SUBSCRIBERS).rows():
            parse(row)
        seconds = time.perf_counter() - started
    print(f"  Python reading and checking the export: {seconds:.2f} s", flush=True)
    return seconds


def floor_sqlite(count: int, python: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "floor.sqlite"
        upgrade(f"sqlite:///{path}")
        connection = sqlite3.connect(path, isolation_level=None)
        # As recycler's connections are set up (jobs/database/engine.py).
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
            connection.execute(f"PRAGMA {pragma}")
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(_SQLITE_NUMBERS.format(count=count))
        total = write_rows(connection.execute, _SQLITE_VALUES)
        total += timed("commit", lambda: connection.execute("COMMIT"))
        connection.close()
    print(f"  SQLite floor: {total:.2f} s, at most {count / total:,.0f} rows/s")
    print(f"  both shares: at most {count / (total + python):,.0f} rows/s")


def floor_postgresql(server: str, count: int, python: float) -> None:
    admin = psycopg.connect(_libpq(server), autocommit=True)
    name = f"recycler_floor_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = server.rsplit("/", 1)[0] + f"/{name}"
        upgrade(url)
        with psycopg.connect(_libpq(url)) as connection:
            # recycler's sessions keep their work tables in memory (jobs/database/engine.py).
            connection.execute("SET temp_buffers = '256MB'")
            connection.execute(_POSTGRESQL_NUMBERS.format(count=count))
            connection.commit()
            print("  indexes kept up row by row, as an import writes:")
            total = write_rows(connection.execute, _POSTGRESQL_VALUES)
            connection.rollback()
            print(f"  PostgreSQL floor: {total:.2f} s, at most {count / total:,.0f} rows/s")
            # The server takes COPY on one core while Python reads on the other, but the three
            # inserts come after the whole file is in: the two shares add up.
            print(f"  both shares: at most {count / (total + python):,.0f} rows/s")
            print("  indexes dropped, the rows written, the indexes built (by the tables' owner):")
            # Without its indexes the numbers' check of their ownerships would rescan them all.
            connection.execute("SET session_replication_role = replica")
            for statement in _DROPPED:
                connection.execute(statement)
            bulk = write_rows(connection.execute, _POSTGRESQL_VALUES)
            bulk += timed(
                "build the 7 indexes", lambda: [connection.execute(sql) for sql in _BUILT]
            )
            connection.rollback()
            print(f"  bulk load: {bulk:.2f} s, at most {count / bulk:,.0f} rows/s")
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def _libpq(url: str) -> str:
    """A libpq address from an SQLAlchemy URL."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=1_000_000)
    parser.add_argument("--server", help="PostgreSQL server URL; SQLite when absent")
    parser.add_argument("--tries", type=int, default=2)
    arguments = parser.parse_args()
    where = "PostgreSQL" if arguments.server else "SQLite"
    print(f"{where}, the three rows of {arguments.numbers:,} new numbers, no Python per row")
    for _ in range(arguments.tries):
        python = reading(arguments.numbers)
        print(f"  at most {arguments.numbers / python:,.0f} rows/s by Python's share alone")
        if arguments.server:
            floor_postgresql(arguments.server, arguments.numbers, python)
        else:
            floor_sqlite(arguments.numbers, python)


if __name__ == "__main__":
    main()

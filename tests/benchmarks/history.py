"""Benchmark: does a night cost more when years of history lie in the tables? Print figures.

Not a test (pytest does not collect it). Two PostgreSQL databases start alike, as an operator
starts (tests/benchmarks/nightly.py's import path): a subscriber export imported, a day's
top-ups. One of them then gets two years of history, written in SQL: past cycles of every
number with their warnings (8 per number: 4 cycles, 2 stages each, all sent) and audit events
(20 per number over 730 days), then VACUUM ANALYZE as autovacuum would have left it. Both then
run the first night, "send" everything, import the next day's top-ups and run the next night,
whose time is the figure compared. Last, one number's lookups on the database with history:
the story (`recycler number`), the reassigned check and the status, each timed in the process
(without the command's start-up) over 50 numbers (the status, which counts the
whole base, 5 times).

    python tests/benchmarks/history.py --server postgresql+psycopg://postgres@127.0.0.1/test \
        --subscribers 1000000
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jobs.clock import SystemClock  # noqa: E402
from jobs.database.engine import Database  # noqa: E402
from jobs.inspection import number_view, status_view  # noqa: E402
from jobs.safeguards.reassigned import reassigned  # noqa: E402
from jobs.settings import Settings  # noqa: E402
from tests.benchmarks.exports import msisdn_at  # noqa: E402
from tests.benchmarks.nightly import (  # noqa: E402
    HEADER,
    Step,
    bench_import,
    pretend_sent_and_fresh,
)

ZONE = ZoneInfo("Asia/Phnom_Penh")
CYCLES = 4  # past cycles per number, two warnings each
EVENTS = 20  # audit events per number

HISTORY_SQL = [
    # The current cycle comes after the past ones.
    f"UPDATE numbers SET cycle = cycle + {CYCLES}",
    f"""
    INSERT INTO warnings (msisdn, cycle, stage, owner_id, language, grace_end, text, encoding,
                          segments, state, queued_at, queued_on, attempts, next_attempt_at,
                          final_at, final_on)
    SELECT n.msisdn, c.cycle, s.stage, n.owner_id, n.language, g.grace_end,
           'history', 'GSM-7', 1, 'sent', g.queued_at, g.queued_at::date, 1, g.queued_at,
           g.queued_at + interval '1 hour', g.queued_at::date
    FROM numbers n
    CROSS JOIN generate_series(1, {CYCLES}) AS c(cycle)
    CROSS JOIN (VALUES (30), (7)) AS s(stage)
    CROSS JOIN LATERAL (
        SELECT CURRENT_DATE - 730 + c.cycle * 150 AS grace_end,
               (CURRENT_DATE - 730 + c.cycle * 150 - s.stage)::timestamptz AS queued_at
    ) AS g
    WHERE n.owner_id IS NOT NULL
    """,
    f"""
    INSERT INTO audit_events (occurred_at, event_type, msisdn, actor, owner_id, cycle, stage,
                              reason)
    SELECT now() - (e.k * interval '36 days') - (n.id_hash * interval '1 second'),
           (ARRAY['warning.queued', 'warning.sent', 'topup.applied', 'validity.extended'])
               [1 + mod(e.k, 4)],
           n.msisdn, 'history', n.owner_id, 1 + e.k / 5, 30, 'two years of history'
    FROM (SELECT msisdn, owner_id, mod(abs(hashtext(msisdn)), 86400) AS id_hash FROM numbers) n
    CROSS JOIN generate_series(0, {EVENTS - 1}) AS e(k)
    """,
]


def with_history(url: str) -> Step:
    """Write the history in SQL; the time it took and the rows it wrote."""
    database = Database(url)
    started = time.perf_counter()
    with database.engine.connect() as connection:
        connection.exec_driver_sql("SET statement_timeout = 0")
        for statement in HISTORY_SQL:
            connection.exec_driver_sql(statement)
        connection.commit()
        rows = connection.exec_driver_sql(
            "SELECT (SELECT count(*) FROM warnings) + (SELECT count(*) FROM audit_events)"
        ).scalar_one()
    database.refresh_statistics("numbers", "warnings", "audit_events", vacuum=True)
    database.dispose()
    return Step("write 2 years of history", time.perf_counter() - started, 0.0, int(rows))


def lookups(url: str, subscribers: int) -> None:
    """One number's story, the reassigned check and the status, timed in the process."""
    os.environ["RECYCLER_DATABASE_URL"] = url
    settings = Settings()
    database = Database(url)
    clock = SystemClock()
    today = datetime.now(ZONE).date()
    rng = random.Random(5)
    chosen = [msisdn_at(rng.randrange(subscribers)) for _ in range(50)]

    def timing(name: str, call: Callable[[str], Any], times: int = len(chosen)) -> None:
        call(chosen[0])  # warm: connection, statement caches
        spent = []
        for msisdn in chosen[:times]:
            started = time.perf_counter()
            call(msisdn)
            spent.append((time.perf_counter() - started) * 1000)
        print(f"  {name:<34}p50 {statistics.median(spent):7.1f} ms   max {max(spent):7.1f} ms")

    timing("number (story)", lambda m: number_view(database, settings, clock, settings.rules, m))
    timing("reassigned check", lambda m: reassigned(database, settings, clock, m, today))
    timing(
        "status (whole base)",
        lambda _m: status_view(database, settings, clock, settings.rules),
        times=5,
    )
    database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="PostgreSQL server URL")
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    arguments = parser.parse_args()
    admin = sa.create_engine(arguments.server, isolation_level="AUTOCOMMIT")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    for history in (False, True):
        name = f"recycler_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = admin.url.set(database=name).render_as_string(hide_password=False)
        label = "with two years of history" if history else "without history"
        print(f"\nPostgreSQL, {arguments.subscribers:,} subscribers, {label}")
        print(HEADER)
        try:
            with tempfile.TemporaryDirectory() as folder:
                steps = bench_import(
                    url,
                    arguments.subscribers,
                    Path(folder),
                    before_first_night=with_history if history else None,
                    between_nights=pretend_sent_and_fresh,
                )
                for step in steps:
                    print(step.line(), flush=True)
            if history:
                print()
                lookups(url, arguments.subscribers)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()

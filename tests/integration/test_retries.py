"""A transaction the database refuses as a deadlock victim is tried again by the tool (issue 9).

recycler's own processes cannot deadlock one another (they all take the base lock first); a
session from outside can still cross a transaction of theirs. Here a session holds a number's
row and then asks for the base lock while an import that holds the base lock waits for the row:
PostgreSQL breaks the cycle by refusing the import's transaction, and the import, retried, ends
as if nothing had happened.
"""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from jobs.database.engine import BASE_LOCK_KEY
from jobs.importing.loader import ImportSummary
from jobs.importing.topups import import_topups
from tests.support.world import World

D = date(2026, 11, 20)


@pytest.mark.postgresql_only
def test_deadlock_with_a_foreign_session_is_retried(world: World, tmp_path: Path) -> None:
    """The import is the deadlock's victim, is retried, and applies its top-up once."""
    msisdn = world.add_number(D + timedelta(days=10))
    path = tmp_path / "topups.csv"
    path.write_text(
        "topup_id,msisdn,topped_up_at,validity_end\n"
        f"T1,{msisdn},2026-11-25T10:00:00+07:00,{D + timedelta(days=60)}\n"
    )
    url = sa.make_url(world.url).set(drivername="postgresql")
    foreign = psycopg.connect(url.render_as_string(hide_password=False))
    # The foreign session waits long before looking for deadlocks; the import (1 s) looks
    # first, so the import is the one PostgreSQL refuses.
    foreign.execute("SET deadlock_timeout = '20s'")
    foreign.execute("SELECT 1 FROM numbers WHERE msisdn = %s FOR UPDATE", (msisdn,))
    results: list[ImportSummary] = []
    with capture_logs() as logs:
        worker = threading.Thread(
            target=lambda: results.append(
                import_topups(world.database, path, world.settings, world.clock, actor="feed")
            )
        )
        worker.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            # A wait in this database only: under xdist another worker's sessions wait for
            # their own locks on the same server.
            waiting = foreign.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()"
                " AND pid IN (SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database())"
            ).fetchone()
            if waiting is not None and waiting[0] > 0:
                break
            time.sleep(0.05)
        foreign.execute("SELECT pg_advisory_xact_lock(%s)", (BASE_LOCK_KEY,))
        foreign.commit()
        worker.join(timeout=60)
    foreign.close()
    retries = [entry for entry in logs if entry["event"] == "database.retry"]
    assert len(retries) == 1, logs
    assert "deadlock detected" in retries[0]["error"]
    (summary,) = results
    assert (summary.applied, summary.rejected) == (1, 0)
    assert world.number(msisdn).validity_end == D + timedelta(days=60)

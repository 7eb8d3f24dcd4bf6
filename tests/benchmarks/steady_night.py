"""Benchmark: one steady night, run again and again on copies of one base; print figures.

Not a test (pytest does not collect it). PostgreSQL only: it copies databases. A base gets
nights, each followed by everything sent, a fresh feed and 2.6% of the base topping up (the
steady state of issue 10), until its nights are steady; then it is vacuumed (as autovacuum would
between two nights) and kept as a template. ``--path import`` (the default) starts as an
operator starts: a subscriber export (tests/benchmarks/exports.py) whose validity ends are
spread evenly over 150 days, none past grace, imported, then the day's top-up feed, then nine
nights (a grace end needs a week's notice before it is recycled); ``--path seed`` starts from
``recycler seed``, a synthetic base with a history of warnings sent, and two nights. Each try
copies the template (``CREATE DATABASE ... TEMPLATE``), loads the night's tables and indexes
into shared buffers (``pg_prewarm``: a production server runs its night on a warm cache, and a
fresh copy read from disk made the same night take twice as long), and runs the next night for
real, with the code of each ``--tree`` in turn (another checkout of recycler: old and new code
alternate on the same data). The first tree builds the base; each other tree gets a copy of it
upgraded by its own ``recycler db upgrade``, so list the oldest checkout first. Prints the run's
own seconds, the WAL it wrote and what it did.

    python tests/benchmarks/steady_night.py --server postgresql+psycopg://postgres@127.0.0.1/test \\
        --subscribers 1000000 --tries 3 --tree /path/to/an/older/checkout .

A base of 10,000,000 takes about a quarter of an hour to build: ``--keep`` keeps it, and
``--template NAME`` (the name it printed) tries its night again, with any trees, without
building it again.

docs/scaling.md ("A steady night, statement by statement") has the figures at 10,000,000.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jobs.database.engine import Database  # noqa: E402
from jobs.database.schema import runs  # noqa: E402
from jobs.nightly.records import COMPLETED  # noqa: E402
from tests.benchmarks.exports import subscriber_export, topup_export  # noqa: E402
from tests.benchmarks.nightly import (  # noqa: E402
    ZONE,
    pretend_sent_and_fresh,
    run_seconds,
    seed_step,
    timed,
    topup_file,
)

# The night's tables, whose heaps and indexes are prewarmed (the warnings' heap, years of
# history in production, is left to the operating system's cache).
NIGHT_TABLES = ("numbers", "ownerships", "audit_events", "resale_pool", "number_changes")
PREWARM = f"""
    SELECT count(pg_prewarm(c.oid)) FROM pg_class c
    LEFT JOIN pg_index i ON i.indexrelid = c.oid
    WHERE c.relnamespace = 'public'::regnamespace
      AND (c.relname IN ({", ".join(f"'{name}'" for name in NIGHT_TABLES)})
           OR i.indrelid::regclass::text IN ({", ".join(f"'{name}'" for name in NIGHT_TABLES)},
                                             'warnings'))
"""


def build_template(url: str, subscribers: int, folder: Path, tree: Path, path: str) -> str:
    """Import (or seed) a base, run nights on it until they are steady, prepare the next one;
    returns its date."""
    today = datetime.now(ZONE).date()
    # A seeded base has a history of warnings sent: two nights make it steady. An imported one
    # has none: a number reaching its grace end is recycled only with a warning delivered a week
    # before (min_notice_days), so the first week's grace ends are deferred, the eighth night
    # recycles them all, and the ninth and later are steady.
    nights = 3 if path == "seed" else 10
    days = [today - timedelta(days=back) for back in range(nights, 0, -1)]
    database = Database(url)
    daily = max(subscribers * 26 // 1000, 1)
    timed("db upgrade", 0, url, "db", "upgrade", tree=tree)
    allowed: tuple[str, ...] = ()
    if path == "seed":
        seeded = seed_step(url, subscribers, days[0], tree=tree)
        print(f"  seeded {subscribers:,} numbers in {seeded.seconds:.1f} s", flush=True)
    else:
        # Ends over 150 days and none past grace: each night about 2.6% of the base crosses a
        # warning stage and 0.7% reaches its grace end, as issue 10 describes a steady state.
        export = subscriber_export(
            folder / "subscribers.csv", subscribers, days[0], validity=(-90, 59)
        )
        imported = timed(
            "import", subscribers, url, "import", "subscribers", str(export), tree=tree
        )
        print(f"  imported {subscribers:,} numbers in {imported.seconds:.1f} s", flush=True)
        # The feed arrives every day, the first night's included (a stale feed withholds it).
        feed = _feed(database, folder, path, subscribers, daily, days[0], nights)
        timed("top-ups", daily, url, "import", "topups", str(feed), tree=tree)
        # The week after the first night, the grace ends deferred for want of notice are all
        # due at once, more than the mass-recycle guard lets through: an operator allows it
        # once, as here for the nights that build the base (not for the night tried).
        allowed = ("--allow-mass-recycle",)
    for night, (day, following) in enumerate(itertools.pairwise(days)):
        step = timed(
            "night", subscribers, url, "run", "--date", day.isoformat(), *allowed, tree=tree
        )
        print(f"  night of {day.isoformat()}: {step.seconds:.1f} s", flush=True)
        pretend_sent_and_fresh(database, day)
        feed = _feed(database, folder, path, subscribers, daily, following, night)
        timed("top-ups", daily, url, "import", "topups", str(feed), tree=tree)
    database.dispose()
    vacuum(url)
    print(f"  template ready: the night of {days[-1].isoformat()} is tried", flush=True)
    return days[-1].isoformat()


def _feed(
    database: Database,
    folder: Path,
    path: str,
    subscribers: int,
    daily: int,
    following: date,
    night: int,
) -> Path:
    """The top-ups made the day before ``following``, for its night. An imported base gets a
    feed shaped like a billing system's (tests/benchmarks/exports.py: numbers of the export in
    its mixed forms, top-ups spread over the day); a seeded one, whose numbers the export does
    not know, a file of its own numbers read back from the database."""
    if path == "seed":
        return topup_file(
            database, folder, daily, following, prefix=f"steady{night}", skip=night * daily
        )
    return topup_export(
        folder / f"topups-{night}.csv",
        daily,
        subscribers,
        following - timedelta(days=1),
        seed=100 + night,
        prefix="ST",
    )


def night_after(url: str) -> str:
    """The night a kept template was prepared for: the day after its last completed night."""
    database = Database(url)
    with database.read() as connection:
        last: date = connection.execute(
            sa.select(sa.func.max(runs.c.as_of)).where(COMPLETED)
        ).scalar_one()
    database.dispose()
    return (last + timedelta(days=1)).isoformat()


def vacuum(url: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql("VACUUM (ANALYZE)")
    engine.dispose()


def upgraded_copy(admin: sa.Engine, template: str, tree: Path) -> str:
    """A copy of the template, upgraded by the code of ``tree``; returns its name."""
    name = f"recycler_steady_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    timed("db upgrade", 0, url, "db", "upgrade", tree=tree)
    vacuum(url)
    return name


def one_try(admin: sa.Engine, template: str, day: str, tree: Path) -> str:
    """Copy the template, prewarm, run the night with the code of ``tree``; one line."""
    name = f"recycler_steady_try_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            connection.exec_driver_sql(PREWARM)
            connection.exec_driver_sql("CHECKPOINT")
            before = connection.exec_driver_sql("SELECT pg_current_wal_lsn()").scalar_one()
        step = timed("night", 0, url, "run", "--date", day, tree=tree)
        database = Database(url)
        inner = run_seconds(database)
        with database.read() as connection:
            done = connection.execute(
                sa.select(runs.c.warnings_queued, runs.c.recycled, runs.c.deferred)
                .order_by(runs.c.id.desc())
                .limit(1)
            ).one()
        database.dispose()
        with engine.connect() as connection:
            wal = connection.exec_driver_sql(
                f"SELECT pg_current_wal_lsn() - '{before}'::pg_lsn"
            ).scalar_one()
        queued = sum((done.warnings_queued or {}).values())
        return (
            f"  {tree!s:<40}{step.seconds:9.2f}{inner:8.2f}{float(wal) / 2**20:10.0f}"
            f"{queued:>10,}{done.recycled:>10,}{done.deferred:>10,}{step.peak_mb:9.1f}"
        )
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="PostgreSQL server URL")
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--tries", type=int, default=3, help="tries of each tree")
    parser.add_argument(
        "--path",
        choices=("import", "seed"),
        default="import",
        help="build the base from an imported export (default) or from recycler seed",
    )
    parser.add_argument(
        "--tree", type=Path, nargs="+", default=[ROOT], help="checkouts whose code runs the night"
    )
    parser.add_argument("--keep", action="store_true", help="keep the template databases")
    parser.add_argument(
        "--template",
        help="a template kept by an earlier --keep (built by the first tree's code): tried "
        "again without seeding; it is kept",
    )
    arguments = parser.parse_args()
    admin = sa.create_engine(arguments.server, isolation_level="AUTOCOMMIT")
    trees = [tree.resolve() for tree in arguments.tree]
    first = arguments.template or f"recycler_steady_{uuid.uuid4().hex[:8]}"
    url = admin.url.set(database=first).render_as_string(hide_password=False)
    if arguments.template is None:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{first}"')
    templates = {trees[0]: first}
    size = (
        f"{arguments.subscribers:,} subscribers, {arguments.path} path"
        if arguments.template is None
        else first
    )
    print(f"PostgreSQL, {size}, steady night")
    try:
        if arguments.template is None:
            with tempfile.TemporaryDirectory() as folder:
                day = build_template(
                    url, arguments.subscribers, Path(folder), trees[0], arguments.path
                )
        else:
            day = night_after(url)
        for tree in trees[1:]:
            templates[tree] = upgraded_copy(admin, first, tree)
        print(
            f"  {'code':<40}{'seconds':>9}{'in run':>8}{'WAL MB':>10}{'queued':>10}"
            f"{'recycled':>10}{'deferred':>10}{'peak MB':>9}"
        )
        for _ in range(arguments.tries):
            for tree in trees:
                print(one_try(admin, templates[tree], day, tree), flush=True)
    finally:
        for tree, name in templates.items():
            if arguments.keep or name == arguments.template:
                print(f"  kept for {tree}: {admin.url.set(database=name)}")
            else:
                with admin.connect() as connection:
                    connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()

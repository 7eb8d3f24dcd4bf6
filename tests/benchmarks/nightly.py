"""Benchmark: the first nights of an operator's base; print figures.

Not a test (pytest does not collect it): it prints seconds, rows per second and the peak memory of
each step, each step being the real ``recycler`` command in a child process, as an operator runs it.

Two paths. ``--path import`` (the default) starts as an operator starts: a subscriber file shaped
like a billing export (tests/benchmarks/exports.py: national and E.164 forms mixed, both
languages, validity ends over the last 120 and the next 60 days), imported into an empty
database; a day's top-up file; the first night; nothing sent; the next day's top-ups; the next
night. ``--path seed`` starts from ``recycler seed`` (a base that has been running for a while).

    python tests/benchmarks/nightly.py --subscribers 1000000
    python tests/benchmarks/nightly.py --server postgresql+psycopg://postgres@127.0.0.1/test \
        --subscribers 100000 1000000 --path import seed

With ``--server`` each size gets a new PostgreSQL database on that server (dropped afterwards);
without it, a new SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jobs.clock import end_of_day  # noqa: E402
from jobs.database.engine import Database  # noqa: E402
from jobs.database.schema import numbers, runs, warnings  # noqa: E402
from jobs.importing.loader import record_import  # noqa: E402
from jobs.vocabulary import WarningState  # noqa: E402
from tests.benchmarks.exports import subscriber_export, topup_export  # noqa: E402

ZONE = ZoneInfo("Asia/Phnom_Penh")
HEADER = f"  {'step':<26}{'seconds':>9}{'in run':>8}{'rows/s':>12}{'rows':>12}{'peak MB':>10}"


@dataclass
class Step:
    """One timed command."""

    name: str
    seconds: float
    peak_mb: float
    rows: int
    inner_seconds: float | None = None

    def line(self) -> str:
        rate = f"{self.rows / self.seconds:>12,.0f}" if self.rows else f"{'':>12}"
        inner = f"{self.inner_seconds:8.2f}" if self.inner_seconds is not None else f"{'':>8}"
        return (
            f"  {self.name:<26}{self.seconds:9.2f}{inner}{rate}{self.rows:>12,}{self.peak_mb:10.1f}"
        )


def timed(name: str, rows: int, url: str, *args: str, tree: Path = ROOT) -> Step:
    """Run one recycler command in a child process (the code of ``tree``, a checkout); wall
    time and that child's peak RSS."""
    env = {**os.environ, "RECYCLER_DATABASE_URL": url, "RECYCLER_LOG_FORMAT": "json"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "jobs", *args],
        env=env,
        cwd=tree,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    output = (process.stdout.read() if process.stdout else b"").decode()
    errors = (process.stderr.read() if process.stderr else b"").decode()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 3):
        raise SystemExit(f"{name} failed with exit {code}:\n{output}\n{errors}")
    return Step(name, seconds, usage.ru_maxrss / 1024, rows)


def run_seconds(database: Database) -> float:
    """How long the newest run took by its own record (without process start-up)."""
    with database.read() as connection:
        row = connection.execute(
            sa.select(runs.c.started_at, runs.c.finished_at).order_by(runs.c.id.desc()).limit(1)
        ).one()
    return float((row.finished_at - row.started_at).total_seconds())


def pretend_sent_and_fresh(database: Database, day: date) -> None:
    """Between the two nights: the sender delivered everything, the feed arrived for the day."""
    moment = end_of_day(day, ZONE)
    with database.write() as connection:
        connection.execute(
            sa.update(warnings)
            .where(warnings.c.state == WarningState.PENDING)
            .values(state=WarningState.SENT, final_at=moment, final_on=day)
        )
        record_import(
            connection,
            kind="topups",
            source="benchmark",
            now=moment,
            actor="benchmark",
            watermark=moment - timedelta(hours=1),
        )


def topup_file(
    database: Database, folder: Path, count: int, day: date, *, prefix: str = "bench", skip: int = 0
) -> Path:
    """A top-up feed for `count` existing numbers (after the first `skip`), made the evening
    before `day`; its ids start with `prefix`."""
    path = folder / f"topups-{prefix}.csv"
    moment = datetime.combine(day - timedelta(days=1), datetime.min.time(), ZONE) + timedelta(
        hours=18
    )
    with database.read() as connection, path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["topup_id", "msisdn", "topped_up_at", "validity_end", "amount"])
        rows = connection.execution_options(yield_per=10_000).execute(
            sa.select(numbers.c.msisdn)
            .where(numbers.c.owner_id.is_not(None))
            .order_by(numbers.c.msisdn)
            .offset(skip)
            .limit(count)
        )
        for index, (msisdn,) in enumerate(rows):
            writer.writerow(
                [f"{prefix}-{index}", msisdn, moment.isoformat(), day + timedelta(days=30), "5.00"]
            )
    return path


def bench_import(
    url: str,
    subscribers: int,
    folder: Path,
    *,
    before_first_night: Callable[[str], Step] | None = None,
    between_nights: Callable[[Database, date], None] | None = None,
) -> list[Step]:
    """The import path: export, top-ups, first night, next day's top-ups, next night.
    ``before_first_night`` adds a timed step on the database before the first night, and
    ``between_nights`` changes it after the first night (tests/benchmarks/history.py writes
    years of history, then has everything sent)."""
    today = datetime.now(ZONE).date()
    first_day = today - timedelta(days=1)
    database = Database(url)
    steps = [timed("db upgrade", 0, url, "db", "upgrade")]
    export = subscriber_export(folder / "subscribers.csv", subscribers, first_day)
    steps.append(
        timed("import subscribers", subscribers, url, "import", "subscribers", str(export))
    )
    feed_rows = max(subscribers // 10, 1)
    feed = topup_export(folder / "topups-1.csv", feed_rows, subscribers, first_day - timedelta(1))
    steps.append(timed("import top-ups (10%)", feed_rows, url, "import", "topups", str(feed)))
    if before_first_night is not None:
        steps.append(before_first_night(url))
    first = timed("first night's run", subscribers, url, "run", "--date", first_day.isoformat())
    first.inner_seconds = run_seconds(database)
    steps.append(first)
    # By default nothing is sent between the nights: the next night meets every warning still
    # pending.
    if between_nights is not None:
        between_nights(database, first_day)
    daily = max(subscribers * 26 // 1000, 1)  # 2.6% of the base tops up in a day
    feed = topup_export(folder / "topups-2.csv", daily, subscribers, first_day, seed=3, prefix="TV")
    steps.append(timed("import next day's top-ups", daily, url, "import", "topups", str(feed)))
    second = timed("next night's run", subscribers, url, "run", "--date", today.isoformat())
    second.inner_seconds = run_seconds(database)
    steps.append(second)
    database.dispose()
    return steps


def seed_step(url: str, subscribers: int, day: date, *, tree: Path = ROOT) -> Step:
    """``recycler seed`` of a base as it stands on ``day``, timed."""
    return timed(
        "seed",
        subscribers,
        url,
        "seed",
        "--subscribers",
        str(subscribers),
        "--as-of",
        day.isoformat(),
        tree=tree,
    )


def bench_seed(url: str, subscribers: int, folder: Path, topup_share: float = 0.1) -> list[Step]:
    """The seed path: a synthetic base that has been running for a while; between the nights
    everything is sent and ``topup_share`` of the base tops up."""
    today = datetime.now(ZONE).date()
    first_day = today - timedelta(days=1)
    database = Database(url)
    steps = [timed("db upgrade", 0, url, "db", "upgrade")]
    steps.append(seed_step(url, subscribers, first_day))
    first = timed("first night's run", subscribers, url, "run", "--date", first_day.isoformat())
    first.inner_seconds = run_seconds(database)
    steps.append(first)
    pretend_sent_and_fresh(database, first_day)
    feed_rows = max(round(subscribers * topup_share), 1)
    feed = topup_file(database, folder, feed_rows, today)
    steps.append(timed("import topups", feed_rows, url, "import", "topups", str(feed)))
    second = timed("next day's run", subscribers, url, "run", "--date", today.isoformat())
    second.inner_seconds = run_seconds(database)
    steps.append(second)
    database.dispose()
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--server", help="PostgreSQL server URL; SQLite when absent")
    parser.add_argument(
        "--path", nargs="+", choices=("import", "seed"), default=["import"], help="which start"
    )
    parser.add_argument(
        "--topup-share",
        type=float,
        default=0.1,
        help="seed path: the share of the base that tops up between the nights (steady state: "
        "0.026)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep each PostgreSQL database (to look into it)"
    )
    arguments = parser.parse_args()
    admin = (
        sa.create_engine(arguments.server, isolation_level="AUTOCOMMIT")
        if arguments.server
        else None
    )
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    for path, size in ((path, size) for path in arguments.path for size in arguments.subscribers):
        bench: Callable[[str, int, Path], list[Step]] = (
            bench_import
            if path == "import"
            else lambda url, size, folder: bench_seed(url, size, folder, arguments.topup_share)
        )
        with tempfile.TemporaryDirectory() as folder_name:
            folder = Path(folder_name)
            if admin is not None:
                name = f"recycler_bench_{uuid.uuid4().hex[:8]}"
                with admin.connect() as connection:
                    connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
                url = admin.url.set(database=name).render_as_string(hide_password=False)
            else:
                url = f"sqlite:///{folder / 'bench.sqlite3'}"
            kind = "PostgreSQL" if admin is not None else "SQLite"
            print(f"\n{kind}, {size:,} subscribers, {path} path")
            print(HEADER)
            try:
                for step in bench(url, size, folder):
                    print(step.line(), flush=True)
            finally:
                if admin is not None and arguments.keep:
                    print(f"  kept: {url}")
                elif admin is not None:
                    with admin.connect() as connection:
                        connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()

"""Benchmark: drain 100,000 queued warnings through the Twilio adapter with 1, 2 and 4 senders.

Not a test (pytest does not collect it). The Twilio test server runs in processes of its own and
answers every request after 50 ms; the rate limit is off. For each number of sender processes it
prints messages per second (wall time from start to the last sender's exit), the dispatcher's own
database time per message (claims, re-checks and recording, summed over the senders), and each
sender's peak memory.

    python tests/benchmarks/sending.py --server postgresql+psycopg://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jobs.database.engine import Database  # noqa: E402
from jobs.database.migrate import upgrade  # noqa: E402
from tests.support.twilio_server import ACCOUNT_SID, AUTH_TOKEN  # noqa: E402

_QUEUE = """
INSERT INTO numbers (msisdn, owner_id, language, validity_end, cycle, on_hold, updated_at)
SELECT '+85512' || lpad(n::text, 6, '0'), 'owner-' || n, 'en', current_date + 30, 1, false, now()
FROM generate_series(1, :count) AS n;
INSERT INTO ownerships (msisdn, owner_id, language, started_at, started_on, start_cause,
                        started_by)
SELECT msisdn, owner_id, language, now(), current_date, 'import', 'benchmark' FROM numbers;
INSERT INTO warnings (msisdn, cycle, stage, owner_id, language, grace_end, text, encoding,
                      segments, state, queued_at, queued_on, attempts, next_attempt_at)
SELECT msisdn, 1, 30, owner_id, 'en', current_date + 120,
       'Your number ' || msisdn || ' will be resold after 120 days unless you top up.',
       'GSM-7', 1, 'pending', now(), current_date, 0, now()
FROM numbers;
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_servers(port: int, processes: int, latency: float) -> list[subprocess.Popen[bytes]]:
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.twilio_server",
                "--port",
                str(port),
                "--latency",
                str(latency),
                "--reuse-port",
            ],
            cwd=ROOT,
        )
        for _ in range(processes)
    ]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return servers
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the test server did not start")


def drain(
    url: str, base_url: str, senders: int, concurrency: int
) -> tuple[float, float, list[float]]:
    env = {
        **os.environ,
        "RECYCLER_DATABASE_URL": url,
        "RECYCLER_LOG_FORMAT": "json",
        "RECYCLER_GATEWAY": "twilio",
        "RECYCLER_TWILIO_FROM": "+15005550006",
        "RECYCLER_TWILIO_BASE_URL": base_url,
        "RECYCLER_SEND_WINDOW": "00:00-24:00",
        "RECYCLER_SEND_RATE": "0",
        "RECYCLER_SEND_CONCURRENCY": str(concurrency),
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    }
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "jobs", "send", "--once", "--json"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(senders)
    ]
    database_seconds = 0.0
    peaks = []
    for process in processes:
        _, status, usage = os.wait4(process.pid, 0)
        assert process.stdout is not None
        summary = json.loads(process.stdout.read())
        database_seconds += summary["database_seconds"]
        peaks.append(usage.ru_maxrss / 1024)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"a sender failed: {summary}")
    return time.perf_counter() - started, database_seconds, peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="PostgreSQL server URL")
    parser.add_argument("--warnings", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--server-processes", type=int, default=2)
    parser.add_argument("--senders", type=int, nargs="+", default=[1, 2, 4])
    arguments = parser.parse_args()

    admin = sa.create_engine(arguments.server, isolation_level="AUTOCOMMIT")
    name = f"recycler_send_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    port = free_port()
    servers = start_servers(port, arguments.server_processes, arguments.latency)
    database = Database(url)
    try:
        upgrade(database)
        with database.write() as connection:
            for statement in _QUEUE.split(";"):
                if statement.strip():
                    connection.execute(sa.text(statement), {"count": arguments.warnings})
        database.refresh_statistics("numbers", "warnings", vacuum=True)
        print(
            f"{arguments.warnings:,} warnings, gateway latency {arguments.latency * 1000:.0f} ms, "
            f"{arguments.concurrency} in flight per sender, rate limit off, "
            f"{os.cpu_count()} cores shared by senders, {arguments.server_processes} test "
            "server processes and PostgreSQL"
        )
        print(f"  {'senders':>8}{'seconds':>10}{'msg/s':>10}{'db ms/msg':>11}{'peak MB':>10}")
        for senders in arguments.senders:
            with database.write() as connection:
                connection.execute(
                    sa.text(
                        "UPDATE warnings SET state = 'pending', attempts = 0, claimed_by = NULL,"
                        " lease_expires_at = NULL, final_at = NULL, final_on = NULL,"
                        " gateway_message_id = NULL, next_attempt_at = now()"
                    )
                )
                connection.execute(sa.text("DELETE FROM audit_events"))
            database.refresh_statistics("warnings", vacuum=True)
            seconds, database_seconds, peaks = drain(
                url, f"http://127.0.0.1:{port}", senders, arguments.concurrency
            )
            with database.read() as connection:
                sent = connection.execute(
                    sa.text("SELECT count(*) FROM warnings WHERE state = 'sent'")
                ).scalar_one()
            if sent != arguments.warnings:
                raise SystemExit(f"only {sent} of {arguments.warnings} were sent")
            print(
                f"  {senders:>8}{seconds:>10.1f}{sent / seconds:>10,.0f}"
                f"{database_seconds / sent * 1000:>11.3f}{max(peaks):>10.1f}",
                flush=True,
            )
    finally:
        for server in servers:
            server.terminate()
        database.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()

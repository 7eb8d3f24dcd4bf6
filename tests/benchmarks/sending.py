"""Benchmark: drain 100,000 queued warnings through the Twilio adapter with 1, 2 and 4 senders,
or through a real Kannel with its delivery reports.

Not a test (pytest does not collect it). The Twilio test server runs in processes of its own and
answers every request after 50 ms; the rate limit is off. For each number of sender processes it
prints messages per second (wall time from start to the last sender's exit), the dispatcher's own
database time per message (claims, re-checks and recording, summed over the senders), and each
sender's peak memory.

With ``--gateway kannel`` the senders send through Debian's Kannel (bearerbox, smsbox, and
Kannel's fake SMSC, which reports every message delivered), asking for delivery reports at a
`recycler api` process; it also prints how long the last receipt took to arrive after the
senders finished, and how long one `send --once` took to apply them all.

    python tests/benchmarks/sending.py --server postgresql+psycopg://postgres@127.0.0.1/test
    python tests/benchmarks/sending.py --server postgresql+psycopg://postgres@127.0.0.1/test \
        --gateway kannel --warnings 20000 --senders 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jobs.database.engine import Database  # noqa: E402
from jobs.database.migrate import upgrade  # noqa: E402
from tests.support.kannel import PASSWORD, USERNAME, Kannel  # noqa: E402
from tests.support.twilio_server import ACCOUNT_SID, AUTH_TOKEN  # noqa: E402

RECEIPT_SECRET = "benchmark-receipt-secret"

_QUEUE = """
INSERT INTO ownerships (msisdn, owner_id, language, started_at, started_on, start_cause,
                        started_by)
SELECT '+85512' || lpad(n::text, 6, '0'), 'owner-' || n, 'en', now(), current_date, 'import',
       'benchmark'
FROM generate_series(1, :count) AS n;
INSERT INTO numbers (msisdn, owner_id, language, validity_end, cycle, on_hold, updated_at)
SELECT msisdn, owner_id, language, current_date + 30, 1, false, now() FROM ownerships;
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


def twilio_environment(url: str, base_url: str, concurrency: int) -> dict[str, str]:
    return {
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


def kannel_environment(url: str, kannel: Kannel, api_port: int, concurrency: int) -> dict[str, str]:
    return {
        **os.environ,
        "RECYCLER_DATABASE_URL": url,
        "RECYCLER_LOG_FORMAT": "json",
        "RECYCLER_LOG_LEVEL": "warning",
        "RECYCLER_GATEWAY": "kannel",
        "RECYCLER_KANNEL_SENDSMS_URL": kannel.sendsms_url,
        "RECYCLER_KANNEL_USERNAME": USERNAME,
        "RECYCLER_KANNEL_SENDER": "Recycler",
        "RECYCLER_KANNEL_RECEIPT_URL": f"http://127.0.0.1:{api_port}/receipts/kannel",
        "RECYCLER_API_PORT": str(api_port),
        "RECYCLER_SEND_WINDOW": "00:00-24:00",
        "RECYCLER_SEND_RATE": "0",
        "RECYCLER_SEND_CONCURRENCY": str(concurrency),
        "KANNEL_PASSWORD": PASSWORD,
        "KANNEL_RECEIPT_SECRET": RECEIPT_SECRET,
    }


def drain(env: dict[str, str], senders: int) -> tuple[float, float, list[float], int]:
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
    receipts = 0
    peaks = []
    for process in processes:
        _, status, usage = os.wait4(process.pid, 0)
        assert process.stdout is not None
        summary = json.loads(process.stdout.read())
        database_seconds += summary["database_seconds"]
        receipts += summary["receipts"]
        peaks.append(usage.ru_maxrss / 1024)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"a sender failed: {summary}")
    return time.perf_counter() - started, database_seconds, peaks, receipts


def count(database: Database, sql: str) -> int:
    with database.read() as connection:
        return int(connection.execute(sa.text(sql)).scalar_one())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="PostgreSQL server URL")
    parser.add_argument("--gateway", choices=["twilio", "kannel"], default="twilio")
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
    helpers: list[subprocess.Popen[bytes]] = []
    kannel: Kannel | None = None
    database = Database(url)
    try:
        upgrade(database)
        if arguments.gateway == "kannel":
            folder = Path(tempfile.mkdtemp(prefix="recycler-kannel-"))
            kannel = Kannel(folder).start()
            api_port = free_port()
            env = kannel_environment(url, kannel, api_port, arguments.concurrency)
            helpers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "jobs", "api"],
                    env={**env, "RECYCLER_API_SIGNING_KEY_PATH": str(folder / "api-key.pem")},
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_for_port(api_port)
            described = (
                f"through Kannel (bearerbox, smsbox, fake SMSC) with delivery reports to "
                f"`recycler api`, {arguments.concurrency} in flight per sender, rate limit off, "
                f"{os.cpu_count()} cores shared by senders, Kannel, the API and PostgreSQL"
            )
        else:
            port = free_port()
            helpers += start_servers(port, arguments.server_processes, arguments.latency)
            env = twilio_environment(url, f"http://127.0.0.1:{port}", arguments.concurrency)
            described = (
                f"gateway latency {arguments.latency * 1000:.0f} ms, "
                f"{arguments.concurrency} in flight per sender, rate limit off, "
                f"{os.cpu_count()} cores shared by senders, {arguments.server_processes} test "
                "server processes and PostgreSQL"
            )
        with database.write() as connection:
            for statement in _QUEUE.split(";"):
                if statement.strip():
                    connection.execute(sa.text(statement), {"count": arguments.warnings})
        database.refresh_statistics("numbers", "warnings", vacuum=True)
        print(f"{arguments.warnings:,} warnings, {described}")
        heading = f"  {'senders':>8}{'seconds':>10}{'msg/s':>10}{'db ms/msg':>11}{'peak MB':>10}"
        if kannel is not None:
            heading += f"{'receipts in':>13}{'applied in':>12}"
        print(heading)
        for senders in arguments.senders:
            with database.write() as connection:
                connection.execute(
                    sa.text(
                        "UPDATE warnings SET state = 'pending', attempts = 0, claimed_by = NULL,"
                        " lease_expires_at = NULL, final_at = NULL, final_on = NULL,"
                        " gateway_message_id = NULL, next_attempt_at = now(),"
                        " receipt_at = NULL, receipt_on = NULL, receipt_code = NULL"
                    )
                )
                # The audit log is append-only for recycler; a benchmark's reset between
                # rounds (as the server's superuser) sets its triggers aside.
                connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
                connection.execute(sa.text("DELETE FROM audit_events"))
                connection.execute(sa.text("DELETE FROM delivery_receipts"))
            database.refresh_statistics("warnings", vacuum=True)
            seconds, database_seconds, peaks, applied_early = drain(env, senders)
            accepted = count(
                database, "SELECT count(*) FROM warnings WHERE state IN ('sent', 'delivered')"
            )
            if accepted != arguments.warnings:
                raise SystemExit(f"only {accepted} of {arguments.warnings} were sent")
            line = (
                f"  {senders:>8}{seconds:>10.1f}{accepted / seconds:>10,.0f}"
                f"{database_seconds / accepted * 1000:>11.3f}{max(peaks):>10.1f}"
            )
            if kannel is not None:
                line += receipts_figures(database, env, accepted, applied_early)
            print(line, flush=True)
    finally:
        for helper in helpers:
            helper.terminate()
        if kannel is not None:
            kannel.stop()
        database.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')


def receipts_figures(
    database: Database, env: dict[str, str], accepted: int, applied_early: int
) -> str:
    """Wait for every receipt to reach the API, then apply them with one `send --once`;
    returns both times as columns."""
    finished = last_change = time.perf_counter()
    arrived = 0
    # Until every receipt is in, or none has come for 10 s (one that Kannel could not deliver
    # to the API, even after its retries, is reported as missing).
    while arrived < accepted and time.perf_counter() - last_change < 10:
        time.sleep(0.2)
        now_arrived = count(database, "SELECT count(*) FROM delivery_receipts")
        if now_arrived != arrived:
            arrived, last_change = now_arrived, time.perf_counter()
    waited = last_change - finished
    if arrived < accepted:
        print(f"  ({accepted - arrived} receipts never arrived)")
    started = time.perf_counter()
    _, _, _, applied = drain(env, 1)
    applying = time.perf_counter() - started
    delivered = count(database, "SELECT count(*) FROM warnings WHERE state = 'delivered'")
    if delivered != arrived or applied + applied_early != arrived:
        raise SystemExit(f"{delivered} of {arrived} receipts recorded delivered")
    return f"{waited:>12.1f}s{applying:>11.1f}s"


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


if __name__ == "__main__":
    main()

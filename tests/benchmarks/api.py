"""Benchmark: the reassigned API under a bank's load; print checks per second and latencies.

Not a test (pytest does not collect it). It starts as an operator starts: a subscriber export
(tests/benchmarks/exports.py) imported into a new PostgreSQL database, the first night run (so
that part of the base is in the resale pool), a client added with ``recycler api-client add``,
``recycler api`` started as one server process, a token taken from its token endpoint. Then
wrk (Debian's package) drives ``POST /number-recycling/v0.2/check`` over HTTP from another
process, each request a different number of the base and a date among the last two years, and
reports the rate and the latency percentiles, measured by wrk at the client.

    python tests/benchmarks/api.py --server postgresql+psycopg://postgres@127.0.0.1/test \
        --numbers 1000000 --seconds 30 --connections 8 16 32

The per-client rate limit is off for the run (one client would otherwise be held to 50 a
second). The server, wrk and PostgreSQL share this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.exports import msisdn_at, subscriber_export  # noqa: E402

ZONE = ZoneInfo("Asia/Phnom_Penh")
SAMPLE = 20_000  # distinct (number, date) pairs the load cycles through

LUA = """
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local index = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
request = function()
  index = index %% #bodies + 1
  return wrk.format(nil, "/number-recycling/v0.2/check", nil, bodies[index])
end
local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  io.write("latency_us")
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format(" %%g=%%d", p, latency:percentile(p)))
  end
  io.write(string.format(" max=%%d\\n", latency.max))
end
"""


def recycler(url: str, *args: str, extra: dict[str, str] | None = None) -> str:
    """Run one recycler command to completion; its standard output."""
    env = {**os.environ, "RECYCLER_DATABASE_URL": url, "RECYCLER_LOG_FORMAT": "json"}
    result = subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        env={**env, **(extra or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 3):
        raise SystemExit(f"recycler {' '.join(args)}: exit {result.returncode}\n{result.stderr}")
    return result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def token(base_url: str, client_id: str, secret: str) -> str:
    """A token from the API's token endpoint, by HTTP Basic as a bank's client sends it."""
    answer = httpx.post(
        f"{base_url}/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def wait_healthy(base_url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("recycler api stopped")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("recycler api never became healthy")


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def build(url: str, numbers: int, folder: Path) -> None:
    """The base as an operator's first day leaves it: an export imported, the first night run,
    and the statistics as autovacuum would have them by the time banks ask."""
    today = datetime.now(ZONE).date()
    started = time.perf_counter()
    recycler(url, "db", "upgrade")
    export = subscriber_export(folder / "subscribers.csv", numbers, today, owner_since=True)
    recycler(url, "import", "subscribers", str(export))
    recycler(
        url,
        "import",
        "topups",
        "--watermark",
        datetime.now(ZONE).isoformat(),
        str(_empty_feed(folder)),
    )
    recycler(url, "run", "--date", today.isoformat(), "--allow-mass-recycle")
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    print(f"  base ready in {time.perf_counter() - started:.0f} s (import, first night, vacuum)")


def bench(url: str, numbers: int, seconds: int, connections: list[int], folder: Path) -> None:
    today = datetime.now(ZONE).date()

    client = json.loads(recycler(url, "api-client", "add", "Benchmark Bank", "--json"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "RECYCLER_DATABASE_URL": url,
        "RECYCLER_LOG_FORMAT": "json",
        "RECYCLER_API_PORT": str(port),
        "RECYCLER_API_RATE_PER_CLIENT": "0",
        "RECYCLER_API_SIGNING_KEY_PATH": str(folder / "api-key.pem"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "jobs", "api"], env=env, cwd=ROOT, stderr=subprocess.PIPE
    )
    try:
        wait_healthy(base_url, server)
        bearer = token(base_url, client["client_id"], client["client_secret"])
        rng = random.Random(11)
        bodies = folder / "bodies.txt"
        with bodies.open("w") as handle:
            for _ in range(SAMPLE):
                msisdn = msisdn_at(rng.randrange(numbers))
                asked = today - timedelta(days=rng.randint(0, 730))
                handle.write(json.dumps({"phoneNumber": msisdn, "specifiedDate": str(asked)}))
                handle.write("\n")
        script = folder / "check.lua"
        script.write_text(LUA % {"bodies": bodies, "token": bearer})
        # A short warm-up (connections, plans, caches), then one measured run per number of
        # connections wrk holds open (the checks in flight at once).
        _wrk(base_url, script, 5, max(connections))
        for open_connections in connections:
            output = _wrk(base_url, script, seconds, open_connections)
            _report(open_connections, output)
        print(f"  {'answers recorded':<28}{_outcomes(url)}")
        print(f"  {'server peak MB':<28}{peak_mb(server.pid):>12.1f}")
    finally:
        server.terminate()
        server.communicate(timeout=30)


def _report(connections: int, output: str) -> None:
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latencies = dict(re.findall(r"([\w.]+)=(\d+)", output.split("latency_us", 1)[1]))
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors_seen = re.search(r"Socket errors: (.*)", output)
    print(f"  wrk with {connections} connections")
    print(f"  {'  checks/s':<28}{rate:>12,.0f}")
    for name in ("50", "90", "99", "99.9", "max"):
        label = f"  p{name}" if name != "max" else "  max"
        print(f"  {label + ' latency (ms)':<28}{int(latencies[name]) / 1000:>12.1f}")
    print(f"  {'  non-2xx answers':<28}{int(failed.group(1)) if failed else 0:>12,}")
    print(f"  {'  socket errors':<28}{errors_seen.group(1) if errors_seen else 'none':>12}")


def _empty_feed(folder: Path) -> Path:
    path = folder / "topups-none.csv"
    path.write_text("topup_id,msisdn,topped_up_at,validity_end\n")
    return path


def _wrk(base_url: str, script: Path, seconds: int, connections: int) -> str:
    result = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            base_url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def _outcomes(url: str) -> str:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT coalesce(code, CASE WHEN recycled THEN 'true' ELSE 'false' END), count(*) "
            "FROM api_checks GROUP BY 1 ORDER BY 2 DESC"
        ).all()
    engine.dispose()
    return ", ".join(f"{outcome} {count:,}" for outcome, count in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="PostgreSQL server URL")
    parser.add_argument("--numbers", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument(
        "--keep",
        metavar="DATABASE",
        help="build the base in this database and keep it; when it exists, use it as it is",
    )
    arguments = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    admin = sa.create_engine(arguments.server, isolation_level="AUTOCOMMIT")
    name = arguments.keep or f"recycler_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        exists = connection.exec_driver_sql(
            "SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": name}
        ).first()
        if exists is None:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print(
        f"\nPostgreSQL, {arguments.numbers:,} numbers, one `recycler api` process, "
        f"wrk for {arguments.seconds} s per run"
    )
    try:
        with tempfile.TemporaryDirectory() as folder:
            if exists is None:
                build(url, arguments.numbers, Path(folder))
            else:
                print(f"  the base in {name}, as it is")
            bench(url, arguments.numbers, arguments.seconds, arguments.connections, Path(folder))
    finally:
        if arguments.keep is None:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()

"""Run, top-up import, sender and safeguards at random offsets (issue 9): no deadlock, and no
top-up stamped before the run is ever lost to the race.

Each trial builds a base where tonight's run recycles numbers and warns others, with their
numbers interleaved so that the two sets' locks cross, writes a top-up file that names a random
mix of both sets (stamped an hour before the run starts, plus rows for numbers recycler does not
know), and starts the run, the import, a sender and a care agent's hold and release, each after a
random delay of up to 0.45 s, in threads of their own. Whatever order they end in:

- none of them fails (a deadlock, or any other error, is counted);
- every number with a top-up in the file still belongs to its owner, out of the pool, with the
  top-up's validity end (a recycle that committed first is undone by the late top-up);
- every top-up of the file is stored.

`RECYCLER_TEST_RACE_TRIALS` sets the number of trials (default 50 on PostgreSQL, 10 on SQLite,
where one writer at a time cannot deadlock but the top-up rule must hold all the same).
"""

from __future__ import annotations

import csv
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from jobs.database.schema import (
    audit_events,
    numbers,
    ownerships,
    resale_pool,
    topups,
    warnings,
)
from jobs.importing.topups import import_topups
from jobs.safeguards.changes import Operator
from jobs.safeguards.ownership import Safeguards
from jobs.sending.dispatcher import Dispatcher
from jobs.vocabulary import AuditEvent
from notifier.testing import InMemoryGateway
from tests.support.world import World, as_of_noon

D = date(2026, 11, 20)
RECYCLED_TONIGHT = 300
WARNED_TONIGHT = 300
BYSTANDERS = 40  # held and released by care during the race
LATEST_OFFSET = 0.45


@dataclass
class Tally:
    """What went wrong over all trials; every count must end at zero."""

    errors: list[str] = field(default_factory=list)
    deadlocks: int = 0
    recycled_despite_topup: list[str] = field(default_factory=list)
    lost_topups: list[str] = field(default_factory=list)
    # Which order the trials ended in: the import first, or the run first (then the late
    # top-ups gave the numbers back). Both must have happened for the test to mean anything.
    import_first: int = 0
    run_first: int = 0


def trials(world: World) -> int:
    default = "50" if world.database.is_postgresql else "10"
    return int(os.environ.get("RECYCLER_TEST_RACE_TRIALS", default))


def build_base(world: World) -> tuple[list[str], list[str], list[str]]:
    """Numbers recycled tonight, numbers warned tonight (interleaved in msisdn order), and
    bystanders; each with the warnings an earlier night left."""
    now = world.clock.now()
    doomed, warned, bystanders = [], [], []
    rows, owned, earlier = [], [], []
    for index in range(RECYCLED_TONIGHT + WARNED_TONIGHT + BYSTANDERS):
        msisdn = f"+85512{index:06d}"
        if index >= RECYCLED_TONIGHT + WARNED_TONIGHT:
            bystanders.append(msisdn)
            validity_end = D + timedelta(days=40)
        elif index % 2 == 0:
            doomed.append(msisdn)
            validity_end = D - timedelta(days=95)  # grace ended 5 days ago
        else:
            warned.append(msisdn)
            validity_end = D - timedelta(days=83)  # 7 days left: stage 7 tonight
        rows.append(
            {
                "msisdn": msisdn,
                "owner_id": f"owner-{index}",
                "language": "en",
                "validity_end": validity_end,
                "cycle": 1,
                "on_hold": False,
                "updated_at": now,
            }
        )
        owned.append(
            {
                "msisdn": msisdn,
                "owner_id": f"owner-{index}",
                "language": "en",
                "started_at": now - timedelta(days=400),
                "started_on": D - timedelta(days=400),
                "start_cause": "import",
                "started_by": "test",
            }
        )
        if msisdn in bystanders:
            continue
        stage = 1 if msisdn in doomed else 14
        final_on = D - timedelta(days=10) if msisdn in doomed else D - timedelta(days=8)
        earlier.append(
            {
                "msisdn": msisdn,
                "cycle": 1,
                "stage": stage,
                "owner_id": f"owner-{index}",
                "language": "en",
                "grace_end": validity_end + timedelta(days=90),
                "text": "earlier warning",
                "encoding": "GSM-7",
                "segments": 1,
                "state": "sent",
                "queued_at": now - timedelta(days=10),
                "queued_on": final_on,
                "next_attempt_at": now - timedelta(days=10),
                "final_at": now - timedelta(days=10),
                "final_on": final_on,
            }
        )
    with world.database.write() as connection:
        connection.execute(ownerships.insert(), owned)
        connection.execute(numbers.insert(), rows)
        connection.execute(warnings.insert(), earlier)
    world.fresh_feed(D)
    return doomed, warned, bystanders


def write_topups(path: Path, rng: random.Random, doomed: list[str], warned: list[str]) -> set[str]:
    """A random mix of both sets, shuffled, stamped an hour before the run; plus unknown
    numbers. Returns the numbers topped up."""
    chosen = rng.sample(doomed, rng.randint(50, len(doomed))) + rng.sample(
        warned, rng.randint(50, len(warned))
    )
    rng.shuffle(chosen)
    stamped = "2026-11-20T11:00:00+07:00"  # the run starts at noon
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["topup_id", "msisdn", "topped_up_at", "validity_end"])
        for number, msisdn in enumerate(chosen):
            writer.writerow([f"T{number}", msisdn, stamped, (D + timedelta(days=30)).isoformat()])
        for unknown in range(5):
            writer.writerow([f"U{unknown}", f"+85517{unknown:06d}", stamped, "2026-12-20"])
    return set(chosen)


def race(world: World, tally: Tally, rng: random.Random, folder: Path) -> None:
    """One trial."""
    world.reset()
    world.clock.moment = as_of_noon(D, world.settings)
    doomed, warned, bystanders = build_base(world)
    path = folder / "topups.csv"
    topped_up = write_topups(path, rng, doomed, warned)
    sending = world.with_settings(send_window="00:00-24:00", send_rate=0, send_concurrency=8)
    care = Operator("care-agent", "customer called")
    held = rng.sample(bystanders, 5)

    def run() -> None:
        world.run(D, allow_mass_recycle=True)

    def importing() -> None:
        import_topups(world.database, path, world.settings, world.clock, actor="feed")

    def sender() -> None:
        Dispatcher(sending.database, sending.settings, InMemoryGateway(), world.clock).drain()

    def safeguards() -> None:
        for msisdn in held:
            Safeguards.of(world.database, world.settings, world.clock).hold(msisdn, care)
        for msisdn in held:
            Safeguards.of(world.database, world.settings, world.clock).release(msisdn, care)

    jobs: list[Callable[[], None]] = [run, importing, sender, safeguards]
    threads = [
        threading.Thread(target=_after, args=(rng.uniform(0, LATEST_OFFSET), job, tally))
        for job in jobs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    check(world, tally, topped_up)


def _after(delay: float, job: Callable[[], None], tally: Tally) -> None:
    time.sleep(delay)
    try:
        job()
    except Exception as error:  # counted, not raised: the trial goes on to its checks
        text = f"{job.__name__}: {type(error).__name__}: {error}"
        tally.errors.append(text.splitlines()[0])
        if "deadlock" in text.lower():
            tally.deadlocks += 1


def check(world: World, tally: Tally, topped_up: set[str]) -> None:
    """Every topped-up number kept with the top-up's validity; every top-up stored."""
    with world.database.read() as connection:
        state: dict[str, Any] = {
            row.msisdn: row
            for row in connection.execute(
                sa.select(numbers.c.msisdn, numbers.c.owner_id, numbers.c.validity_end).where(
                    numbers.c.msisdn.in_(sorted(topped_up))
                )
            )
        }
        in_pool = set(
            connection.execute(
                sa.select(resale_pool.c.msisdn).where(
                    resale_pool.c.left_at.is_(None), resale_pool.c.msisdn.in_(sorted(topped_up))
                )
            ).scalars()
        )
        stored = set(
            connection.execute(
                sa.select(topups.c.msisdn).where(topups.c.msisdn.in_(sorted(topped_up)))
            ).scalars()
        )
        given_back = connection.execute(
            sa.select(sa.func.count()).where(
                audit_events.c.event_type == AuditEvent.OWNERSHIP_REINSTATED,
                audit_events.c.actor == "feed",
            )
        ).scalar_one()
    if given_back:
        tally.run_first += 1
    else:
        tally.import_first += 1
    for msisdn in sorted(topped_up):
        row = state[msisdn]
        expected_owner = f"owner-{int(msisdn[-6:])}"
        if (
            msisdn in in_pool
            or row.owner_id != expected_owner
            or row.validity_end != D + timedelta(days=30)
        ):
            tally.recycled_despite_topup.append(msisdn)
        if msisdn not in stored:
            tally.lost_topups.append(msisdn)


def test_run_import_sender_and_safeguards_race(world: World, tmp_path: Path) -> None:
    """No deadlock, no number recycled despite a top-up, no top-up lost, in any trial."""
    tally = Tally()
    rng = random.Random(20261126)
    count = trials(world)
    for _ in range(count):
        race(world, tally, rng, tmp_path)
    summary = (
        f"{count} trials: {tally.deadlocks} deadlocks, {len(tally.errors)} errors, "
        f"{len(tally.recycled_despite_topup)} numbers recycled or left behind despite a top-up, "
        f"{len(tally.lost_topups)} top-ups lost; the import first in {tally.import_first}, "
        f"the run first in {tally.run_first}"
    )
    print(summary)
    assert tally.deadlocks == 0, summary + f"; first errors: {tally.errors[:3]}"
    assert tally.errors == [], summary + f"; first errors: {tally.errors[:3]}"
    assert tally.recycled_despite_topup == [], summary
    assert tally.lost_topups == [], summary
    assert tally.import_first > 0, summary
    assert tally.run_first > 0, summary

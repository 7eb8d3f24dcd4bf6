"""A test's world: a real database, settings, a clock that stands still, and short ways to build a
base, run the nightly job and read back exactly what happened to each number."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from jobs.clock import FixedClock, end_of_day
from jobs.database.engine import Database
from jobs.database.schema import (
    audit_events,
    metadata,
    numbers,
    ownerships,
    resale_pool,
    runs,
    topups,
    transfer_decisions,
    transfer_requests,
    warnings,
)
from jobs.importing.loader import ImportSummary, record_import
from jobs.importing.subscribers import import_subscribers
from jobs.importing.topups import import_topups
from jobs.nightly import RunOptions, RunReport, run_nightly
from jobs.safeguards.changes import Change, Operator
from jobs.safeguards.requests import FourEyes
from jobs.sending.dispatcher import Dispatcher
from jobs.settings import Settings, load_settings
from jobs.transitions import note_changes
from jobs.vocabulary import MessageKind, RunOutcome, WarningState
from notifier.templates import TemplateBook
from notifier.testing import InMemoryGateway

__all__ = ["APPROVER", "REQUESTER", "NumberState", "World", "as_of_noon"]

# The two people of the four-eyes workflow, as the tests name them.
REQUESTER = Operator(actor="agent-ana", reason="both owners signed at shop 12")
APPROVER = Operator(actor="supervisor-sok", reason="consents checked")

TEMPLATES = TemplateBook.load()


def as_of_noon(day: date, settings: Settings) -> datetime:
    """Noon of a local date, in UTC: a moment safely inside that day."""
    return datetime.combine(day, time(12), tzinfo=settings.zone).astimezone(UTC)


@dataclass(frozen=True)
class NumberState:
    """What a test looks at for one number."""

    owner_id: str | None
    validity_end: date | None
    cycle: int
    in_pool: bool


class World:
    """One database plus the means to act on it as the product would."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        clock: FixedClock,
        counter: itertools.count[int] | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.clock = clock
        # Shared with worlds made by with_settings: one database, one sequence of numbers.
        self._counter = counter or itertools.count(1)

    @classmethod
    def create(cls, url: str, **settings: Any) -> World:
        """A world on a migrated database; settings override the defaults."""
        chosen = load_settings(database_url=url, **settings)
        return cls(Database(url), chosen, FixedClock(datetime(2026, 11, 25, 5, tzinfo=UTC)))

    @property
    def url(self) -> str:
        """The database URL with its password, for subprocesses."""
        return self.database.url.render_as_string(hide_password=False)

    def close(self) -> None:
        """Release every connection."""
        self.database.dispose()

    def with_settings(self, **changes: Any) -> World:
        """The same database with other settings."""
        merged = {**self.settings.model_dump(), **changes}
        return World(self.database, load_settings(**merged), self.clock, self._counter)

    def reset(self) -> None:
        """Empty every table (for property tests that reuse one database).

        The database refuses to delete audit events, ownership history and numbers, rightly; a
        test that starts over steps around its own guards, and puts them back as they were.
        """
        with self.database.write(sqlite_foreign_keys=False) as connection:
            triggers: list[str] = []
            if self.database.is_postgresql:
                connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
            else:
                found = connection.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                ).all()
                for name, sql in found:
                    connection.exec_driver_sql(f"DROP TRIGGER {name}")
                    triggers.append(sql)
            for table in reversed(metadata.sorted_tables):
                connection.execute(table.delete())
            for sql in triggers:
                connection.exec_driver_sql(sql)

    # Building a base ---------------------------------------------------------------------

    def next_msisdn(self) -> str:
        """A fresh, valid Cambodian number."""
        return f"+85512{next(self._counter):06d}"

    def add_number(
        self,
        validity_end: date,
        *,
        msisdn: str | None = None,
        owner_id: str = "owner-1",
        language: str = "en",
        on_hold: bool = False,
        noted: bool = True,
    ) -> str:
        """An owned number with its ownership record, noted for the next night as recycler's
        own writers note it (``noted=False``: as if written by hand in SQL, unnoted)."""
        number = msisdn or self.next_msisdn()
        now = self.clock.now()
        # The ownership first: the database checks a new number's ownership as it is added.
        with self.database.write() as connection:
            connection.execute(
                ownerships.insert().values(
                    msisdn=number,
                    owner_id=owner_id,
                    language=language,
                    started_at=now,
                    started_on=now.date(),
                    start_cause="import",
                    started_by="test",
                )
            )
            connection.execute(
                numbers.insert().values(
                    msisdn=number,
                    owner_id=owner_id,
                    language=language,
                    validity_end=validity_end,
                    cycle=1,
                    on_hold=on_hold,
                    updated_at=now,
                )
            )
            if noted:  # the next night examines it whatever its stage
                note_changes(connection, sa.select(sa.literal(number)))
        return number

    def add_warning(
        self,
        msisdn: str,
        stage: int,
        *,
        state: str = "sent",
        final_on: date | None = None,
        queued_on: date | None = None,
    ) -> None:
        """A warning of the number's current cycle, as an earlier night would have left it."""
        now = self.clock.now()
        with self.database.write() as connection:
            number = connection.execute(sa.select(numbers).where(numbers.c.msisdn == msisdn)).one()
            connection.execute(
                warnings.insert().values(
                    msisdn=msisdn,
                    cycle=number.cycle,
                    stage=stage,
                    owner_id=number.owner_id,
                    language=number.language,
                    grace_end=number.validity_end + timedelta(days=self.settings.grace_days),
                    text="earlier warning",
                    encoding="GSM-7",
                    segments=1,
                    state=state,
                    queued_at=now,
                    queued_on=queued_on or final_on or now.date(),
                    next_attempt_at=now,
                    final_at=now if final_on else None,
                    final_on=final_on,
                )
            )

    def queue_warnings(self, count: int, *, language: str = "en") -> list[str]:
        """`count` owned numbers, each with one pending warning of its own text, in bulk."""
        now = self.clock.now()
        first = next(self._counter)
        for _ in range(count - 1):
            next(self._counter)
        numbers_rows = [
            {
                "msisdn": f"+85512{index:06d}",
                "owner_id": f"owner-{index}",
                "language": language,
                "validity_end": now.date() + timedelta(days=30),
                "cycle": 1,
                "on_hold": False,
                "updated_at": now,
            }
            for index in range(first, first + count)
        ]
        with self.database.write() as connection:
            connection.execute(
                ownerships.insert(),
                [
                    {
                        "msisdn": row["msisdn"],
                        "owner_id": row["owner_id"],
                        "language": language,
                        "started_at": now,
                        "started_on": now.date(),
                        "start_cause": "import",
                        "started_by": "test",
                    }
                    for row in numbers_rows
                ],
            )
            connection.execute(numbers.insert(), numbers_rows)
            connection.execute(
                warnings.insert(),
                [
                    {
                        "msisdn": row["msisdn"],
                        "cycle": 1,
                        "stage": 30,
                        "owner_id": row["owner_id"],
                        "language": language,
                        "grace_end": now.date() + timedelta(days=120),
                        "text": f"Warning for {row['msisdn']}",
                        "encoding": "GSM-7",
                        "segments": 1,
                        "state": "pending",
                        "queued_at": now,
                        "queued_on": now.date(),
                        "next_attempt_at": now,
                    }
                    for row in numbers_rows
                ],
            )
        return [row["msisdn"] for row in numbers_rows]

    def warning_states(self) -> dict[str, int]:
        """How many warnings are in each state."""
        with self.database.read() as connection:
            rows = connection.execute(
                sa.select(warnings.c.state, sa.func.count()).group_by(warnings.c.state)
            )
            return {state: count for state, count in rows}

    def fresh_feed(self, day: date) -> None:
        """Declare the top-up feed complete up to the end of a day, so the stale guard is quiet."""
        moment = end_of_day(day, self.settings.zone)
        with self.database.write() as connection:
            record_import(
                connection, kind="topups", source="test", now=moment, actor="test", watermark=moment
            )

    def record_run(
        self, as_of: date, finished: datetime, outcome: str = RunOutcome.SUCCEEDED
    ) -> None:
        """A run record as an earlier night left it (signed "test", so tests can tell)."""
        with self.database.write() as connection:
            connection.execute(
                runs.insert().values(
                    as_of=as_of,
                    dry_run=False,
                    started_at=finished - timedelta(minutes=1),
                    finished_at=finished,
                    outcome=outcome,
                    actor="test",
                    host="test",
                    pid=1,
                )
            )

    # Acting ------------------------------------------------------------------------------

    def run(self, as_of: date, **options: Any) -> RunReport:
        """The nightly run for a date, on a clock set to that date unless it is already later."""
        noon = as_of_noon(as_of, self.settings)
        if self.clock.now() < noon:
            self.clock.moment = noon
        return run_nightly(
            self.database, self.settings, TEMPLATES, self.clock, RunOptions(as_of=as_of, **options)
        )

    def run_at_clock(self, as_of: date, **options: Any) -> RunReport:
        """The nightly run for a date, leaving the clock where it is."""
        return run_nightly(
            self.database, self.settings, TEMPLATES, self.clock, RunOptions(as_of=as_of, **options)
        )

    def import_topup(self, msisdn: str, moment: datetime, validity_end: date) -> ImportSummary:
        """Import one top-up through the real import, with the clock at least at its moment."""
        topup = next(self._counter)
        line = f"T{topup},{msisdn},{moment.isoformat()},{validity_end.isoformat()}"
        saved = self.clock.moment
        self.clock.moment = max(saved, moment)
        try:
            return self._import(import_topups, "topup_id,msisdn,topped_up_at,validity_end", [line])
        finally:
            self.clock.moment = saved

    def import_subscribers(self, rows: Iterable[tuple[str, str, str, date]]) -> ImportSummary:
        """Import subscriber rows (number, owner, language, validity end) through the real
        import, as an operator's file brings them."""
        lines = [
            f"{msisdn},{owner},{language},{end.isoformat()}"
            for msisdn, owner, language, end in rows
        ]
        return self._import(import_subscribers, "msisdn,owner_id,language,validity_end", lines)

    def _import(
        self, importer: Callable[..., ImportSummary], header: str, lines: list[str]
    ) -> ImportSummary:
        """Write the lines under the header to a CSV file and import it as `test`."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "import.csv"
            path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
            return importer(self.database, path, self.settings, self.clock, actor="test")

    # Four eyes ---------------------------------------------------------------------------

    def four_eyes(self, **settings: Any) -> FourEyes:
        """The four-eyes operations, with these settings changed."""
        chosen = self.with_settings(**settings) if settings else self
        return FourEyes.of(chosen.database, chosen.settings, self.clock)

    def send_notices(self, gateway: InMemoryGateway | None = None) -> InMemoryGateway:
        """Send the owners' notices due now through an in-memory gateway: the real sender,
        limited to as many messages as there are notices (they are claimed first)."""
        chosen = gateway or InMemoryGateway()
        with self.database.read() as connection:
            due = connection.execute(
                sa.select(sa.func.count()).where(
                    warnings.c.kind == MessageKind.OWNER_NOTICE,
                    warnings.c.state == WarningState.PENDING,
                )
            ).scalar_one()
        if due:
            settings = self.with_settings(send_window="00:00-24:00").settings
            Dispatcher(self.database, settings, chosen, self.clock).drain(limit=due)
        return chosen

    def transfer(self, msisdn: str, to_owner: str, **request: Any) -> Change:
        """A transfer through the whole workflow: requested, notice sent, approved by a second
        person (no cool-off)."""
        eyes = self.four_eyes(transfer_cooloff_hours=0)
        opened = eyes.request_transfer(
            msisdn,
            REQUESTER,
            to_owner=to_owner,
            consent_current=request.pop("consent_current", "SIGNED-CURRENT"),
            consent_new=request.pop("consent_new", f"SIGNED-{to_owner}"),
            **request,
        )
        self.send_notices()
        return eyes.approve(opened.id, APPROVER)

    def reinstate_by_force(self, msisdn: str, validity_end: date | None = None) -> Change:
        """A forced reinstatement through the whole workflow."""
        eyes = self.four_eyes()
        opened = eyes.request_reinstatement(msisdn, REQUESTER, validity_end=validity_end)
        self.send_notices()
        return eyes.approve(opened.id, APPROVER)

    def notices_of(self, msisdn: str) -> list[tuple[str, str]]:
        """(state, text) of every owner's notice sent to a number, oldest first."""
        with self.database.read() as connection:
            rows = connection.execute(
                sa.select(warnings.c.state, warnings.c.text)
                .where(warnings.c.msisdn == msisdn, warnings.c.kind == MessageKind.OWNER_NOTICE)
                .order_by(warnings.c.id)
            )
            return [(row.state, row.text) for row in rows]

    # Looking -----------------------------------------------------------------------------

    def number(self, msisdn: str) -> NumberState:
        """Owner, validity end, cycle, and whether it is in the pool."""
        with self.database.read() as connection:
            row = connection.execute(sa.select(numbers).where(numbers.c.msisdn == msisdn)).one()
            in_pool = connection.execute(
                sa.select(sa.func.count()).where(
                    resale_pool.c.msisdn == msisdn, resale_pool.c.left_at.is_(None)
                )
            ).scalar_one()
        return NumberState(row.owner_id, row.validity_end, row.cycle, bool(in_pool))

    def warnings_of(self, msisdn: str) -> list[tuple[int, int, str]]:
        """(cycle, stage, state) of every warning of a number, oldest first (owners' notices
        apart: ``notices_of``)."""
        with self.database.read() as connection:
            rows = connection.execute(
                sa.select(warnings.c.cycle, warnings.c.stage, warnings.c.state)
                .where(warnings.c.msisdn == msisdn, warnings.c.kind == MessageKind.WARNING)
                .order_by(warnings.c.id)
            )
            return [(row.cycle, row.stage, row.state) for row in rows]

    def events_of(self, msisdn: str) -> list[str]:
        """The audit event types of a number, oldest first."""
        with self.database.read() as connection:
            rows = connection.execute(
                sa.select(audit_events.c.event_type)
                .where(audit_events.c.msisdn == msisdn)
                .order_by(audit_events.c.id)
            )
            return [row.event_type for row in rows]

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Everything the rules decide, without ids or times, to compare two databases."""
        with self.database.read() as connection:
            return {
                "numbers": sorted(
                    connection.execute(
                        sa.select(
                            numbers.c.msisdn,
                            numbers.c.owner_id,
                            numbers.c.validity_end,
                            numbers.c.cycle,
                        )
                    ).all()
                ),
                "warnings": sorted(
                    connection.execute(
                        sa.select(
                            warnings.c.msisdn,
                            warnings.c.cycle,
                            warnings.c.stage,
                            warnings.c.state,
                            warnings.c.text,
                            warnings.c.segments,
                        )
                    ).all(),
                    key=repr,  # an owner's notice has no cycle or stage
                ),
                "requests": sorted(
                    connection.execute(
                        sa.select(
                            transfer_requests.c.msisdn,
                            transfer_requests.c.kind,
                            transfer_requests.c.to_owner,
                            transfer_decisions.c.decision,
                        ).select_from(transfer_requests.outerjoin(transfer_decisions))
                    ).all(),
                    key=repr,
                ),
                "pool": sorted(
                    connection.execute(
                        sa.select(
                            resale_pool.c.msisdn,
                            resale_pool.c.entered_on,
                            resale_pool.c.available_from,
                        )
                    ).all()
                ),
                "ownerships": sorted(
                    connection.execute(
                        sa.select(
                            ownerships.c.msisdn,
                            ownerships.c.owner_id,
                            ownerships.c.end_cause,
                            ownerships.c.final_validity_end,
                        )
                    ).all(),
                    key=repr,
                ),
                "events": sorted(
                    connection.execute(
                        sa.select(
                            audit_events.c.event_type,
                            audit_events.c.msisdn,
                            audit_events.c.stage,
                            audit_events.c.cycle,
                        )
                    ).all(),
                    key=repr,
                ),
                "topups": sorted(connection.execute(sa.select(topups.c.topup_id)).all()),
            }

    def run_records(self) -> list[sa.Row[Any]]:
        """Every run record, oldest first."""
        with self.database.read() as connection:
            return list(connection.execute(sa.select(runs).order_by(runs.c.id)))

"""``recycler seed``: a synthetic subscriber base for demos and benchmarks.

The base looks like one the system has been running on for a while, so that the first nightly run
on the as-of date D is a normal night:

- Cambodian mobile numbers on real operator prefixes, about 80% Khmer and 20% English speakers;
- validity ends spread from 90 days before D to 60 days after, each with the top-up that set it;
- warnings already sent for the stages each number passed before D (synthetic history, queued by
  no run), so that D brings only the numbers reaching a stage exactly on D;
- a few numbers just past grace end with notice given (recycled on D, well under the mass-recycle
  guard), a few past it with no warning (deferred, with a final notice queued), and a few whose
  only warning went out too recently (deferred).

Numbers are generated in chunks and streamed to a staging table, then merged with set-based SQL;
numbers the database already has are left alone, so seeding twice changes nothing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.clock import Clock, local_date
from jobs.database.engine import BaseLock, Database, retried
from jobs.database.functions import add_days, insert_selected, named_select
from jobs.database.schema import (
    audit_events,
    numbers,
    warnings,
)
from jobs.importing.common import add_owned_numbers, insert_topups
from jobs.importing.loader import record_import
from jobs.importing.staging import StagingTable, staging_table
from jobs.nightly.frames import FrameRow, frame_row, framed_text, load_frames, text_frames
from jobs.rules import Rules
from jobs.settings import Settings
from jobs.vocabulary import AuditEvent, ImportKind, Language, OwnershipStart, WarningState
from notifier.templates import TemplateBook, TemplateKind

__all__ = ["MOBILE_PREFIXES", "SeedSummary", "number_at", "seed"]

# Cambodian mobile prefixes (after the trunk 0) and how many digits follow them.
MOBILE_PREFIXES: tuple[tuple[str, int], ...] = (
    *(
        (prefix, 6)
        for prefix in (
            "10",
            "11",
            "12",
            "15",
            "16",
            "17",
            "60",
            "61",
            "66",
            "67",
            "68",
            "69",
            "70",
            "77",
            "78",
            "81",
            "85",
            "86",
            "87",
            "89",
            "90",
            "92",
            "93",
            "95",
            "98",
            "99",
        )
    ),
    *((prefix, 7) for prefix in ("31", "38", "71", "76", "88", "96", "97")),
)
_SPACE = sum(10**digits for _, digits in MOBILE_PREFIXES)
# Prepaid plans: price in US dollars and the days of validity it buys.
_PLANS = ((Decimal(1), 7), (Decimal(2), 15), (Decimal(5), 30), (Decimal(10), 60), (Decimal(15), 90))
_CHUNK = 20_000


class SeedRow(NamedTuple):
    """One synthetic number, with the top-up that set its validity end."""

    line: int
    raw: str
    msisdn: str
    owner_id: str
    language: str
    validity_end: date
    topup_id: str
    topped_up_at: datetime
    amount: Decimal
    # Which warnings the number already had before D: all passed stages, the last one, or none.
    history: str
    reject: str | None


seed_staging = staging_table("staging_seed", SeedRow)


@dataclass(frozen=True)
class SeedSummary:
    """What a seed did."""

    requested: int
    created: int
    already_present: int
    as_of: date
    random_seed: int

    def to_json(self) -> dict[str, Any]:
        """The machine-readable summary."""
        return {
            "requested": self.requested,
            "created": self.created,
            "already_present": self.already_present,
            "as_of": self.as_of.isoformat(),
            "random_seed": self.random_seed,
        }


def number_at(index: int) -> str:
    """The E.164 number at a position of the mobile number space."""
    for prefix, digits in MOBILE_PREFIXES:
        size = 10**digits
        if index < size:
            return f"+855{prefix}{index:0{digits}d}"
        index -= size
    raise IndexError(index)


@dataclass(frozen=True)
class _Plan:
    """Where the base stands relative to D; offsets are validity end minus D, in days."""

    as_of: date
    rules: Rules

    def pick(self, rng: random.Random) -> tuple[int, str]:
        """A validity-end offset and the history that goes with it."""
        grace = self.rules.grace_days
        draw = rng.random()
        if draw < 0.005:  # just past grace end, warned in time: recycled on D
            return -grace - 1 - rng.randrange(4), "full"
        if draw < 0.006:  # past grace end, never warned (imported late): deferred
            return -grace - 1 - rng.randrange(5), "none"
        if draw < 0.0065:  # past grace end, warned only the day before grace end: deferred
            return -grace - 2, "last"
        return rng.randint(-grace, 60), "full"


def _rows(summary_seed: int, count: int, plan: _Plan, zone: Any) -> Iterator[SeedRow]:
    rng = random.Random(summary_seed)
    # An affine walk over the number space: every index gives a different number, no memory.
    stride = 2_654_435_761
    while math.gcd(stride, _SPACE) != 1:
        stride += 2
    start = rng.randrange(_SPACE)
    for index in range(count):
        msisdn = number_at((start + stride * index) % _SPACE)
        offset, history = plan.pick(rng)
        validity_end = plan.as_of + timedelta(days=offset)
        # The plan whose validity fits, bought the day before D or earlier.
        price, days = next(
            ((price, days) for price, days in _PLANS if days >= offset + 1), _PLANS[-1]
        )
        bought_on = validity_end - timedelta(days=days)
        moment = datetime.combine(bought_on, time(8), tzinfo=zone) + timedelta(
            seconds=rng.randrange(14 * 3600)
        )
        yield SeedRow(
            line=index + 1,
            raw="",
            msisdn=msisdn,
            owner_id=f"KH{summary_seed % 100:02d}{index:09d}",
            language=Language.KHMER if rng.random() < 0.8 else Language.ENGLISH,
            validity_end=validity_end,
            topup_id=f"seed-{summary_seed}-{index}",
            topped_up_at=moment.astimezone(UTC),
            amount=price,
            history=history,
            reject=None,
        )


def _history_frames(plan: _Plan, templates: TemplateBook) -> list[FrameRow]:
    """Texts of the warnings the base already had: one per language, validity end and stage."""
    rules = plan.rules
    rows: list[FrameRow] = []
    for language in sorted(templates.languages):
        for offset in range(-rules.grace_days - 6, -rules.grace_days + rules.earliest_stage):
            validity_end = plan.as_of + timedelta(days=offset)
            grace_end = rules.grace_end(validity_end)
            frame = templates.frame(language, TemplateKind.WARNING, grace_end=grace_end)
            days_left = (grace_end - plan.as_of).days
            for stage in rules.warning_days:
                if stage > days_left:  # this stage came due on a day before D
                    rows.append(frame_row(language, validity_end, stage, grace_end, frame))
    return rows


@retried
def seed(
    database: Database,
    settings: Settings,
    templates: TemplateBook,
    clock: Clock,
    *,
    subscribers: int,
    as_of: date | None = None,
    random_seed: int = 1,
) -> SeedSummary:
    """Write a synthetic base of `subscribers` numbers; see the module docstring."""
    now = clock.now()
    zone = settings.zone
    day = as_of or local_date(now, zone)
    plan = _Plan(as_of=day, rules=settings.rules)
    with database.write(
        lock=BaseLock.EXCLUSIVE, statement_seconds=settings.run_statement_timeout_seconds
    ) as connection:
        staging = StagingTable(connection, seed_staging)
        staging.load(_rows(random_seed, subscribers, plan, zone))
        staging.index("msisdn")
        skipped = connection.execute(
            sa.delete(seed_staging).where(
                sa.exists().where(numbers.c.msisdn == seed_staging.c.msisdn).correlate(seed_staging)
            )
        ).rowcount
        _merge(connection, settings, templates, plan, now)
    database.refresh_statistics(
        "numbers", "ownerships", "topups", "warnings", "imports", vacuum=True
    )
    return SeedSummary(
        requested=subscribers,
        created=subscribers - skipped,
        already_present=skipped,
        as_of=day,
        random_seed=random_seed,
    )


def _merge(
    connection: Connection, settings: Settings, templates: TemplateBook, plan: _Plan, now: datetime
) -> None:
    table = seed_staging
    everything = sa.true()
    add_owned_numbers(
        connection,
        table,
        everything,
        now=now,
        today=local_date(now, settings.zone),
        actor="seed",
        cause=OwnershipStart.SEED,
    )
    # The synthetic feed declares itself complete up to the start of D.
    feed_complete = datetime.combine(plan.as_of, time(0), tzinfo=settings.zone)
    import_id = record_import(
        connection,
        kind=ImportKind.SEED,
        source="recycler seed",
        now=now,
        actor="seed",
        watermark=min(feed_complete, now),
    )
    insert_topups(
        connection, table, table, everything, import_id=import_id, moved_validity=sa.true()
    )
    _history(connection, settings, templates, plan, now)
    connection.execute(
        audit_events.insert().values(
            occurred_at=now,
            event_type=AuditEvent.BASE_SEEDED,
            actor="seed",
            reason=f"synthetic base for {plan.as_of.isoformat()} written by `recycler seed`",
        )
    )


def _history(
    connection: Connection, settings: Settings, templates: TemplateBook, plan: _Plan, now: datetime
) -> None:
    load_frames(connection, _history_frames(plan, templates))
    table = seed_staging
    text, encoding, parts = framed_text(table.c.msisdn, settings.default_region)
    last_stage = min(plan.rules.warning_days)
    for stage in plan.rules.warning_days:
        sent_on = add_days(table.c.validity_end, plan.rules.grace_days - stage)
        wanted = (
            table.c.history == "full"
            if stage != last_stage
            else table.c.history.in_(("full", "last"))
        )
        connection.execute(
            insert_selected(
                warnings,
                named_select(
                    msisdn=table.c.msisdn,
                    cycle=sa.literal(1),
                    stage=sa.literal(stage),
                    owner_id=table.c.owner_id,
                    language=table.c.language,
                    grace_end=text_frames.c.grace_end,
                    text=text,
                    encoding=encoding,
                    segments=parts,
                    state=sa.literal(WarningState.SENT.value),
                    queued_at=sa.literal(now, warnings.c.queued_at.type),
                    queued_on=sent_on,
                    attempts=sa.literal(1),
                    next_attempt_at=sa.literal(now, warnings.c.next_attempt_at.type),
                    gateway_message_id=sa.literal("seed-history"),
                    final_at=sa.literal(now, warnings.c.final_at.type),
                    final_on=sent_on,
                )
                .select_from(
                    table.join(
                        text_frames,
                        sa.and_(
                            text_frames.c.language == table.c.language,
                            text_frames.c.validity_end == table.c.validity_end,
                            text_frames.c.stage == stage,
                        ),
                    )
                )
                .where(wanted),
            )
        )

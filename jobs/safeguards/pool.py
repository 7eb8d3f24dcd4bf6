"""The resale pool: what is in it, available or still in quarantine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any, Literal

import sqlalchemy as sa

from jobs.database.engine import Database
from jobs.database.schema import numbers, ownerships, resale_pool

__all__ = ["POOL_COLUMNS", "Which", "pool_entries"]

POOL_COLUMNS = (
    "msisdn",
    "state",
    "entered_on",
    "available_from",
    "previous_owner",
    "recycled_by_run_id",
)

Which = Literal["all", "available", "quarantined"]


def pool_entries(database: Database, today: date, which: Which = "all") -> Iterator[dict[str, Any]]:
    """The numbers in the pool now, oldest first, streamed (the pool can be large)."""
    available = sa.and_(resale_pool.c.available_from <= today, numbers.c.on_hold.is_(sa.false()))
    query = (
        sa.select(
            resale_pool.c.msisdn,
            resale_pool.c.entered_on,
            resale_pool.c.available_from,
            numbers.c.on_hold,
            ownerships.c.owner_id.label("previous_owner"),
            resale_pool.c.recycled_by_run_id,
        )
        .join(numbers, numbers.c.msisdn == resale_pool.c.msisdn)
        .join(ownerships, ownerships.c.id == resale_pool.c.previous_ownership_id)
        .where(resale_pool.c.left_at.is_(None))
        .order_by(resale_pool.c.entered_on, resale_pool.c.msisdn)
    )
    if which == "available":
        query = query.where(available)
    elif which == "quarantined":
        query = query.where(~available)
    with database.read() as connection:
        for row in connection.execution_options(yield_per=5_000).execute(query):
            state = (
                "on hold"
                if row.on_hold
                else ("available" if row.available_from <= today else "quarantined")
            )
            yield {
                "msisdn": row.msisdn,
                "state": state,
                "entered_on": row.entered_on.isoformat(),
                "available_from": row.available_from.isoformat(),
                "previous_owner": row.previous_owner,
                "recycled_by_run_id": row.recycled_by_run_id,
            }

"""Checking a number for a client, and the record every check leaves.

The record (client, number, date asked, answer or refusal, correlator, time) is written before
the answer leaves, so that no answer leaves without its record; the table
is append-only, on PostgreSQL enforced by the database. It lets the operator answer a subscriber
who asks "who asked about my number?".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.clock import local_date
from jobs.database.engine import Database
from jobs.database.schema import api_checks
from jobs.errors import InputRefused, NumberNotFound
from jobs.safeguards.reassigned import answer_on
from jobs.settings import Settings
from jobs.vocabulary import Verdict

__all__ = ["CheckResult", "answer_and_record", "checks_of"]


@dataclass(frozen=True)
class CheckResult:
    """What a check answered: the verdict, or why there is none."""

    recycled: bool | None
    status: int  # as the API answers it
    code: str | None  # the CAMARA error code, when refused


def answer_and_record(
    connection: Connection,
    settings: Settings,
    *,
    now: datetime,
    client_id: str,
    msisdn: str,
    specified_date: date,
    correlator: str,
) -> CheckResult:
    """Answer a client's check and record it. The record is written before the answer is
    returned: when it cannot be written, the client gets an error, not an unrecorded answer."""
    today = local_date(now, settings.zone)
    try:
        answer = answer_on(connection, settings, today, msisdn, specified_date)
    except NumberNotFound:
        result = CheckResult(None, 404, "IDENTIFIER_NOT_FOUND")
    except InputRefused:
        result = CheckResult(None, 400, "OUT_OF_RANGE")
    else:
        if answer.verdict is Verdict.BEFORE_RECORDS:
            result = CheckResult(None, 400, "OUT_OF_RANGE")
        else:
            result = CheckResult(answer.verdict is Verdict.REASSIGNED, 200, None)
    # Parameters as a list: an "executemany" of one row, for which SQLAlchemy does not first
    # fetch the next id from the sequence (a whole round trip to the server, and a privilege
    # the API's role does not have: it adds checks and reads none).
    connection.execute(
        api_checks.insert(),
        [
            {
                "occurred_at": now,
                "client_id": client_id[:128],
                "msisdn": msisdn,
                "specified_date": specified_date,
                "recycled": result.recycled,
                "status": result.status,
                "code": result.code,
                "correlator": correlator,
            }
        ],
    )
    return result


def checks_of(database: Database, msisdn: str) -> list[dict[str, Any]]:
    """Every check of a number, oldest first, for its story."""
    with database.read() as connection:
        rows = connection.execute(
            sa.select(
                api_checks.c.occurred_at,
                api_checks.c.client_id,
                api_checks.c.specified_date,
                api_checks.c.recycled,
                api_checks.c.code,
                api_checks.c.correlator,
            )
            .where(api_checks.c.msisdn == msisdn)
            .order_by(api_checks.c.id)
        )
        return [
            {
                "occurred_at": row.occurred_at.isoformat(),
                "client_id": row.client_id,
                "specified_date": row.specified_date.isoformat(),
                "recycled": row.recycled,
                "code": row.code,
                "correlator": row.correlator,
            }
            for row in rows
        ]

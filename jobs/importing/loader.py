"""What every import does: read, stage, refuse duplicates, merge, write rejects, record, commit.

Everything happens in one transaction: a file refused part-way (a byte that is not UTF-8 on the
last line) leaves the database exactly as it was, and the rejects file appears only once the good
rows are committed.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.clock import Clock, local_date
from jobs.database.engine import BaseLock, Database
from jobs.database.schema import imports
from jobs.failpoints import failpoint
from jobs.importing.reader import CsvFile, CsvFormat, RawRow
from jobs.importing.staging import StagingTable
from jobs.settings import Settings

__all__ = [
    "ImportContext",
    "ImportSummary",
    "Merge",
    "RowParser",
    "record_import",
    "run_import",
]

# An import that changed more than this share of the base refreshes the planner's statistics
# itself rather than leave the next statements to plan on stale ones (autovacuum catches up with
# smaller changes; the statements' shapes do not depend on it, tests/integration/
# test_query_plans.py).
_STALE_SHARE = 0.1


@dataclass(frozen=True)
class ImportContext:
    """What the parse and merge steps of one import share."""

    settings: Settings
    now: datetime
    actor: str

    @property
    def today(self) -> date:
        """The operator's local date now."""
        return local_date(self.now, self.settings.zone)


@dataclass
class ImportSummary:
    """What an import did, for people and for ``--json``."""

    kind: str
    source: str
    rows_read: int = 0
    applied: int = 0
    ignored: int = 0
    rejected: int = 0
    rejects_path: str | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    import_id: int | None = None
    watermark: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The machine-readable summary."""
        return {
            "kind": self.kind,
            "source": self.source,
            "import_id": self.import_id,
            "rows_read": self.rows_read,
            "applied": self.applied,
            "ignored": self.ignored,
            "rejected": self.rejected,
            "outcomes": dict(sorted(self.outcomes.items())),
            "rejects_path": self.rejects_path,
            "watermark": self.watermark.isoformat() if self.watermark else None,
        }


class RowParser(Protocol):
    """Turns one raw row into a staging row (a NamedTuple of the staging table's row type)."""

    def __call__(self, row: RawRow) -> tuple[Any, ...]: ...


class Merge(Protocol):
    """Applies the staged good rows and marks the refused ones. A row it gives an outcome of its
    own is counted under it; the rows it leaves unmarked are counted as the merge returns
    (outcome to count), or all under the import's ``unmarked_outcome``."""

    def __call__(
        self, connection: Connection, staging: StagingTable, context: ImportContext, import_id: int
    ) -> dict[str, int] | None: ...


def run_import(
    database: Database,
    path: Path,
    *,
    csv_format: CsvFormat,
    staging_table: sa.Table,
    key_column: str,
    content_columns: tuple[str, ...],
    parser: Callable[[ImportContext], RowParser],
    merge: Merge,
    unmarked_outcome: str = "applied",
    settings: Settings,
    clock: Clock,
    actor: str,
    rejects_path: Path | None = None,
    watermark: datetime | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import one file; see the module docstring for the guarantees."""
    context = ImportContext(settings=settings, now=clock.now(), actor=actor)
    summary = ImportSummary(kind=csv_format.kind, source=str(path), watermark=watermark)
    rejects_target = rejects_path or path.with_name(path.name + ".rejects.csv")
    pending_rejects = rejects_target.with_name(f".{rejects_target.name}.{os.getpid()}.tmp")
    source = CsvFile(path, csv_format, on_progress)
    try:
        with database.write(
            lock=BaseLock.EXCLUSIVE, statement_seconds=settings.run_statement_timeout_seconds
        ) as connection:
            staging = StagingTable(connection, staging_table)
            parse = parser(context)
            staging.load(parse(row) for row in source.rows())
            staging.index(*dict.fromkeys((key_column, "msisdn")))
            _refuse_duplicates(connection, staging.table, key_column, content_columns)
            import_id = record_import(
                connection,
                kind=csv_format.kind,
                source=summary.source,
                now=context.now,
                actor=context.actor,
                watermark=watermark,
            )
            unmarked = merge(connection, staging, context, import_id)
            _summarise(connection, staging.table, summary, unmarked or {unmarked_outcome: -1})
            _finish_record(connection, summary, import_id)
            if summary.rejected:
                _write_rejects(connection, staging.table, source.columns, pending_rejects)
            failpoint("import.before_commit")
        if summary.rejected:
            pending_rejects.replace(rejects_target)
            summary.rejects_path = str(rejects_target)
        if summary.applied > _STALE_SHARE * database.estimated_rows("numbers"):
            database.refresh_statistics("numbers", "ownerships", "topups", "warnings")
    finally:
        pending_rejects.unlink(missing_ok=True)
    return summary


def _refuse_duplicates(
    connection: Connection,
    table: sa.Table,
    key_column: str,
    content_columns: tuple[str, ...],
) -> None:
    """Rows after the first with the same key are duplicates; if any of them says something
    different from the first, the first is refused too, since the file contradicts itself.

    Only keys that occur more than once are looked at (one grouping pass), so a file without
    duplicates costs a scan, not a lookup per row."""
    other = table.alias("other")
    key = table.c[key_column]
    # Keys the file holds more than once, whatever became of their rows: the same set for
    # both passes below.
    repeated = key.in_(
        sa.select(other.c[key_column])
        .where(other.c[key_column].is_not(None))
        .group_by(other.c[key_column])
        .having(sa.func.count() > 1)
    )
    same_key = other.c[key_column] == key
    first_line = (
        sa.select(sa.func.min(other.c.line))
        .where(same_key, other.c.reject.is_(None))
        .scalar_subquery()
    )
    differs = sa.or_(*(other.c[name].is_distinct_from(table.c[name]) for name in content_columns))
    conflicting_line = (
        sa.select(sa.func.min(other.c.line))
        .where(same_key, other.c.line > table.c.line, differs)
        .scalar_subquery()
    )
    connection.execute(
        sa.update(table)
        .where(table.c.reject.is_(None), repeated, table.c.line > first_line)
        .values(reject=sa.literal("duplicate of line ") + sa.cast(first_line, sa.String))
    )
    # A second pass: SQLite's UPDATE sees its own changes as it goes, so the first pass's
    # verdicts must be written before this one asks which lines are still good.
    connection.execute(
        sa.update(table)
        .where(table.c.reject.is_(None), repeated, conflicting_line.is_not(None))
        .values(
            reject=sa.literal("contradicted by line ")
            + sa.cast(conflicting_line, sa.String)
            + sa.literal(" of the same file")
        )
    )


def record_import(
    connection: Connection,
    *,
    kind: str,
    source: str,
    now: datetime,
    actor: str,
    watermark: datetime | None = None,
) -> int:
    """The import's record (counts filled in when it finishes); returns its id."""
    return int(
        connection.execute(
            imports.insert()
            .values(
                kind=kind,
                source=source[-1024:],
                started_at=now,
                finished_at=now,
                rows_read=0,
                rows_applied=0,
                rows_ignored=0,
                rows_rejected=0,
                watermark=watermark,
                actor=actor,
            )
            .returning(imports.c.id)
        ).scalar_one()
    )


def _summarise(
    connection: Connection, table: sa.Table, summary: ImportSummary, unmarked: dict[str, int]
) -> None:
    """Count the rows by outcome; the good rows the merge left unmarked as `unmarked` says (a
    count of -1: all of them under that outcome)."""
    refused = table.c.reject.is_not(None)
    rows = connection.execute(
        sa.select(refused, table.c.outcome, sa.func.count()).group_by(refused, table.c.outcome)
    )
    for is_refused, outcome, count in rows:
        summary.rows_read += count
        if is_refused:
            summary.rejected += count
        elif outcome == "ignored":
            summary.ignored += count
        elif outcome is not None:
            summary.outcomes[str(outcome)] = count
            summary.applied += count
        else:
            for name, share in unmarked.items():
                if share:
                    summary.outcomes[name] = count if share < 0 else share
            summary.applied += count


def _finish_record(connection: Connection, summary: ImportSummary, import_id: int) -> None:
    summary.import_id = import_id
    connection.execute(
        sa.update(imports)
        .where(imports.c.id == import_id)
        .values(
            rows_read=summary.rows_read,
            rows_applied=summary.applied,
            rows_ignored=summary.ignored,
            rows_rejected=summary.rejected,
        )
    )


def _write_rejects(
    connection: Connection, table: sa.Table, header: list[str], target: Path
) -> None:
    rows = connection.execution_options(yield_per=5_000).execute(
        sa.select(table.c.line, table.c.reject, table.c.raw)
        .where(table.c.reject.is_not(None))
        .order_by(table.c.line)
    )
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "reason", *header])
        for line, reason, raw in rows:
            writer.writerow([line, reason, *next(csv.reader([raw]), [])])

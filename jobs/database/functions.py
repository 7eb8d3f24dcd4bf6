"""SQL functions that the two databases spell differently."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["add_days", "any_of", "insert_selected", "named_select"]


class add_days(FunctionElement[Any]):  # noqa: N801  (SQL functions read as lower case)
    """``date + days`` for a date column and a whole number of days known when the SQL is built."""

    type = sa.Date()
    inherit_cache = True
    name = "add_days"

    def __init__(self, expression: Any, days: int) -> None:
        super().__init__(expression, sa.literal_column(str(int(days))))


@compiles(add_days, "sqlite")
def _add_days_sqlite(element: add_days, compiler: SQLCompiler, **kw: Any) -> str:
    expression, days = list(element.clauses)
    return (
        f"date({compiler.process(expression, **kw)}, '{int(compiler.process(days, **kw)):+d} days')"
    )


@compiles(add_days, "postgresql")
def _add_days_postgresql(element: add_days, compiler: SQLCompiler, **kw: Any) -> str:
    expression, days = list(element.clauses)
    return f"({compiler.process(expression, **kw)} + {compiler.process(days, **kw)})"


def named_select(**columns: Any) -> sa.Select[tuple[Any, ...]]:
    """A SELECT whose columns carry the names of the table columns they fill: an INSERT from
    it takes its column list from those names (``insert_selected``), so that a value can never
    land in the column beside its own."""
    return sa.select(
        *(
            (value if isinstance(value, sa.ColumnElement) else sa.literal(value)).label(name)
            for name, value in columns.items()
        )
    )


def insert_selected(table: sa.Table, select: sa.Select[Any]) -> sa.Insert:
    """``INSERT INTO table (its columns, by the select's names) SELECT …``."""
    return table.insert().from_select([column.name for column in select.selected_columns], select)


def any_of(
    key: sa.ColumnElement[Any],
    values: sa.Column[Any],
    where: sa.ColumnElement[bool] | None = None,
) -> sa.ColumnElement[bool]:
    """PostgreSQL: ``key`` is one of the ``values`` of a work table (of its rows that meet
    ``where``, when given), asked as an array made once and matched by ``key``'s index,
    whatever the statistics say. Joined to the work table, or as IN, the planner may hash the
    whole keyed table instead of probing it once per value, or loop over it rescanning the
    work table (tests/integration/test_query_plans.py)."""
    chosen = sa.select(sa.func.array_agg(values))
    if where is not None:
        chosen = chosen.where(where)
    array = sa.cast(chosen.scalar_subquery(), postgresql.ARRAY(values.type))
    return key == sa.any_(array)

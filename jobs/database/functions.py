"""SQL functions that the two databases spell differently."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["add_days"]


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

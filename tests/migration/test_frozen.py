"""A migration holds its own DDL, frozen (issue 12): it may import the standard library,
SQLAlchemy, Alembic and the migrations package, nothing else of recycler's, so that editing the
live schema or trigger code can never change what a past migration does."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

VERSIONS = Path(__file__).resolve().parents[2] / "jobs" / "database" / "migrations" / "versions"
ALLOWED = {"__future__", "sqlalchemy", "alembic", *sys.stdlib_module_names}


def imported_modules(path: Path) -> list[str]:
    """Every module a file imports, at its top or inside a function."""
    modules: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # a relative import stays inside the versions package
                modules.append("jobs.database.migrations.versions")
            elif node.module is not None:
                modules.append(node.module)
    return modules


def outside(module: str) -> bool:
    return module.split(".", maxsplit=1)[0] not in ALLOWED and not module.startswith(
        "jobs.database.migrations"
    )


@pytest.mark.parametrize("path", sorted(VERSIONS.glob("*.py")), ids=lambda path: path.name)
def test_a_migration_imports_nothing_of_the_live_code(path: Path) -> None:
    assert [module for module in imported_modules(path) if outside(module)] == []


def test_the_check_sees_an_import_of_live_code(tmp_path: Path) -> None:
    """The check itself: a migration that imported the live schema would be caught."""
    migration = tmp_path / "0099_example.py"
    migration.write_text(
        "import sqlalchemy as sa\n"
        "from alembic import op\n"
        "def upgrade() -> None:\n"
        "    from jobs.database.schema import numbers\n"
    )
    assert [m for m in imported_modules(migration) if outside(m)] == ["jobs.database.schema"]

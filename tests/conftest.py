"""Fixtures shared by every layer of tests: real databases, settings, a clock that stands still.

Every database test runs twice, on a SQLite file and on PostgreSQL. PostgreSQL is reached through
the URL in ``RECYCLER_TEST_POSTGRES_URL`` (a server where the user may create databases); each test
gets a database of its own, cloned from a template that holds the migrated schema. Without the
variable the PostgreSQL half is skipped, unless ``RECYCLER_TEST_REQUIRE_POSTGRES=1`` makes that an
error (CI sets it).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from jobs.database.engine import Database
from jobs.database.migrate import upgrade
from tests.support.world import World

POSTGRES_URL_VARIABLE = "RECYCLER_TEST_POSTGRES_URL"
REQUIRE_VARIABLE = "RECYCLER_TEST_REQUIRE_POSTGRES"


def _postgres_server_url() -> sa.URL | None:
    text = os.environ.get(POSTGRES_URL_VARIABLE)
    if not text:
        if os.environ.get(REQUIRE_VARIABLE) == "1":
            raise pytest.UsageError(f"{REQUIRE_VARIABLE}=1 but {POSTGRES_URL_VARIABLE} is not set")
        return None
    return sa.make_url(text)


class PostgresServer:
    """Creates and drops one database per test, cloned from a migrated template."""

    def __init__(self, url: sa.URL) -> None:
        self.url = url
        self.admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
        self.template = f"recycler_template_{os.getpid()}"

    def start(self) -> None:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
            connection.exec_driver_sql(f'CREATE DATABASE "{self.template}"')
        database = Database(self.url.set(database=self.template).render_as_string(False))
        upgrade(database)
        database.dispose()

    def create(self) -> str:
        name = f"recycler_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return self.url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = sa.make_url(url).database
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | None]:
    url = _postgres_server_url()
    if url is None:
        yield None
        return
    server = PostgresServer(url)
    try:
        server.start()
    except sa.exc.OperationalError as error:
        raise pytest.UsageError(f"PostgreSQL at {url} is not reachable: {error.orig}") from None
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    return path


@pytest.fixture
def database_url(
    request: pytest.FixtureRequest,
    postgres_server: PostgresServer | None,
    sqlite_template: Path,
    tmp_path: Path,
) -> Iterator[str]:
    """A fresh, migrated database of the kind the test is parametrized with."""
    kind = request.param
    if kind == "sqlite":
        path = tmp_path / "recycler.sqlite3"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    if postgres_server is None:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_URL_VARIABLE}")
    url = postgres_server.create()
    try:
        yield url
    finally:
        postgres_server.drop(url)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run database tests on both databases, PostgreSQL-only ones on PostgreSQL alone."""
    if "database_url" not in metafunc.fixturenames:
        return
    only_postgres = metafunc.definition.get_closest_marker("postgresql_only") is not None
    only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
    kinds = (
        ["postgresql"]
        if only_postgres
        else ["sqlite"]
        if only_sqlite
        else [
            "sqlite",
            "postgresql",
        ]
    )
    metafunc.parametrize("database_url", kinds, indirect=True)


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    """A database with helpers to build a base, run the nightly job and look at the outcome."""
    built = World.create(database_url)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def another_database(
    request: pytest.FixtureRequest,
    postgres_server: PostgresServer | None,
    sqlite_template: Path,
    tmp_path: Path,
    database_url: str,
) -> Iterator[Callable[[], str]]:
    """Makes more fresh databases of the same kind as the test's own."""
    kind = request.node.callspec.params["database_url"]
    created: list[str] = []

    def make() -> str:
        if kind == "sqlite":
            path = tmp_path / f"another-{len(created)}.sqlite3"
            shutil.copyfile(sqlite_template, path)
            url = f"sqlite:///{path}"
        else:
            assert postgres_server is not None
            url = postgres_server.create()
        created.append(url)
        return url

    yield make
    if postgres_server is not None and kind == "postgresql":
        for url in created:
            postgres_server.drop(url)


# Markers for tests that drive a real program from Debian's packages; without it they are
# skipped with the package to install, and `.ci/run` (which installs them) fails on any skip.
_PROGRAMS = {
    "needs_faketime": ("faketime", "faketime"),
    "needs_kannel": ("bearerbox", "kannel kannel-extras"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip, naming the package, the tests whose program this machine lacks."""
    for item in items:
        for marker, (program, package) in _PROGRAMS.items():
            if item.get_closest_marker(marker) is not None and shutil.which(program) is None:
                item.add_marker(
                    pytest.mark.skip(reason=f"needs {program} (apt-get install {package})")
                )

"""The shape of every statement of the nightly run, the imports and the sender's claim, pinned
on PostgreSQL whatever the planner's statistics say (issue 10; pgqueuer's
test_query_plan_regression.py is the model).

Each statement is EXPLAINed on its own connection, with its own parameters, just before it runs,
as the real commands run it through the real import path, in the states an operator's database
goes through: never analysed, analysed while empty and then filled, analysed small and grown
since. A plan fails the test when

- the inner side of a nested loop is a sequential scan of a table that grows with the base and
  holds more than a few hundred rows when the statement runs: rescanned once per outer row, it
  makes the statement quadratic; or
- a statement reads the very table it inserts into: its plan was made when that table was
  small (empty, on a first night), and every row it adds makes each later probe longer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from jobs.console.reports import nights
from jobs.database.schema import warnings
from jobs.importing.subscribers import import_subscribers
from jobs.importing.topups import import_topups
from jobs.inspection import status_view
from jobs.metrics import Metrics
from jobs.sending.dispatcher import Dispatcher
from jobs.sending.receipts import keep_receipt
from jobs.vocabulary import WarningState
from notifier.receipts import kannel_receipt
from notifier.testing import InMemoryGateway
from tests.benchmarks.exports import subscriber_export, topup_export
from tests.support.world import World, as_of_noon

pytestmark = pytest.mark.postgresql_only

D = date(2026, 11, 20)
GROWING = frozenset(
    {
        "numbers",
        "ownerships",
        "warnings",
        "audit_events",
        "topups",
        "resale_pool",
        "holds",
        "delivery_receipts",
        "number_changes",
    }
)
TABLES = sorted(GROWING | {"runs", "imports"})


# A sequential scan rescanned per outer row is harmless on a table this small.
SMALL = 300
# Work tables whose size does not follow the base: the run's texts, one per language and day of
# the warning window (a few dozen rows whatever the base).
BOUNDED = frozenset({"run_text_frames"})
# Work tables of jobs/transitions.py: as large as the set of numbers a statement changes.
WORK = frozenset({"ending_cycles", "ending_warnings", "run_changed"})


@dataclass
class Plans:
    """Every statement explained while recording (with the sizes of the growing tables at that
    moment), and what is wrong with each."""

    explained: list[tuple[str, dict[str, Any], dict[str, int]]] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = []
        for statement, plan, sizes in self.explained:
            for problem in _problems(plan["Plan"], _target(plan["Plan"]), sizes):
                found.append(f"{problem}\n    in: {' '.join(statement.split())[:300]}")
        return found


def _target(root: dict[str, Any]) -> str | None:
    if root.get("Node Type") == "ModifyTable" and root.get("Operation") == "Insert":
        return str(root.get("Relation Name"))
    return None


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _grows(relation: str | None, sizes: dict[str, int], target: str | None) -> bool:
    """A table whose size follows the base or the file: the growing tables once past a few
    hundred rows (or the statement's own target), and every staging or run work table."""
    if relation is None:
        return False
    if relation in BOUNDED:
        return False
    if relation.startswith(("staging_", "run_")) or relation in WORK:
        return True
    return relation in GROWING and (sizes.get(relation, 0) > SMALL or relation == target)


def _rescanned(inner: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The nodes of a nested loop's inner side that are read again for every outer row: all
    of it, except the build side of a Hash, made once and probed by key. What a Materialize
    keeps counts as read again: it is made once, but every outer row compares itself with all
    of it (a join filter, no key), so a growing table under it is as quadratic as a scan."""
    yield inner
    for child in inner.get("Plans", []):
        if inner.get("Node Type") == "Hash Join" and child.get("Node Type") == "Hash":
            continue
        yield from _rescanned(child)


_SCANS = ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan")


def _conditions(node: dict[str, Any]) -> str:
    """The index conditions that decide which rows a scan reads (a bitmap scan's are on its
    bitmap index scans)."""
    found = [str(node.get("Index Cond", ""))]
    for child in node.get("Plans", []):
        if child.get("Node Type", "").startswith("Bitmap"):
            found.append(_conditions(child))
    return " ".join(found)


def _reads_all(scan: dict[str, Any]) -> bool:
    """Whether a scan reads its whole table (or a whole partial index) on every execution:
    a sequential scan, or an index scan whose conditions name no column of another relation
    (nothing from the outer row narrows it)."""
    if scan["Node Type"] == "Seq Scan":
        return True
    own = scan.get("Alias", scan.get("Relation Name"))
    named = set(re.findall(r"\b([a-z_][a-z0-9_]*)\.[a-z_]", _conditions(scan)))
    return not (named - {own})


def _problems(root: dict[str, Any], target: str | None, sizes: dict[str, int]) -> Iterator[str]:
    for node in _nodes(root):
        relation = node.get("Relation Name")
        if target is not None and relation == target and node is not root:
            yield f"reads {target}, the table it inserts into ({node['Node Type']})"
        if node.get("Node Type") == "Nested Loop" and len(node.get("Plans", [])) == 2:
            for inner in _rescanned(node["Plans"][1]):
                relation = inner.get("Relation Name")
                if (
                    inner.get("Node Type") in _SCANS
                    and _grows(relation, sizes, target)
                    and _reads_all(inner)
                ):
                    yield (
                        f"nested loop ({node.get('Join Type')}) reads all of {relation} "
                        f"({inner['Node Type']}) again for every outer row"
                    )


@contextmanager
def recorded(world: World) -> Iterator[Plans]:
    """EXPLAIN every data statement the code runs, on its own cursor, before it runs."""
    plans = Plans()
    explaining = False

    def before(
        connection: Any, cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        nonlocal explaining
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if explaining or many or verb not in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
            return
        if "pg_advisory" in statement or "statement_timestamp" in statement:
            return
        explaining = True
        try:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
            (row,) = cursor.fetchall()
            document = row[0] if not isinstance(row[0], str) else json.loads(row[0])
            cursor.execute(
                " UNION ALL ".join(
                    f"SELECT '{table}', count(*) FROM {table}" for table in sorted(GROWING)
                )
            )
            sizes = {str(name): int(count) for name, count in cursor.fetchall()}
            plans.explained.append((statement, document[0], sizes))
        finally:
            explaining = False

    event.listen(world.database.engine, "before_cursor_execute", before)
    try:
        yield plans
    finally:
        event.remove(world.database.engine, "before_cursor_execute", before)


def no_autovacuum(world: World) -> None:
    """The planner sees only the statistics each state gives it, not autovacuum's."""
    with world.database.write() as connection:
        for table in TABLES:
            connection.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")


def analyse(world: World) -> None:
    with world.database.engine.connect().execution_options(
        isolation_level="AUTOCOMMIT"
    ) as connection:
        connection.exec_driver_sql(f"ANALYZE {', '.join(TABLES)}")


def an_operators_night(world: World, folder: Path, count: int, offset: int = 0) -> None:
    """Import a subscriber export and a day's top-ups, run the night, send a batch, and import
    the next day's top-ups (into a base the night changed, with the statistics of before)."""
    subscribers = subscriber_export(folder / f"subscribers-{offset}.csv", count, D, seed=offset)
    import_subscribers(world.database, subscribers, world.settings, world.clock, actor="feed")
    topups = topup_export(folder / f"topups-{offset}.csv", count // 10, count, D - timedelta(1))
    import_topups(world.database, topups, world.settings, world.clock, actor="feed")
    world.fresh_feed(D)
    world.run(D, allow_mass_recycle=True)
    sending = world.with_settings(send_window="00:00-24:00", send_rate=0)
    Dispatcher(sending.database, sending.settings, InMemoryGateway(), world.clock).drain(limit=200)
    following = topup_export(
        folder / f"topups-{offset}-next.csv", count // 4, count, D, seed=9, prefix="TN"
    )
    world.clock.moment = as_of_noon(D + timedelta(days=1), world.settings)
    import_topups(world.database, following, world.settings, world.clock, actor="feed")


def a_recycling_night_ahead(world: World, tmp_path: Path) -> date:
    """An operator's night (analysed when no ownership had ended), every warning then sent:
    returns the date, eight days on and with a fresh feed, whose night recycles a thousand
    numbers or so."""
    an_operators_night(world, tmp_path, 6000)
    with world.database.write() as connection:  # every warning reached the subscriber
        connection.execute(
            sa.update(warnings)
            .where(warnings.c.state == WarningState.PENDING)
            .values(state=WarningState.SENT, final_at=world.clock.now(), final_on=D)
        )
    analyse(world)
    later = D + timedelta(days=8)
    world.fresh_feed(later)
    return later


@pytest.fixture
def operator_world(world: World) -> World:
    world.clock.moment = as_of_noon(D, world.settings)
    no_autovacuum(world)
    return world


class TestPlansStayLinear:
    """No statement rescans a growing table, in any state of the statistics."""

    def test_never_analysed(self, operator_world: World, tmp_path: Path) -> None:
        """A new database, the first import, the first night: no statistics at all."""
        with recorded(operator_world) as plans:
            an_operators_night(operator_world, tmp_path, 6000)
        assert len(plans.explained) > 20
        assert plans.problems() == [], "\n".join(plans.problems())

    def test_notices_are_claimed_by_their_own_index(
        self, operator_world: World, tmp_path: Path
    ) -> None:
        """Every claim asks first for due owners' notices (issue 13). With a night's warnings
        due, that question must be an index probe of the few notices, not a walk through every
        due warning on each claim (which would make a drain quadratic), in both states of the
        statistics."""
        for state in ("never analysed", "analysed while empty"):
            if state == "analysed while empty":
                analyse(operator_world)
            with recorded(operator_world) as plans:
                an_operators_night(operator_world, tmp_path, 3000, offset=len(state))
            claims = [
                plan
                for statement, plan, _ in plans.explained
                if "'owner_notice'" in statement and "FOR UPDATE" in statement
            ]
            assert claims, state
            for plan in claims:
                nodes = list(_nodes(plan["Plan"]))
                used = {node.get("Index Name") for node in nodes} - {None}
                assert "ix_warnings_due_notices" in used, (state, json.dumps(plan)[:2000])
                assert "Seq Scan" not in {node["Node Type"] for node in nodes}, state

    def test_receipts_find_their_messages_by_index(
        self, operator_world: World, tmp_path: Path
    ) -> None:
        """Applying a batch of receipts finds each message by its gateway id (one probe each,
        never a walk through the outbox), and the waiting receipts by their own index, with
        statistics that never saw a receipt."""
        an_operators_night(operator_world, tmp_path, 3000)
        analyse(operator_world)
        with operator_world.database.read() as connection:
            sent = (
                connection.execute(
                    sa.select(warnings.c.gateway_message_id).where(
                        warnings.c.gateway_message_id.is_not(None)
                    )
                )
                .scalars()
                .all()
            )
        assert len(sent) == 200
        now = operator_world.clock.now()
        # A round's receipts are few beside the outbox (here 20 of some 3,000 warnings), as
        # they are every few seconds of a night's sending.
        with operator_world.database.write() as connection:
            for message_id in sent[:20]:
                keep_receipt(
                    connection,
                    gateway="kannel",
                    message_id=message_id,
                    receipt=kannel_receipt(1, ""),
                    now=now,
                    today=D,
                )
        sending = operator_world.with_settings(send_window="00:00-24:00", send_rate=0)
        with recorded(operator_world) as plans:
            report = Dispatcher(
                sending.database, sending.settings, InMemoryGateway(), operator_world.clock
            ).drain(limit=0)
        assert report.receipts == 20
        assert plans.problems() == [], "\n".join(plans.problems())
        moves = [
            plan
            for statement, plan, _ in plans.explained
            if statement.lstrip().upper().startswith("UPDATE WARNINGS")
            and "gateway_message_id IN" in statement
        ]
        assert moves
        for plan in moves:
            nodes = list(_nodes(plan["Plan"]))
            used = {node.get("Index Name") for node in nodes} - {None}
            assert "ix_warnings_gateway_message_id" in used, json.dumps(plan)[:2000]
            scanned = {
                node.get("Relation Name") for node in nodes if node["Node Type"] == "Seq Scan"
            }
            assert "warnings" not in scanned

    def test_analysed_while_empty(self, operator_world: World, tmp_path: Path) -> None:
        """Statistics taken on empty tables (a fresh `db upgrade`, then ANALYZE), then filled:
        the planner believes the tables are empty."""
        analyse(operator_world)
        with recorded(operator_world) as plans:
            an_operators_night(operator_world, tmp_path, 6000)
        assert plans.problems() == [], "\n".join(plans.problems())

    def test_stale_after_a_large_import(self, operator_world: World, tmp_path: Path) -> None:
        """Analysed at 300 numbers, then 8,000 more imported without new statistics."""
        an_operators_night(operator_world, tmp_path, 300, offset=0)
        analyse(operator_world)
        with recorded(operator_world) as plans:
            subscribers = subscriber_export(tmp_path / "more.csv", 8300, D, seed=5)
            import_subscribers(
                operator_world.database,
                subscribers,
                operator_world.settings,
                operator_world.clock,
                actor="feed",
            )
            operator_world.run(D + timedelta(days=1), allow_mass_recycle=True)
        assert plans.problems() == [], "\n".join(plans.problems())

    def test_pool_grown_since_analysed(self, operator_world: World, tmp_path: Path) -> None:
        """Analysed when no ownership had ended, then a night that recycles a thousand numbers
        into the pool, then a large top-up file with the statistics of before: the late-payer
        check must not loop over the ended ownerships and rescan the file for each (seen at 10
        million numbers, where it ran for minutes), nor the night's recycling statements loop
        over the ownerships it ended and rescan the recycled numbers for each (at 10 million
        numbers a version that joined the ownerships to a work table of the recycled numbers
        spent 217 s in the pool's insert; not what the night does now)."""
        world = operator_world
        later = a_recycling_night_ahead(world, tmp_path)
        with recorded(world) as night:
            assert world.run(later, allow_mass_recycle=True).recycled > 500
        assert night.problems() == [], "\n".join(night.problems())
        feed = topup_export(tmp_path / "late.csv", 3000, 6000, later - timedelta(1), prefix="TL")
        world.clock.moment = as_of_noon(later, world.settings)
        with recorded(world) as plans:
            import_topups(world.database, feed, world.settings, world.clock, actor="feed")
        assert plans.problems() == [], "\n".join(plans.problems())

    def test_history_grown_since_analysed(self, operator_world: World, tmp_path: Path) -> None:
        """Analysed with years of other audit events and no deferral yet; a night then defers
        a thousand numbers past grace (nothing was sent); the next night, with the statistics
        of before, must not compare each number with every deferral event (at a million
        numbers with two years of history it ran for minutes)."""
        world = operator_world
        subscribers = subscriber_export(tmp_path / "subscribers.csv", 6000, D)
        import_subscribers(world.database, subscribers, world.settings, world.clock, actor="feed")
        world.fresh_feed(D)
        analyse(world)
        assert world.run(D, allow_mass_recycle=True).deferred > 500
        later = D + timedelta(days=1)
        world.fresh_feed(later)
        world.clock.moment = as_of_noon(later, world.settings)
        with recorded(world) as plans:
            world.run(later, allow_mass_recycle=True)
        assert plans.problems() == [], "\n".join(plans.problems())


class TestDailyTopupsReadTheFile:
    """A day's top-up feed is a few percent of the base (2.6% in a steady state). Its import
    must read the numbers, ownerships, pool entries and stored top-ups of the file's rows by
    key: a scan of the whole base makes every daily feed cost what the base holds (260,000
    top-ups into 10,000,000 numbers took 37.8 s, against 3.5 s for 26,000 into 1,000,000), and
    a scan of every top-up ever imported makes it cost what the years hold. Failed on ten
    whole scans before the import asked by key."""

    def test_a_small_feed_reads_only_its_own_numbers(
        self, operator_world: World, tmp_path: Path
    ) -> None:
        an_operators_night(operator_world, tmp_path, 6000)
        analyse(operator_world)
        daily = topup_export(tmp_path / "daily.csv", 156, 6000, D + timedelta(1), seed=11)
        operator_world.clock.moment = as_of_noon(D + timedelta(days=2), operator_world.settings)
        with recorded(operator_world) as plans:
            import_topups(
                operator_world.database,
                daily,
                operator_world.settings,
                operator_world.clock,
                actor="feed",
            )
        whole = [
            f"{node['Node Type']} of {node['Relation Name']} in: {statement[:200]}"
            for statement, plan, sizes in plans.explained
            for node in _nodes(plan["Plan"])
            if node.get("Relation Name") in ("numbers", "ownerships", "topups", "resale_pool")
            and sizes[node["Relation Name"]] > SMALL
            and node["Node Type"] in _SCANS
            and (node["Node Type"] == "Seq Scan" or not _conditions(node).strip())
        ]
        assert len(plans.explained) > 10
        assert whole == [], "\n".join(whole)


class TestNextNightReadsWhatChanged:
    """A night after a committed one reads the warning window by the few validity ends whose
    due stage changed and by the numbers changed since, not the whole window (a fifth of the
    base): pinned on the plans, with the statistics of before the first night."""

    def test_window_statements(self, operator_world: World, tmp_path: Path) -> None:
        world = operator_world
        an_operators_night(world, tmp_path, 6000)
        later = D + timedelta(days=1)
        world.fresh_feed(later)
        with recorded(world) as plans:
            world.run(later, allow_mass_recycle=True)
        assert plans.problems() == [], "\n".join(plans.problems())
        window = [
            plan
            for statement, plan, _ in plans.explained
            if statement.lstrip().startswith("INSERT INTO run_queue")
            and "run_text_frames.validity_end = numbers.validity_end" in statement
        ]
        assert len(window) == 2, [statement[:80] for statement, _, _ in plans.explained]
        by_stage, by_change = (list(_nodes(plan["Plan"])) for plan in window)
        numbers_read = [node for node in by_stage if node.get("Relation Name") == "numbers"]
        assert numbers_read, json.dumps(window[0])[:2000]
        for node in numbers_read:
            assert node["Node Type"] != "Seq Scan", json.dumps(window[0])[:2000]
            assert "ANY" in _conditions(node), node  # read by the changed days alone
        relations = {node.get("Relation Name") for node in by_change}
        assert "run_changed" in relations, json.dumps(window[1])[:2000]
        assert not any(
            node.get("Relation Name") == "numbers" and node["Node Type"] == "Seq Scan"
            for node in by_change
        ), json.dumps(window[1])[:2000]


class TestViewsReadNoHistory:
    """`status`, the metrics and the console's nights count what waits and what was finished
    lately; a table holding years of sent messages must not be read whole for that (each did,
    on every status and every scrape: 1.5 s at a million numbers with two years of history)."""

    HISTORY = 60_000  # settled warnings of past cycles, beside a night of a few thousand

    def test_status_metrics_and_nights(self, operator_world: World, tmp_path: Path) -> None:
        world = operator_world
        an_operators_night(world, tmp_path, 3000)
        with world.database.write() as connection:
            connection.exec_driver_sql(
                "INSERT INTO warnings (msisdn, cycle, stage, owner_id, language, grace_end, "
                "text, encoding, segments, state, queued_at, queued_on, attempts, "
                "next_attempt_at, final_at, final_on) "
                "SELECT n.msisdn, -h.k, 30, n.owner_id, n.language, DATE '2024-01-01', "
                "'history', 'GSM-7', 1, %(sent)s, t.at, t.at::date, 1, t.at, t.at, t.at::date "
                "FROM (SELECT msisdn, owner_id, language, row_number() OVER () AS r "
                "      FROM numbers WHERE owner_id IS NOT NULL) AS n "
                "CROSS JOIN generate_series(1, %(per_number)s) AS h(k) "
                "CROSS JOIN LATERAL (SELECT TIMESTAMPTZ '2024-06-01' "
                "                    + (h.k * 7 + n.r %% 7) * INTERVAL '1 day' AS at) AS t",
                {"sent": WarningState.SENT.value, "per_number": self.HISTORY // 3000},
            )
        analyse(world)
        metrics = Metrics()
        with recorded(world) as plans:
            view = status_view(world.database, world.settings, world.clock, world.settings.rules)
            metrics.refresh(world.database, world.clock.now())
            nights(world.database, world.settings)
        assert view.outbox["sent"] == 200  # the night's, not the history's
        scans = [
            " ".join(statement.split())[:200]
            for statement, plan, _ in plans.explained
            if any(
                node["Node Type"] == "Seq Scan" and node.get("Relation Name") == "warnings"
                for node in _nodes(plan["Plan"])
            )
        ]
        assert scans == []


class TestTriggerPlans:
    """The owner-change trigger's statement-level functions join their transition tables
    linearly, even after statements that changed nothing (a plan cached then would join row by
    row)."""

    def test_changed_owners_after_empty_updates(self, operator_world: World) -> None:
        """Six updates of no row, then one of 3,000: the trigger's own query is planned for
        3,000 rows, without a nested loop over the transition tables."""
        url = sa.make_url(operator_world.url).set(drivername="postgresql")
        operator_world.queue_warnings(3000)
        notices: list[str] = []
        with psycopg.connect(url.render_as_string(hide_password=False)) as connection:
            connection.add_notice_handler(lambda notice: notices.append(notice.message_primary))
            explain_to_client(connection)
            for _ in range(6):
                connection.execute("UPDATE numbers SET validity_end = validity_end WHERE false")
            notices.clear()
            connection.execute("UPDATE numbers SET validity_end = validity_end + 1")
            connection.rollback()
        nested = [plan for plan in notices if "Named Tuplestore Scan" in plan]
        assert nested, notices
        for plan in nested:
            assert "Nested Loop" not in plan, plan

    def test_recycling_night_probes_each_changed_owner(
        self, operator_world: World, tmp_path: Path
    ) -> None:
        """A night that recycles hundreds of numbers: the guard checks each number's ended
        ownership and pool entry by a probe of its own, and never reads every ownership or
        pool entry ever written to answer for all of them at once (a hashed sub-plan over the
        whole table: 1.1 s a night at ten million numbers, and growing with the years of
        history the ownerships keep)."""
        world = operator_world
        later = a_recycling_night_ahead(world, tmp_path)
        with trigger_plans(world) as notices:
            assert world.run(later, allow_mass_recycle=True).recycled > 500
        guards = [plan for plan in notices if "Named Tuplestore Scan" in plan]
        assert guards, notices[:5]
        for plan in guards:
            assert "hashed SubPlan" not in plan, plan
            for table in ("ownerships", "resale_pool"):
                assert f"Seq Scan on {table}" not in plan, plan


def explain_to_client(connection: psycopg.Connection[Any]) -> None:
    """Have auto_explain send the plan of every statement, triggers' own included, to this
    connection's client as a notice."""
    for statement in (
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_nested_statements = on",
        "SET auto_explain.log_level = notice",
    ):
        connection.execute(statement)


@contextmanager
def trigger_plans(world: World) -> Iterator[list[str]]:
    """The plan of every statement the code's connections run, triggers' statements included,
    as auto_explain sends them to the client."""
    notices: list[str] = []

    def connected(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.add_notice_handler(
            lambda notice: notices.append(str(notice.message_primary))
        )
        explain_to_client(dbapi_connection)
        dbapi_connection.commit()

    world.database.engine.dispose()
    event.listen(world.database.engine, "connect", connected)
    try:
        yield notices
    finally:
        event.remove(world.database.engine, "connect", connected)
        world.database.engine.dispose()


class TestSessionSettings:
    """What recycler's own sessions ask of the server, whatever the server's defaults."""

    def test_work_tables_kept_in_memory_and_no_jit(self, operator_world: World) -> None:
        """Temporary work tables (the night's queue, an import's staging rows) stay in the
        session's buffers up to 256 MB instead of PostgreSQL's 8 MB, and no statement waits
        for the JIT compiler."""
        with operator_world.database.read() as connection:
            settings = {
                name: connection.exec_driver_sql(f"SHOW {name}").scalar_one()
                for name in ("temp_buffers", "jit")
            }
        assert settings == {"temp_buffers": "256MB", "jit": "off"}

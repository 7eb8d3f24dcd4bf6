"""Importing subscriber and top-up files: normalisation, bad rows, refused files."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest

from jobs.importing.loader import ImportSummary
from jobs.importing.reader import CsvRefused
from jobs.importing.subscribers import import_subscribers
from jobs.importing.topups import import_topups
from jobs.vocabulary import AuditEvent, WarningState
from tests.support.world import World

HEADER = "msisdn,owner_id,language,validity_end\n"


def write(tmp_path: Path, text: str | bytes, name: str = "subscribers.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def subscribers(world: World, path: Path) -> ImportSummary:
    return import_subscribers(world.database, path, world.settings, world.clock, actor="test")


def rejects(summary: ImportSummary) -> list[tuple[str, str]]:
    """(line, reason) of every rejected row."""
    assert summary.rejects_path is not None
    with Path(summary.rejects_path).open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return [(row[0], row[1]) for row in rows[1:]]


class TestSubscribers:
    """Subscriber rows create numbers and ownerships, update language, move V forward."""

    def test_new_numbers_in_national_and_international_form(
        self, world: World, tmp_path: Path
    ) -> None:
        """Both forms are stored in E.164, each with an ownership started by the import."""
        path = write(
            tmp_path, HEADER + "012 345 678,alice,km,2026-12-01\n+85517000111,bob,en,2026-11-02\n"
        )
        summary = subscribers(world, path)
        assert (summary.rows_read, summary.applied, summary.rejected) == (2, 2, 0)
        assert summary.outcomes == {"created": 2}
        assert summary.rejects_path is None
        alice = world.number("+85512345678")
        assert (alice.owner_id, alice.validity_end, alice.cycle) == ("alice", date(2026, 12, 1), 1)
        assert world.events_of("+85517000111") == [AuditEvent.OWNERSHIP_STARTED]

    def test_same_owner_updates_language_and_moves_validity_forward(
        self, world: World, tmp_path: Path
    ) -> None:
        """A later V starts a new cycle; an earlier one changes nothing; language follows."""
        msisdn = world.add_number(date(2026, 11, 1), owner_id="alice", language="km")
        world.add_warning(msisdn, 30, state=WarningState.PENDING)
        summary = subscribers(world, write(tmp_path, HEADER + f"{msisdn},alice,en,2026-12-01\n"))
        assert summary.outcomes == {"extended": 1}
        state = world.number(msisdn)
        assert (state.validity_end, state.cycle) == (date(2026, 12, 1), 2)
        assert world.warnings_of(msisdn) == [(1, 30, WarningState.CANCELLED)]
        older = subscribers(world, write(tmp_path, HEADER + f"{msisdn},alice,en,2026-10-01\n"))
        assert older.outcomes == {"unchanged": 1}
        assert world.number(msisdn).validity_end == date(2026, 12, 1)
        language = subscribers(world, write(tmp_path, HEADER + f"{msisdn},alice,km,2026-12-01\n"))
        assert language.outcomes == {"language": 1}

    def test_other_owner_is_rejected(self, world: World, tmp_path: Path) -> None:
        """Ownership never changes through an import: the row is a reject, the owner stays."""
        msisdn = world.add_number(date(2026, 11, 1), owner_id="alice")
        summary = subscribers(world, write(tmp_path, HEADER + f"{msisdn},mallory,en,2027-01-01\n"))
        assert (summary.applied, summary.rejected) == (0, 1)
        assert rejects(summary) == [
            (
                "2",
                "the number belongs to owner alice; ownership changes only through "
                "`recycler transfer request`",
            )
        ]
        assert world.number(msisdn).owner_id == "alice"
        assert world.number(msisdn).validity_end == date(2026, 11, 1)

    def test_bad_rows_go_to_the_rejects_file_and_good_rows_apply(
        self, world: World, tmp_path: Path
    ) -> None:
        """Bad number, bad date, unknown language, empty owner, duplicates: each with its line
        and reason; the good rows are applied."""
        path = write(
            tmp_path,
            HEADER
            + "012345678,alice,km,2026-12-01\n"  # line 2: good
            + "0999,bob,km,2026-12-01\n"  # 3: bad number
            + "017000001,carol,km,2026-02-30\n"  # 4: bad date
            + "017000002,dave,fr,2026-12-01\n"  # 5: unknown language
            + "017000003,,en,2026-12-01\n"  # 6: empty owner
            + "+85512345678,alice,km,2026-12-01\n"  # 7: same number as line 2, same values
            + "017000004,erin,en,2026-12-01\n"  # 8: contradicted by line 9
            + "+85517000004,frank,en,2026-12-01\n"  # 9: duplicate of 8
            + "017000005,gina,en,2026-12-01,extra\n"  # 10: too many fields
            + "017000006,hugo,en,2026-12-01\n",  # 11: good
        )
        summary = subscribers(world, path)
        assert (summary.rows_read, summary.applied, summary.rejected) == (10, 2, 8)
        assert rejects(summary) == [
            ("3", "bad msisdn: not a valid number: '0999'"),
            ("4", "bad validity_end: 2026-02-30 is not a date: day is out of range for month"),
            ("5", "unknown language 'fr' (expected km or en)"),
            ("6", "empty owner_id"),
            ("7", "duplicate of line 2"),
            ("8", "contradicted by line 9 of the same file"),
            ("9", "duplicate of line 8"),
            ("10", "expected 4 fields, found 5"),
        ]
        assert world.number("+85512345678").owner_id == "alice"
        assert world.number("+85517000006").owner_id == "hugo"

    def test_rejects_path_can_be_chosen(self, world: World, tmp_path: Path) -> None:
        """--rejects puts the file where asked."""
        path = write(tmp_path, HEADER + "0999,bob,km,2026-12-01\n")
        target = tmp_path / "out" / "bad.csv"
        target.parent.mkdir()
        summary = import_subscribers(
            world.database, path, world.settings, world.clock, actor="t", rejects_path=target
        )
        assert summary.rejects_path == str(target)
        assert target.exists()


class TestRefusedFiles:
    """A file recycler cannot read as asked is refused whole; nothing is applied."""

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (
                "msisdn,owner_id,validity_end\n012345678,alice,2026-12-01\n",
                r"not a subscriber file: missing column language",
            ),
            (
                "msisdn;owner_id;language;validity_end\n012345678;alice;km;2026-12-01\n",
                r"uses semicolons between fields",
            ),
            ("", r"is empty: expected a header row"),
            (
                "msisdn,owner_id,language,validity_end,colour\n",
                r"unknown column colour",
            ),
            (
                HEADER + '012345678,"alice,km,2026-12-01\n',
                r"not a readable CSV file",
            ),
        ],
    )
    def test_unreadable(self, world: World, tmp_path: Path, content: str, message: str) -> None:
        """Missing column, wrong delimiter, empty file, unknown column, broken quoting."""
        path = write(tmp_path, content)
        with pytest.raises(CsvRefused, match=message):
            subscribers(world, path)
        assert world.snapshot()["numbers"] == []
        assert not (tmp_path / "subscribers.csv.rejects.csv").exists()

    def test_not_utf8_even_on_the_last_line(self, world: World, tmp_path: Path) -> None:
        """A Latin-1 byte after thousands of good rows refuses the whole file."""
        good = "".join(f"0170{index:05d},owner{index},km,2026-12-01\n" for index in range(3000))
        content = (HEADER + good).encode() + "012345678,Andr\xe9,km,2026-12-01\n".encode("latin-1")
        path = write(tmp_path, content)
        with pytest.raises(CsvRefused, match="is not UTF-8 text"):
            subscribers(world, path)
        assert world.snapshot()["numbers"] == []

    def test_a_byte_order_mark_is_accepted(self, world: World, tmp_path: Path) -> None:
        """Spreadsheets write a BOM before the header; it is not part of the first column."""
        path = write(tmp_path, ("\ufeff" + HEADER + "012345678,alice,km,2026-12-01\n").encode())
        assert subscribers(world, path).applied == 1

    def test_missing_file(self, world: World, tmp_path: Path) -> None:
        """A path that does not exist is a clear refusal."""
        with pytest.raises(CsvRefused, match="cannot read"):
            subscribers(world, tmp_path / "nope.csv")


class TestTopupRows:
    """Top-up rows: the documented reasons for refusing one."""

    def test_bad_topup_rows(self, world: World, tmp_path: Path) -> None:
        """Unknown number, bad moment, future moment, validity before the top-up, duplicate id,
        bad amount; the good row applies."""
        msisdn = world.add_number(date(2026, 11, 1))
        path = write(
            tmp_path,
            "topup_id,msisdn,topped_up_at,validity_end,amount\n"
            f"T1,{msisdn},2026-11-20T10:00,2026-12-20,1.50\n"  # 2: good
            "T2,+85517999999,2026-11-20T10:00,2026-12-20,1\n"  # 3: unknown number
            f"T3,{msisdn},yesterday,2026-12-20,1\n"  # 4: bad moment
            f"T4,{msisdn},2027-01-01T10:00,2027-02-01,1\n"  # 5: future
            f"T5,{msisdn},2026-11-20T10:00,2026-11-19,1\n"  # 6: validity before top-up
            f"T1,{msisdn},2026-11-20T10:00,2026-12-20,1.50\n"  # 7: duplicate id
            f"T6,{msisdn},2026-11-20T10:00,2026-12-20,-3\n",  # 8: bad amount
            name="topups.csv",
        )
        summary = import_topups(world.database, path, world.settings, world.clock, actor="t")
        assert (summary.applied, summary.rejected) == (1, 6)
        assert rejects(summary) == [
            ("3", "unknown number"),
            ("4", "bad topped_up_at: 'yesterday' is not an ISO 8601 date and time"),
            ("5", "topped_up_at 2027-01-01T10:00 is in the future"),
            ("6", "validity_end is before the day of the top-up"),
            ("7", "duplicate of line 2"),
            ("8", "bad amount '-3'"),
        ]
        assert world.number(msisdn).validity_end == date(2026, 12, 20)


class TestRowsFoundByTrial:
    """Rows an operator's real exports hold (issue 8): each is a reject with its reason, or
    read as the operator meant, never a whole file refused or a silent change."""

    def test_foreign_numbers_extensions_and_the_00_prefix(
        self, world: World, tmp_path: Path
    ) -> None:
        """A US number in a KH base is rejected; an extension is rejected, not dropped; 00855…
        is read as +855…."""
        path = write(
            tmp_path,
            HEADER
            + "+1 202 555 0143,a,en,2026-12-01\n"  # 2: another country
            + "012300073 ext. 5,b,km,2026-12-01\n"  # 3: an extension
            + "0085512300063,c,km,2026-12-01\n",  # 4: the international prefix 00
        )
        summary = subscribers(world, path)
        assert (summary.applied, summary.rejected) == (1, 2)
        assert rejects(summary) == [
            ("2", "bad msisdn: +12025550143 is a number of US; this base takes numbers of KH"),
            ("3", "bad msisdn: '012300073 ext. 5' has an extension; a subscriber number has none"),
        ]
        assert world.number("+85512300063").owner_id == "c"

    def test_allowed_regions_setting(self, world: World, tmp_path: Path) -> None:
        """With allowed_regions = KH,US the same US number is welcome."""
        chosen = world.with_settings(allowed_regions=["KH", "US"])
        path = write(tmp_path, HEADER + "+1 202 555 0143,a,en,2026-12-01\n")
        summary = import_subscribers(
            chosen.database, path, chosen.settings, chosen.clock, actor="test"
        )
        assert (summary.applied, summary.rejected) == (1, 0)

    def test_an_overlong_field_rejects_its_row_only(self, world: World, tmp_path: Path) -> None:
        """5,000 characters in owner_id: that row is a reject; the file is not refused."""
        path = write(
            tmp_path,
            HEADER + f"012300001,{'x' * 5000},km,2026-12-01\n" + "012300002,b,km,2026-12-01\n",
        )
        summary = subscribers(world, path)
        assert (summary.applied, summary.rejected) == (1, 1)
        assert rejects(summary) == [("2", "a field is longer than 4096 characters")]

    def test_a_huge_line_is_rejected_in_bounded_memory(self, world: World, tmp_path: Path) -> None:
        """A 50 MB line (a broken export) is a reject; reading it does not hold it all."""
        path = tmp_path / "subscribers.csv"
        with path.open("w", encoding="utf-8") as handle:
            handle.write(HEADER)
            handle.write("012300001,")
            for _ in range(50):
                handle.write("y" * 1_000_000)
            handle.write(",km,2026-12-01\n012300002,b,km,2026-12-01\n")
        summary = subscribers(world, path)
        assert (summary.applied, summary.rejected) == (1, 1)
        assert rejects(summary) == [("2", "the line is longer than 65536 characters")]

    def test_bad_byte_names_its_own_line(self, world: World, tmp_path: Path) -> None:
        """A Latin-1 byte on line 701 is reported on line 701."""
        good = "".join(f"0170{index:05d},owner{index},km,2026-12-01\n" for index in range(699))
        content = (
            (HEADER + good).encode()
            + "012345678,Andr\xe9,km,2026-12-01\n".encode("latin-1")
            + b"012345679,x,km,2026-12-01\n"
        )
        with pytest.raises(CsvRefused, match=r"bad byte on line 701\b"):
            subscribers(world, write(tmp_path, content))

    def test_a_topup_that_does_not_move_validity_is_counted_as_such(
        self, world: World, tmp_path: Path
    ) -> None:
        """Stored, recorded as an event, and counted `not_later`, not `extended`."""
        msisdn = world.add_number(date(2026, 12, 31))
        path = write(
            tmp_path,
            "topup_id,msisdn,topped_up_at,validity_end\n"
            f"T1,{msisdn},2026-11-20T10:00,2026-12-20\n"
            f"T2,{msisdn},2026-11-20T11:00,2027-01-20\n",
            name="topups.csv",
        )
        first = import_topups(
            world.database,
            write(
                tmp_path,
                "topup_id,msisdn,topped_up_at,validity_end\n"
                f"T1,{msisdn},2026-11-20T10:00,2026-12-20\n",
                name="one.csv",
            ),
            world.settings,
            world.clock,
            actor="t",
        )
        assert first.outcomes == {"not_later": 1}
        assert world.events_of(msisdn)[-1] == AuditEvent.TOPUP_NOT_LATER
        assert world.number(msisdn).validity_end == date(2026, 12, 31)
        both = import_topups(world.database, path, world.settings, world.clock, actor="t")
        assert both.outcomes == {"extended": 1}
        assert both.ignored == 1

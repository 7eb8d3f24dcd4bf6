"""The CSV reader's plain path reads exactly as its csv-module path does.

A block of lines without a quote and without a carriage return but before a newline is split at
its commas instead of going through the csv module (three times faster per row, CHANGELOG). The
property: on generated files, quotes and quoted newlines, CRLF and lone carriage returns, blank
and whitespace-only lines, missing and extra fields, overlong fields and lines, a byte-order
mark, bytes that are not UTF-8, headers reordered or without the optional column, read in
blocks small enough that records and quoted fields straddle them, the reader yields the same
rows (line numbers, fields, raw text, problems) and refuses with the same sentence as when every
block goes through the csv module.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jobs.importing import reader
from jobs.importing.reader import CsvFile, CsvFormat, CsvRefused, RawRow

FORMAT = CsvFormat("subscribers", "subscriber", ("a", "b", "c"), optional=("d",))
HEADERS = ("a,b,c", "a,b,c,d", "c,a,b", "d,c,b,a", '"a","b","c"', "A , B,c\r", "a;b;c", "a,b")

# Pieces a line is made of: plain text, separators, quoting, line ends, odd characters.
PIECES = st.sampled_from(
    ["012345678", "alice", "km", "2026-12-01", " ", ",", ",", '"', '""', "\r", "\r\n", "\n", "é"]
)
LINE = st.lists(PIECES, max_size=8).map("".join)


def read(path: Path) -> tuple[list[RawRow], str | None]:
    """The rows read before the file was refused (if it was), and the refusal."""
    rows: list[RawRow] = []
    try:
        rows.extend(CsvFile(path, FORMAT).rows())
    except CsvRefused as refused:
        return rows, str(refused)
    return rows, None


@st.composite
def files(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from(HEADERS))
    lines = draw(st.lists(LINE, max_size=30))
    long_line = draw(st.sampled_from(["", "x" * 70, "y" * 200]))
    if long_line:
        lines.insert(draw(st.integers(0, len(lines))), f"1,{long_line},3")
    text = "\n".join([header, *lines]) + draw(st.sampled_from(["", "\n", "\r\n"]))
    data = draw(st.sampled_from([b"", "\ufeff".encode()])) + text.encode()
    if draw(st.booleans()) and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + b"\xe9" + data[at:]  # a Latin-1 byte somewhere
    return data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=files(), chunk=st.sampled_from([16, 64, 1 << 20]))
@example(data=b'a,b,c\n1,"x\ny",3\n4,5,6\n', chunk=8)
@example(data=b"a,b,c\r\n1,2,3\r\n\r\n , ,\r\n4,5\r\n", chunk=1 << 20)
def test_plain_blocks_read_as_the_csv_module_reads_them(
    data: bytes, chunk: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("reader") / "file.csv"
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as patch:
        # Small limits and blocks: overlong lines, fields and straddling records are common.
        patch.setattr(reader, "_CHUNK", chunk)
        patch.setattr(reader, "LINE_LIMIT", 150)
        patch.setattr(reader, "FIELD_LIMIT", 60)
        fast = read(path)
        patch.setattr(reader, "_plain", lambda _text: False)
        through_csv = read(path)
    assert fast == through_csv


def test_the_plain_path_is_taken_for_an_exports_plain_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not vacuous: an export without quotes is read without the csv module but for its
    header, and one with a quoted header still has its plain blocks read so."""
    read_by_csv: list[str] = []
    original = csv.reader

    def counting(lines: Iterable[str], **options: Any) -> Any:
        def noted() -> Iterator[str]:
            for line in lines:
                read_by_csv.append(line)
                yield line

        return original(noted(), **options)

    monkeypatch.setattr(csv, "reader", counting)
    body = "".join(f"{n},x,y\n" for n in range(50))
    path = tmp_path / "export.csv"
    path.write_text("a,b,c\n" + body)
    rows, refused = read(path)
    assert refused is None
    assert [row.fields for row in rows[:2]] == [("0", "x", "y", ""), ("1", "x", "y", "")]
    assert [row.line for row in rows] == list(range(2, 52))
    assert read_by_csv == ["a,b,c\n"]
    # A quoted header: its block goes through the csv module, the blocks after it do not.
    read_by_csv.clear()
    monkeypatch.setattr(reader, "_CHUNK", 12)
    path.write_text('"a","b","c"\n' + body)
    rows, refused = read(path)
    assert (refused, len(rows)) == (None, 50)
    assert read_by_csv == ['"a","b","c"\n']

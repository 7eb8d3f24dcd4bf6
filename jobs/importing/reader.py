"""Reading the CSV files recycler imports: refused whole, or row by row into good and bad rows.

A file that is not UTF-8 text, is not comma-separated, or lacks a required column is refused whole
with a sentence that says why. Inside an acceptable file, each row is parsed on its own: a bad
field makes that row a reject with its line number and reason, never the whole file.
"""

from __future__ import annotations

import csv
import io
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from jobs.errors import InputRefused

__all__ = ["CsvFile", "CsvFormat", "CsvRefused", "RawRow"]

# A field longer than this is refused with its row; a physical line longer than the other
# limit is refused with its row without ever being held whole (a broken quote or a binary blob
# can make a "line" of many megabytes).
FIELD_LIMIT = 4096
LINE_LIMIT = 65_536
# How much of the file is read and decoded at once.
_CHUNK = 1 << 20


class CsvRefused(InputRefused):
    """The file is not a CSV file recycler can read; nothing was applied."""


@dataclass(frozen=True)
class CsvFormat:
    """The columns a kind of file must and may have."""

    kind: str  # as recorded in the imports table
    title: str  # as named in messages
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column, required first: the order of ``RawRow.fields``."""
        return self.required + self.optional


class RawRow(NamedTuple):
    """One data row: its line number in the file, its fields in the format's column order
    (stripped; an absent optional column is empty), and the record as it stood in the file."""

    line: int
    fields: tuple[str, ...]
    raw: str
    problem: str | None = None  # set when the row cannot even be split into the columns


class _CountingReader(io.RawIOBase):
    """A binary stream that counts the bytes read through it, for the progress bar."""

    def __init__(self, inner: BinaryIO, on_read: Callable[[int], None]) -> None:
        self._inner = inner
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        self._on_read(len(data))
        return len(data)

    def close(self) -> None:
        # The file read through it is its own: closed with it (io's wrappers close what they
        # wrap; without this an import left its file open).
        if not self.closed:
            self._inner.close()
        super().close()


class CsvFile:
    """One CSV file read as a format asks: its header, then its data rows."""

    def __init__(
        self,
        path: Path,
        csv_format: CsvFormat,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.path = path
        self.csv_format = csv_format
        self.on_progress = on_progress or (lambda _count: None)
        self.columns: list[str] = list(csv_format.required)

    def rows(self) -> Iterator[RawRow]:
        """Yield the data rows after checking the header.

        Raises CsvRefused for a file that cannot be read as the format asks, even after rows
        were yielded (a byte that is not UTF-8 may come late): callers apply nothing until the
        end.
        """
        csv.field_size_limit(LINE_LIMIT)
        try:
            binary = self.path.open("rb")
        except OSError as error:
            raise CsvRefused(f"cannot read {self.path}: {error.strerror}") from None
        self._overlong: set[int] = set()
        counting = io.BufferedReader(_CountingReader(binary, self.on_progress))
        lines = _Lines(self._blocks(counting), self._overlong)
        try:
            yield from self._rows(lines)
        except csv.Error as error:
            raise CsvRefused(
                f"{self.path.name} is not a readable CSV file (line {lines.number}): {error}"
            ) from None
        finally:
            counting.close()

    def _blocks(self, binary: io.BufferedIOBase) -> Iterator[_Block]:
        """The file's lines, read and decoded a megabyte at a time, yet with a bad byte reported
        on its own line; an overlong line is skipped (never held whole) and stands as a blank
        line, remembered by number."""
        number = 0  # lines before the next block
        buffer = b""
        skipping = False  # inside a line already known to be too long
        while chunk := binary.read(_CHUNK):
            buffer += chunk
            if skipping:
                newline = buffer.find(b"\n")
                if newline < 0:
                    buffer = b""
                    continue
                buffer, skipping = buffer[newline + 1 :], False
                number += 1
                self._overlong.add(number)
                yield _Block(number, [""], True, carriage_returns=False, open_end=False)
            cut = buffer.rfind(b"\n") + 1
            if cut:
                block, buffer = buffer[:cut], buffer[cut:]
                yield self._block(block, number, open_end=False)
                number += block.count(b"\n")
            if len(buffer) > LINE_LIMIT:
                buffer, skipping = b"", True
        if skipping:
            self._overlong.add(number + 1)
            yield _Block(number + 1, [""], True, carriage_returns=False, open_end=False)
        elif buffer:
            yield self._block(buffer, number, open_end=True)

    def _block(self, block: bytes, before: int, *, open_end: bool) -> _Block:
        """The lines of a block of whole lines (or of the file's last line, without its newline:
        `open_end`) that follows line `before`."""
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError as error:
            bad = before + block.count(b"\n", 0, error.start) + 1
            raise CsvRefused(
                f"{self.path.name} is not UTF-8 text (bad byte on line {bad}); "
                "export it as UTF-8 CSV"
            ) from None
        if before == 0:
            text = text.removeprefix("\ufeff")
        lines = text.split("\n")
        if not open_end:
            lines.pop()  # the nothing after the last newline
            # (The file's last line, without a newline, is never longer than the limit: the
            # reading skips such a line before it ends.)
            if max(map(len, lines)) >= LINE_LIMIT:
                for index, line in enumerate(lines):
                    if len(line) >= LINE_LIMIT:
                        self._overlong.add(before + index + 1)
                        lines[index] = ""
        return _Block(
            before + 1, lines, _plain(text), carriage_returns="\r" in text, open_end=open_end
        )

    def _rows(self, lines: _Lines) -> Iterator[RawRow]:
        """The rows of the file: a plain block's lines split at their commas, the others read by
        the csv module (one reader for the whole file, so that a quoted field may span
        blocks)."""
        reader = csv.reader(lines, strict=True)
        header = next(reader, None)
        while header is not None and not any(field.strip() for field in header):
            header = next(reader, None)
        if header is None:
            raise CsvRefused(
                f"{self.path.name} is empty: expected a header row {_expected(self.csv_format)}"
            )
        lines.record()
        columns = [name.strip().lower() for name in header]
        _check_header(self.path, columns, self.csv_format)
        self.columns = columns
        shape = _Shape(columns, self.csv_format)
        while True:
            plain = lines.plain()
            if plain is not None:
                yield from self._plain_rows(*plain, shape)
                continue
            values = None if lines.ended else next(reader, None)
            if values is None:
                return
            line, raw = lines.record()
            if line in self._overlong:
                yield RawRow(line, (), "", f"the line is longer than {LINE_LIMIT} characters")
                continue
            row = shape(line, values, raw)
            if row is not None:
                yield row

    def _plain_rows(
        self, first: int, lines: list[str], carriage_returns: bool, shape: _Shape
    ) -> Iterator[RawRow]:
        overlong = self._overlong
        for line, text in enumerate(lines, first):
            record = text.rstrip("\r") if carriage_returns else text
            if overlong and line in overlong:
                yield RawRow(line, (), "", f"the line is longer than {LINE_LIMIT} characters")
                continue
            row = shape(line, record.split(","), record)
            if row is not None:
                yield row


class _Lines:
    """The file's lines, as the csv reader takes them (one at a time, while it needs them) and
    as the plain path takes them (the rest of a plain block at once, only between two records,
    when the csv reader holds no line of one)."""

    def __init__(self, blocks: Iterator[_Block], overlong: set[int]) -> None:
        self.blocks = blocks
        self.overlong = overlong
        self.queue: deque[str] = deque()  # lines of the current block not yet taken
        self.current = _Block(1, [], False, carriage_returns=False, open_end=False)
        self.consumed: list[str] = []  # the lines of the record being read, for its raw text
        self.number = 0  # the number of the last line taken
        self.ended = False

    def __iter__(self) -> Iterator[str]:
        queue, overlong, consumed = self.queue, self.overlong, self.consumed
        while True:
            while queue:
                line = queue.popleft()
                self.number += 1
                if self.number in overlong:
                    yield "\n"
                    continue
                consumed.append(line)
                yield line if self.current.open_end and not queue else line + "\n"
            if not self._next_block():
                return

    def plain(self) -> tuple[int, list[str], bool] | None:
        """Between two records: the lines that bypass the csv reader (the first's number, the
        lines, whether they may end in a carriage return); None when the next lines are for the
        csv reader, or when the file has ended (`ended`)."""
        if (not self.queue and not self._next_block()) or not self.current.plain:
            return None
        lines = list(self.queue)
        self.queue.clear()
        first = self.number + 1
        self.number += len(lines)
        return first, lines, self.current.carriage_returns

    def record(self) -> tuple[int, str]:
        """After the csv reader read a record: its last line's number and its raw text."""
        consumed = self.consumed
        raw = (consumed[0] if len(consumed) == 1 else "\n".join(consumed)).rstrip("\r")
        consumed.clear()
        return self.number, raw

    def _next_block(self) -> bool:
        block = next(self.blocks, None)
        if block is None:
            self.ended = True
            return False
        self.current = block
        self.queue.extend(block.lines)
        return True


def _plain(text: str) -> bool:
    """Whether each line of the text is one record whose fields are what splitting it at the
    commas gives, as the csv module would read it: no quote, and no carriage return but
    before a newline."""
    return '"' not in text and text.count("\r") == text.count("\r\n")


class _Block(NamedTuple):
    """Lines of the file, decoded."""

    first: int  # the number of its first line
    lines: list[str]  # without their newlines; an overlong line stands as an empty one
    plain: bool  # each line is one record whose fields are its text split at the commas
    carriage_returns: bool  # its lines may end in a carriage return (before the newline)
    open_end: bool  # its last line is the file's, without a newline


class _Shape:
    """Turns one record (its fields as the file has them) into a row in the format's column
    order: blank records are skipped, overlong fields and a wrong number of fields refused."""

    def __init__(self, columns: list[str], csv_format: CsvFormat) -> None:
        self.width = width = len(columns)
        # Where each of the format's columns stands in this file (None: an optional one absent).
        self.order = [
            columns.index(name) if name in columns else None for name in csv_format.columns
        ]
        self.plain = self.order == list(range(width))
        self.trailing_optional = [
            count
            for count in range(width)
            if all(name in csv_format.optional for name in columns[count:])
        ]

    def __call__(self, line: int, values: list[str], raw: str) -> RawRow | None:
        stripped = [value.strip() for value in values]
        if not any(stripped):
            return None  # blank lines carry nothing
        if len(raw) > FIELD_LIMIT and max(map(len, values)) > FIELD_LIMIT:
            return RawRow(line, (), "", f"a field is longer than {FIELD_LIMIT} characters")
        width = self.width
        if len(stripped) != width:
            # Trailing optional columns may be left off entirely, as many exports do.
            if len(stripped) not in self.trailing_optional:
                return RawRow(line, (), raw, f"expected {width} fields, found {len(values)}")
            stripped += [""] * (width - len(stripped))
        if self.plain:
            return RawRow(line, tuple(stripped), raw)
        return RawRow(
            line, tuple(["" if index is None else stripped[index] for index in self.order]), raw
        )


def _expected(csv_format: CsvFormat) -> str:
    optional = "".join(f"[,{name}]" for name in csv_format.optional)
    return f"'{','.join(csv_format.required)}{optional}'"


def _check_header(path: Path, columns: list[str], csv_format: CsvFormat) -> None:
    if len(columns) == 1:
        for delimiter, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            if delimiter in columns[0]:
                raise CsvRefused(
                    f"{path.name} uses {name} between fields; recycler reads comma-separated "
                    f"files with the header {_expected(csv_format)}"
                )
    duplicates = sorted({name for name in columns if columns.count(name) > 1})
    if duplicates:
        raise CsvRefused(f"{path.name}: column {', '.join(duplicates)} appears more than once")
    missing = [name for name in csv_format.required if name not in columns]
    if missing:
        raise CsvRefused(
            f"{path.name} is not a {csv_format.title} file: missing column "
            f"{', '.join(missing)} (header found: {','.join(columns)}; expected "
            f"{_expected(csv_format)})"
        )
    unknown = [name for name in columns if name not in csv_format.required + csv_format.optional]
    if unknown:
        raise CsvRefused(
            f"{path.name}: unknown column {', '.join(unknown)} (expected {_expected(csv_format)})"
        )

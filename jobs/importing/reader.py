"""Reading the CSV files recycler imports: refused whole, or row by row into good and bad rows.

A file that is not UTF-8 text, is not comma-separated, or lacks a required column is refused whole
with a sentence that says why. Inside an acceptable file, each row is parsed on its own: a bad
field makes that row a reject with its line number and reason, never the whole file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

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
        self._consumed: list[str] = []
        counting = io.BufferedReader(_CountingReader(binary, self.on_progress))
        reader = csv.reader(self._lines(counting), strict=True)
        try:
            yield from self._rows(reader)
        except csv.Error as error:
            raise CsvRefused(
                f"{self.path.name} is not a readable CSV file (line {reader.line_num}): {error}"
            ) from None
        finally:
            counting.close()

    def _lines(self, binary: io.BufferedIOBase) -> Iterator[str]:
        """The file's lines as text, read and decoded a megabyte at a time, yet with a bad byte
        reported on its own line; an overlong line is skipped (never held whole) and stands
        as a blank line, remembered by number."""
        number = 0
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
                yield "\n"
            cut = buffer.rfind(b"\n") + 1
            if cut:
                block, buffer = buffer[:cut], buffer[cut:]
                yield from self._block_lines(block, number)
                number += block.count(b"\n")
            if len(buffer) > LINE_LIMIT:
                buffer, skipping = b"", True
        if skipping:
            self._overlong.add(number + 1)
            yield "\n"
        elif buffer:
            yield from self._block_lines(buffer, number)

    def _block_lines(self, block: bytes, before: int) -> Iterator[str]:
        """The lines of a block of whole lines that follows line `before`."""
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
        consumed = self._consumed
        lines = text.split("\n")
        last = len(lines) - 1
        for index, line in enumerate(lines):
            if index == last:
                if line:  # the file's last line, without a newline
                    consumed.append(line)
                    yield line
                return
            number = before + index + 1
            if len(line) >= LINE_LIMIT:
                self._overlong.add(number)
                yield "\n"
                continue
            # The record's own text, for the rejects file (a quoted field may span lines).
            consumed.append(line)
            yield line + "\n"

    def _rows(self, reader: Any) -> Iterator[RawRow]:
        header = next(reader, None)
        while header is not None and not any(field.strip() for field in header):
            header = next(reader, None)
        if header is None:
            raise CsvRefused(
                f"{self.path.name} is empty: expected a header row {_expected(self.csv_format)}"
            )
        columns = [name.strip().lower() for name in header]
        _check_header(self.path, columns, self.csv_format)
        self.columns = columns
        width = len(columns)
        # Where each of the format's columns stands in this file (None: an optional one absent).
        order = [
            columns.index(name) if name in columns else None for name in self.csv_format.columns
        ]
        plain = order == list(range(width))
        trailing_optional = [
            count
            for count in range(width)
            if all(name in self.csv_format.optional for name in columns[count:])
        ]
        consumed = self._consumed
        consumed.clear()
        for record in reader:
            values: list[str] = record
            line = reader.line_num
            raw = (consumed[0] if len(consumed) == 1 else "\n".join(consumed)).rstrip("\r")
            consumed.clear()
            if line in self._overlong:
                yield RawRow(line, (), "", f"the line is longer than {LINE_LIMIT} characters")
                continue
            if not any(values) or not any(value.strip() for value in values):
                continue  # blank lines carry nothing
            if len(raw) > FIELD_LIMIT and max(map(len, values)) > FIELD_LIMIT:
                yield RawRow(line, (), "", f"a field is longer than {FIELD_LIMIT} characters")
                continue
            if len(values) != width:
                # Trailing optional columns may be left off entirely, as many exports do.
                if len(values) in trailing_optional:
                    values = values + [""] * (width - len(values))
                else:
                    problem = f"expected {width} fields, found {len(values)}"
                    yield RawRow(line, (), raw, problem)
                    continue
            if plain:
                yield RawRow(line, tuple([value.strip() for value in values]), raw)
            else:
                yield RawRow(
                    line,
                    tuple(["" if index is None else values[index].strip() for index in order]),
                    raw,
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

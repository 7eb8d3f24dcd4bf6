"""The warning texts, one TOML file per language, checked when they are loaded.

A text is rendered in two steps so that the database can finish it for a whole set of numbers at
once: :meth:`TemplateBook.frame` fills in everything but the number and measures the rest, and the
number (digits only, one GSM-7 septet or one UCS-2 unit each) is put between the frame's prefix
and suffix. A template that could exceed the allowed number of parts is refused at load time, not
discovered at send time.
"""

from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import StrEnum
from pathlib import Path

from notifier.encoding import Encoding, encoding_of, segments, units
from notifier.message import Message

__all__ = [
    "LONGEST_NUMBER",
    "TemplateBook",
    "TemplateError",
    "TemplateKind",
    "TextFrame",
]

DEFAULT_DIRECTORY = Path(__file__).parent / "templates"
# E.164 allows 15 digits; the national form of any number is shorter than that.
LONGEST_NUMBER = "+" + "9" * 15
_NUMBER = "number"
# The longest a date can print as: a two-digit day of the longest month name.
_LONGEST_DAY = 28


class TemplateError(Exception):
    """A template is missing, malformed, or too long."""


class TemplateKind(StrEnum):
    """Which text: a warning before grace end, the final notice of the minimum-notice rule, or
    the owner's notice of a request to take the number (a transfer, a forced reinstatement)."""

    WARNING = "warning"
    FINAL_NOTICE = "final_notice"
    TRANSFER_NOTICE = "transfer_notice"
    REINSTATEMENT_NOTICE = "reinstatement_notice"


_OWNER_NOTICE = {_NUMBER, "requested_on", "care_line", "deadline"}
_PLACEHOLDERS = {
    TemplateKind.WARNING: {_NUMBER, "grace_end"},
    TemplateKind.FINAL_NOTICE: {_NUMBER, "resale_from"},
    TemplateKind.TRANSFER_NOTICE: _OWNER_NOTICE,
    TemplateKind.REINSTATEMENT_NOTICE: _OWNER_NOTICE,
}
# The longest care line the settings accept, for the length check made at load time.
LONGEST_CARE_LINE = "+" + "9" * 19


@dataclass(frozen=True)
class TextFrame:
    """A rendered text still missing the number: ``prefix + number + suffix``."""

    prefix: str
    suffix: str
    encoding: Encoding

    @property
    def fixed_units(self) -> int:
        """Length of everything but the number, in the frame's encoding units."""
        return units(self.prefix + self.suffix, self.encoding)

    def text_for(self, number: str) -> str:
        """The full text for one number."""
        return f"{self.prefix}{number}{self.suffix}"

    def segments_for(self, number: str) -> int:
        """How many parts the text for this number is sent as."""
        return segments(self.fixed_units + len(number), self.encoding)


@dataclass(frozen=True)
class _Language:
    code: str
    date_pattern: str
    moment_pattern: str
    months: tuple[str, ...]
    texts: dict[TemplateKind, str]

    def format_date(self, day: date) -> str:
        return self.date_pattern.format(
            day=day.day, month=self.months[day.month - 1], year=day.year
        )

    def format_moment(self, moment: datetime) -> str:
        """A local date and time, to the minute."""
        return self.moment_pattern.format(
            time=f"{moment.hour:02d}:{moment.minute:02d}", date=self.format_date(moment.date())
        )


class TemplateBook:
    """All languages' templates, loaded and checked."""

    def __init__(self, languages: dict[str, _Language], max_segments: int) -> None:
        self._languages = languages
        self.max_segments = max_segments

    @classmethod
    def load(cls, directory: Path | None = None, *, max_segments: int = 3) -> TemplateBook:
        """Read every ``*.toml`` in the directory (default: the shipped ones) and check them."""
        folder = directory or DEFAULT_DIRECTORY
        languages: dict[str, _Language] = {}
        for path in sorted(folder.glob("*.toml")):
            language = _read(path)
            languages[language.code] = language
        if not languages:
            raise TemplateError(f"no templates (*.toml) in {folder}")
        book = cls(languages, max_segments)
        book._check_lengths()
        return book

    @property
    def languages(self) -> frozenset[str]:
        """The language codes there are templates for."""
        return frozenset(self._languages)

    def frame(
        self,
        language: str,
        kind: TemplateKind,
        *,
        grace_end: date | None = None,
        resale_from: date | None = None,
    ) -> TextFrame:
        """The text of one kind in one language with every value but the number filled in."""
        chosen = self._language(language)
        return self._frame(
            chosen,
            kind,
            grace_end=chosen.format_date(grace_end) if grace_end else "",
            resale_from=chosen.format_date(resale_from) if resale_from else "",
        )

    def owner_notice(
        self,
        language: str,
        kind: TemplateKind,
        *,
        requested_on: date,
        care_line: str,
        deadline: datetime,
    ) -> TextFrame:
        """The owner's notice of a request, every value but the number filled in; `deadline`
        is a local date and time (the end of the cool-off)."""
        chosen = self._language(language)
        return self._frame(
            chosen,
            kind,
            requested_on=chosen.format_date(requested_on),
            care_line=care_line,
            deadline=chosen.format_moment(deadline),
        )

    def render(
        self,
        language: str,
        kind: TemplateKind,
        *,
        to: str,
        number: str,
        reference: str,
        grace_end: date | None = None,
        resale_from: date | None = None,
    ) -> Message:
        """One complete message."""
        frame = self.frame(language, kind, grace_end=grace_end, resale_from=resale_from)
        return Message(
            to=to,
            text=frame.text_for(number),
            reference=reference,
            encoding=frame.encoding,
            segments=frame.segments_for(number),
        )

    def _language(self, language: str) -> _Language:
        try:
            return self._languages[language]
        except KeyError:
            raise TemplateError(f"no templates for language {language!r}") from None

    @staticmethod
    def _frame(chosen: _Language, kind: TemplateKind, **values: str) -> TextFrame:
        marker = "\x00"
        text = chosen.texts[kind].format(number=marker, **values)
        prefix, suffix = text.split(marker)
        return TextFrame(prefix, suffix, encoding_of(prefix + suffix))

    def _check_lengths(self) -> None:
        for code, language in self._languages.items():
            longest_month = max(range(12), key=lambda month: len(language.months[month]))
            longest_date = date(2099, longest_month + 1, _LONGEST_DAY)
            longest = language.format_date(longest_date)
            for kind in TemplateKind:
                frame = self._frame(
                    language,
                    kind,
                    grace_end=longest,
                    resale_from=longest,
                    requested_on=longest,
                    care_line=LONGEST_CARE_LINE,
                    deadline=language.format_moment(datetime.combine(longest_date, time(23, 59))),
                )
                parts = frame.segments_for(LONGEST_NUMBER)
                if parts > self.max_segments:
                    raise TemplateError(
                        f"template {kind} ({code}) can take {parts} SMS parts "
                        f"({frame.encoding}); at most {self.max_segments} are allowed"
                    )


def _read(path: Path) -> _Language:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TemplateError(f"{path.name}: not valid UTF-8 TOML: {error}") from None
    try:
        code = str(data["language"])
        date_pattern = str(data["date"])
        moment_pattern = str(data["moment"])
        months = tuple(str(month) for month in data["months"])
        texts = {kind: str(data[kind.value]) for kind in TemplateKind}
    except KeyError as error:
        raise TemplateError(f"{path.name}: missing key {error.args[0]!r}") from None
    if len(months) != 12:
        raise TemplateError(f"{path.name}: months must name 12 months, found {len(months)}")
    for kind, text in texts.items():
        names = [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]
        unknown = set(names) - _PLACEHOLDERS[kind]
        if unknown:
            raise TemplateError(f"{path.name}: {kind} has unknown placeholders {sorted(unknown)}")
        if names.count(_NUMBER) != 1:
            raise TemplateError(f"{path.name}: {kind} must contain {{number}} exactly once")
    return _Language(code, date_pattern, moment_pattern, months, texts)

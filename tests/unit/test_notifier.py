"""Encoding, segment counting and templates in the notifier."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from notifier.encoding import Encoding, measure, segments
from notifier.templates import TemplateBook, TemplateError, TemplateKind


class TestEncoding:
    """GSM-7 or UCS-2, and how many parts."""

    def test_english_is_gsm7(self) -> None:
        """Plain English, digits, * and #: one septet each."""
        result = measure("Dial *888# to top up.")
        assert (result.encoding, result.units, result.segments) == (Encoding.GSM7, 21, 1)

    def test_extension_characters_take_two_septets(self) -> None:
        """{ } [ ] ~ ^ | \\ and the euro sign are escaped."""
        assert measure("€5 [x]").units == 9

    def test_khmer_is_ucs2(self) -> None:
        """Any Khmer letter makes the whole text UCS-2."""
        assert measure("លេខ 012").encoding is Encoding.UCS2

    @pytest.mark.parametrize(
        ("length", "encoding", "parts"),
        [
            (160, Encoding.GSM7, 1),
            (161, Encoding.GSM7, 2),
            (306, Encoding.GSM7, 2),
            (307, Encoding.GSM7, 3),
            (70, Encoding.UCS2, 1),
            (71, Encoding.UCS2, 2),
            (134, Encoding.UCS2, 2),
            (135, Encoding.UCS2, 3),
        ],
    )
    def test_segment_limits(self, length: int, encoding: Encoding, parts: int) -> None:
        """160/153 septets for GSM-7, 70/67 units for UCS-2."""
        assert segments(length, encoding) == parts

    def test_khmer_text_counted_in_utf16_units(self) -> None:
        """71 Khmer characters are two parts."""
        result = measure("ក" * 71)
        assert (result.encoding, result.units, result.segments) == (Encoding.UCS2, 71, 2)


class TestTemplates:
    """The shipped templates and the checks made when loading any."""

    def test_shipped_templates_load(self) -> None:
        """Khmer and English, warning and final notice."""
        book = TemplateBook.load()
        assert book.languages == {"km", "en"}

    def test_khmer_warning(self) -> None:
        """The Khmer warning names the number and the date, in UCS-2, three parts."""
        message = TemplateBook.load().render(
            "km",
            TemplateKind.WARNING,
            to="+85512345678",
            number="012345678",
            reference="r1",
            grace_end=date(2026, 12, 25),
        )
        assert message.encoding is Encoding.UCS2
        assert "012345678" in message.text
        assert "ថ្ងៃទី 25 ខែធ្នូ ឆ្នាំ 2026" in message.text
        assert message.segments == measure(message.text).segments == 3

    def test_english_final_notice(self) -> None:
        """The final notice names the date from which the number may be resold."""
        message = TemplateBook.load().render(
            "en",
            TemplateKind.FINAL_NOTICE,
            to="+85512345678",
            number="012345678",
            reference="r1",
            resale_from=date(2026, 12, 2),
        )
        assert message.text == (
            "The grace period of your number 012345678 has ended. It may be resold to a new "
            "customer from 2 December 2026. Top up now to keep it."
        )
        assert (message.encoding, message.segments) == (Encoding.GSM7, 1)

    def test_too_long_is_refused_at_load(self) -> None:
        """The Khmer warning takes 3 parts: a limit of 2 refuses the templates when loaded."""
        with pytest.raises(TemplateError, match=r"template warning \(km\) can take 3 SMS parts"):
            TemplateBook.load(max_segments=2)

    def _write(self, folder: Path, **texts: str) -> None:
        months = ", ".join(f'"M{index}"' for index in range(12))
        texts = {"transfer_notice": "{number}", "reinstatement_notice": "{number}", **texts}
        body = "\n".join(f'{key} = "{value}"' for key, value in texts.items())
        (folder / "xx.toml").write_text(
            f'language = "xx"\ndate = "{{day}} {{month}} {{year}}"\nmoment = "{{time}} {{date}}"\n'
            f"months = [{months}]\n{body}\n",
            encoding="utf-8",
        )

    def test_number_placeholder_is_required(self, tmp_path: Path) -> None:
        """A warning that does not name the number is refused."""
        self._write(tmp_path, warning="Top up by {grace_end}", final_notice="{number}")
        with pytest.raises(TemplateError, match=r"must contain \{number\} exactly once"):
            TemplateBook.load(tmp_path)

    def test_unknown_placeholder_is_refused(self, tmp_path: Path) -> None:
        """A misspelt placeholder is caught at load, not at send."""
        self._write(tmp_path, warning="{number} {grace_ends}", final_notice="{number}")
        with pytest.raises(TemplateError, match=r"unknown placeholders \['grace_ends'\]"):
            TemplateBook.load(tmp_path)

"""Phone numbers."""

from __future__ import annotations

import phonenumbers
import pytest

from jobs.phone import InvalidNumber, display_form, mask, normalise
from jobs.seeding import MOBILE_PREFIXES, number_at


class TestNormalise:
    """National and international forms become E.164."""

    @pytest.mark.parametrize(
        "text", ["012345678", "012 345 678", "+85512345678", "+855 12 345 678", "85512345678"]
    )
    def test_forms_of_one_number(self, text: str) -> None:
        """All the ways people write +85512345678."""
        assert normalise(text, "KH") == "+85512345678"

    @pytest.mark.parametrize("text", ["", "0999", "abc", "+85500000000", "01234567890123"])
    def test_invalid(self, text: str) -> None:
        """Too short, letters, unassigned ranges."""
        with pytest.raises(InvalidNumber):
            normalise(text, "KH")


class TestForms:
    """How numbers are shown."""

    def test_display_form_is_national_at_home(self) -> None:
        """Cambodian subscribers dial 0 and the national number."""
        assert display_form("+85512345678", "KH") == "012345678"
        assert display_form("+6591234567", "KH") == "+6591234567"

    def test_mask(self) -> None:
        """Country code and last three digits stay."""
        assert mask("+85512345678") == "+855*****678"


class TestSeedNumbers:
    """The synthetic base uses only valid Cambodian mobile numbers."""

    @pytest.mark.parametrize(("prefix", "digits"), MOBILE_PREFIXES)
    def test_every_prefix_is_a_valid_mobile_range(self, prefix: str, digits: int) -> None:
        """First and last number of each range are valid mobile numbers."""
        for tail in ("0" * digits, "9" * digits):
            parsed = phonenumbers.parse(f"+855{prefix}{tail}")
            assert phonenumbers.is_valid_number(parsed), (prefix, tail)

    def test_number_space_is_contiguous(self) -> None:
        """Index 0 is the first number of the first prefix."""
        assert number_at(0) == f"+855{MOBILE_PREFIXES[0][0]}000000"

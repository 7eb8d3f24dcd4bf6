"""Reading phone numbers at import speed, with exactly the decisions of ``jobs.phone.normalise``.

``normalise`` asks phonenumbers, which takes some 50 µs a number: a ten-million-row export would
spend eight minutes there. Nearly every row of an operator's export is written in one of four
plain forms (``012345678``, ``012 345 678``, ``+85512345678``, ``85512345678``). For those, this
module walks the same steps phonenumbers' ``parse`` and ``is_valid_number`` walk, with the same
metadata (patterns and lengths compiled once per region), in about 2 µs.

It only ever answers when it is sure the number is valid and allowed: then its answer is the
E.164 form ``normalise`` gives. Anything else (letters, an extension, the international prefix,
a country code shared by several regions, a national number with a leading zero, a number that
is invalid or foreign, whose refusal needs ``normalise``'s sentence) goes to ``normalise``
itself. The property test in tests/unit/test_fast_numbers.py holds the two together on
generated numbers, valid and invalid, for several regions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import phonenumbers
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from jobs.phone import normalise

__all__ = ["NumberReader"]

# phonenumbers' own limits (phonenumberutil: _MIN_LENGTH_FOR_NSN, _MAX_LENGTH_FOR_NSN, the three
# digits _VALID_PHONE_NUMBER_PATTERN asks for, _MAX_LENGTH_COUNTRY_CODE).
_MIN_NATIONAL = 2
_MAX_NATIONAL = 17
_MIN_DIGITS = 3
_LONGEST_CODE = 3
_PLAIN = re.compile(r"\+?[0-9][0-9 \-]*")
# phonenumbers.phonenumberutil.ValidationResult, as the outcomes of a length test.
_TOO_SHORT, _LOCAL_ONLY, _INVALID, _TOO_LONG, _POSSIBLE = range(5)


@dataclass(frozen=True)
class _Description:
    """A PhoneNumberDesc: its possible lengths (empty: any) and its pattern."""

    lengths: frozenset[int]
    pattern: re.Pattern[str] | None

    @classmethod
    def of(cls, description: Any) -> _Description | None:
        if description is None:
            return None
        pattern = description.national_number_pattern
        return cls(frozenset(description.possible_length), re.compile(pattern) if pattern else None)

    def matches(self, number: str) -> bool:
        """phonenumbers' _is_number_matching_desc."""
        if self.lengths and len(number) not in self.lengths:
            return False
        return self.pattern is not None and self.pattern.fullmatch(number) is not None


@dataclass(frozen=True)
class _Region:
    """One region's numbering plan, compiled for the fast path."""

    region: str
    code: int
    code_text: str
    international_prefix: re.Pattern[str] | None
    national_prefix: re.Pattern[str] | None
    general_pattern: re.Pattern[str] | None
    possible: tuple[int, ...]
    local_only: frozenset[int]
    # By length: one pattern that a valid national number of that length matches whole, the
    # general description and at least one type in a single regular expression.
    valid_by_length: dict[int, re.Pattern[str]]

    @classmethod
    def of(cls, region: str) -> _Region | None:
        """The plan, or None when the region needs phonenumbers' full treatment."""
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        if metadata is None or metadata.national_prefix_transform_rule:
            return None
        code, described = metadata.country_code, metadata.general_desc
        if code is None or described is None:
            return None
        if COUNTRY_CODE_TO_REGION_CODE.get(code) != (region,):
            return None  # a code shared by several regions: which one is phonenumbers' to say
        general = _Description.of(described)
        if general is None:
            return None
        kinds = (
            metadata.premium_rate,
            metadata.toll_free,
            metadata.shared_cost,
            metadata.voip,
            metadata.personal_number,
            metadata.pager,
            metadata.uan,
            metadata.voicemail,
            metadata.mobile,
            metadata.fixed_line,
        )
        types = [described for described in map(_Description.of, kinds) if described is not None]
        prefix = metadata.national_prefix_for_parsing
        return cls(
            region=region,
            code=code,
            code_text=str(code),
            international_prefix=re.compile(metadata.international_prefix)
            if metadata.international_prefix
            else None,
            national_prefix=re.compile(prefix) if prefix else None,
            general_pattern=general.pattern,
            possible=tuple(sorted(described.possible_length)),
            local_only=frozenset(described.possible_length_local_only),
            valid_by_length=_valid_by_length(general, types),
        )

    def viable(self, number: str) -> bool:
        """phonenumbers' _match_national_number against the general description."""
        return (
            self.general_pattern is not None and self.general_pattern.fullmatch(number) is not None
        )

    def strip_national_prefix(self, number: str) -> str:
        """phonenumbers' _maybe_strip_national_prefix_carrier_code, without a transform rule."""
        if not number or self.national_prefix is None:
            return number
        match = self.national_prefix.match(number)
        if match is None:
            return number
        rest = number[match.end() :]
        if self.viable(number) and not self.viable(rest):
            return number
        return rest

    def length(self, number: str) -> int:
        """phonenumbers' _test_number_length for an unknown type."""
        size = len(number)
        if size in self.local_only:
            return _LOCAL_ONLY
        shortest = self.possible[0]
        if shortest == size:
            return _POSSIBLE
        if shortest > size:
            return _TOO_SHORT
        if self.possible[-1] < size:
            return _TOO_LONG
        return _POSSIBLE if size in self.possible[1:] else _INVALID

    def valid(self, number: str) -> bool:
        """phonenumbers' _number_type_helper(...) != UNKNOWN: the general description and at
        least one type (same_mobile_and_fixed_line_pattern only changes which type)."""
        pattern = self.valid_by_length.get(len(number))
        return pattern is not None and pattern.fullmatch(number) is not None


def _valid_by_length(
    general: _Description, types: list[_Description]
) -> dict[int, re.Pattern[str]]:
    """For each length a number can have: the general pattern as a lookahead, then any of the
    patterns of the types that allow that length (a description without lengths allows all)."""
    if general.pattern is None:
        return {}
    lengths = set(general.lengths) or set(range(1, _MAX_NATIONAL + 1))
    for kind in types:
        lengths |= kind.lengths
    combined = {}
    for length in sorted(lengths):
        if general.lengths and length not in general.lengths:
            continue
        choices = [
            kind.pattern.pattern
            for kind in types
            if kind.pattern is not None and (not kind.lengths or length in kind.lengths)
        ]
        if choices:
            alternatives = "|".join(f"(?:{choice})" for choice in choices)
            combined[length] = re.compile(f"(?=(?:{general.pattern.pattern})$)(?:{alternatives})")
    return combined


class NumberReader:
    """``normalise(text, region, allowed)``, fast for the plain forms exports write."""

    def __init__(self, region: str, allowed: frozenset[str] | None) -> None:
        self.region = region
        self.allowed = allowed
        self._home = _Region.of(region)
        self._by_code: dict[int, _Region | None] = {}
        # The country code's length by the first three digits, on which alone it depends (0:
        # none): looked up once per distinct start, not tried digit by digit for every number.
        self._code_length: dict[str, int] = {}

    def __call__(self, text: str) -> str:
        """The number in E.164; raises InvalidNumber as ``normalise`` does."""
        return self.fast(text) or normalise(text, self.region, self.allowed)

    def fast(self, text: str) -> str | None:
        """The E.164 form when the number is plainly written, valid and allowed; else None."""
        home = self._home
        written = text.strip()
        if home is None or not _PLAIN.fullmatch(written):
            return None
        plus = written[0] == "+"
        digits = written[1:] if plus else written
        if " " in digits or "-" in digits:
            digits = digits.replace(" ", "").replace("-", "")
        if len(digits) < _MIN_DIGITS:
            return None
        split = self._split(digits) if plus else self._split_home(home, digits)
        if split is None:
            return None
        code, national = split
        plan = self._plan(code)
        if plan is None or len(national) < _MIN_NATIONAL:
            return None
        stripped = plan.strip_national_prefix(national)
        if plan.length(stripped) not in (_TOO_SHORT, _LOCAL_ONLY, _INVALID):
            national = stripped
        if (
            len(national) > _MAX_NATIONAL
            or national.startswith("0")  # Italian-style leading zeros: phonenumbers' business
            or not plan.valid(national)
            or (self.allowed is not None and plan.region not in self.allowed)
        ):
            return None
        return f"+{code}{national}"

    def _split(self, digits: str) -> tuple[int, str] | None:
        """A number written with a plus: its country code and national number."""
        start = digits[:_LONGEST_CODE]
        length = self._code_length.get(start)
        if length is None:
            length = self._code_length[start] = _country_code_length(start)
        if length == 0 or len(digits) <= _MIN_NATIONAL:
            return None
        return int(digits[:length]), digits[length:]

    @staticmethod
    def _split_home(home: _Region, digits: str) -> tuple[int, str] | None:
        """A number written without a plus: in the home region, with or without its code."""
        if home.international_prefix is not None and home.international_prefix.match(digits):
            return None  # an international prefix, or the 00 that normalise reads itself
        national = digits
        if digits.startswith(home.code_text):
            rest = home.strip_national_prefix(digits[len(home.code_text) :])
            if (not home.viable(digits) and home.viable(rest)) or home.length(digits) == _TOO_LONG:
                national = rest
        return home.code, national

    def _plan(self, code: int) -> _Region | None:
        if code not in self._by_code:
            regions = COUNTRY_CODE_TO_REGION_CODE.get(code, ())
            self._by_code[code] = _Region.of(regions[0]) if len(regions) == 1 else None
        return self._by_code[code]


def _country_code_length(start: str) -> int:
    """phonenumbers' _extract_country_code: the length of the first known code of one to three
    digits at the start of a number (0: none)."""
    if start[0] == "0":
        return 0
    for size in range(1, min(len(start), _LONGEST_CODE) + 1):
        if int(start[:size]) in COUNTRY_CODE_TO_REGION_CODE:
            return size
    return 0

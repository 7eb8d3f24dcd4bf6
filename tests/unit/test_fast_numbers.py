"""The fast number reader decides exactly as phonenumbers does (issue 10).

Whenever the fast path answers, its answer is normalise's; whenever it declines, normalise is
asked anyway. Generated inputs: numbers of several regions written in every plain form (national
with and without separators, E.164, the country code without a plus, the 00 prefix), valid ones
taken from phonenumbers' own examples and random digits around them, plus junk. And the fast path
must really be fast for the forms exports use: it answers for the valid numbers written plainly.
"""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jobs.fast_numbers import NumberReader
from jobs.phone import InvalidNumber, normalise

REGIONS = ("KH", "TH", "VN", "GB", "US", "IT", "DE", "SG", "FR", "IN")
TYPES = (
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.TOLL_FREE,
)


def slow(text: str, region: str, allowed: frozenset[str] | None) -> str | None:
    try:
        return normalise(text, region, allowed)
    except InvalidNumber:
        return None


def examples() -> list[tuple[str, str]]:
    """(region, national significant number) of phonenumbers' example numbers."""
    found = []
    for region in REGIONS:
        for kind in TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                found.append((region, phonenumbers.national_significant_number(number)))
    return found


EXAMPLES = examples()


@st.composite
def written_numbers(draw: st.DrawFn) -> str:
    """A number as some export might write it."""
    region, national = draw(st.sampled_from(EXAMPLES))
    code = str(phonenumbers.country_code_for_region(region))
    digits = list(national)
    for _ in range(draw(st.integers(0, 2))):  # near misses: digits changed, added, dropped
        action = draw(st.sampled_from(("change", "add", "drop")))
        index = draw(st.integers(0, max(len(digits) - 1, 0)))
        if action == "change" and digits:
            digits[index] = draw(st.sampled_from("0123456789"))
        elif action == "add":
            digits.insert(index, draw(st.sampled_from("0123456789")))
        elif digits:
            digits.pop(index)
    body = "".join(digits)
    form = draw(st.sampled_from(("national", "spaced", "e164", "bare", "double zero", "junk")))
    if form == "national":
        return "0" + body
    if form == "spaced":
        text = "0" + body
        return f"{text[:3]} {text[3:6]}-{text[6:]}"
    if form == "e164":
        return f"+{code}{body}"
    if form == "bare":
        return f"{code}{body}"
    if form == "double zero":
        return f"00{code}{body}"
    return draw(
        st.sampled_from(("", "+", "  0", "12", "abc", f"0{body} ext. 5", f"+{code}0{body}"))
    )


@settings(max_examples=3000, deadline=None)
@given(
    text=st.one_of(written_numbers(), st.text(alphabet="0123456789+ -", max_size=18)),
    region=st.sampled_from(REGIONS),
    allowed=st.sampled_from((None, "home", "home and TH")),
)
@example(text="0085512300063", region="KH", allowed="home")
@example(text="85512300063", region="KH", allowed="home")
@example(text="+1 202 555 0143", region="KH", allowed="home")
def test_fast_path_never_disagrees(text: str, region: str, allowed: str | None) -> None:
    """The fast answer, when there is one, is normalise's; the reader's answer always is."""
    regions = (
        None
        if allowed is None
        else frozenset({region})
        if allowed == "home"
        else frozenset({region, "TH"})
    )
    reader = NumberReader(region, regions)
    expected = slow(text, region, regions)
    fast = reader.fast(text)
    if fast is not None:
        assert fast == expected, (text, region, regions)
    try:
        answer: str | None = reader(text)
    except InvalidNumber:
        answer = None
    assert answer == expected


@pytest.mark.parametrize(
    "written", ["012345678", "012 345 678", "012-345-678", "+85512345678", "85512345678"]
)
def test_plain_forms_take_the_fast_path(written: str) -> None:
    """The forms exports use are answered without phonenumbers."""
    assert NumberReader("KH", frozenset({"KH"})).fast(written) == "+85512345678"


def test_every_valid_example_in_plain_form_is_fast() -> None:
    """phonenumbers' example numbers of the simple regions, nationally and in E.164."""
    for region in ("KH", "TH", "VN", "FR", "IN"):
        reader = NumberReader(region, None)
        for kind in TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            national = phonenumbers.national_significant_number(number)
            assert reader.fast(e164) == e164, (region, kind)
            assert reader.fast("0" + national) == e164, (region, kind)

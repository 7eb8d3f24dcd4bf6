"""Phone numbers: parsing to E.164, the national form subscribers dial, and masking for logs."""

from __future__ import annotations

import phonenumbers

from jobs.errors import InputRefused

__all__ = [
    "InvalidNumber",
    "display_form",
    "mask",
    "national_prefix",
    "normalise",
    "number_from_user",
]


class InvalidNumber(ValueError):
    """Not a valid phone number."""


def normalise(text: str, region: str, allowed: frozenset[str] | None = None) -> str:
    """The number in E.164 (``+85512345678``); national forms are read in ``region``.

    A number with an extension is refused (a subscriber's number has none, and dropping it
    would change what the row says); so is a number of a region outside ``allowed`` (None:
    any). A number written with the international prefix 00 (``0085512345678``) is read as
    +855…, as a person reading it would, also where the region's own prefix is another one.
    """
    candidate = text.strip()
    if not candidate:
        raise InvalidNumber("empty phone number")
    parsed = _parse(candidate, region)
    if (
        (parsed is None or not _acceptable(parsed, allowed))
        and candidate.startswith("00")
        and (international := _parse("+" + candidate[2:], region)) is not None
        and _acceptable(international, allowed)
    ):
        parsed = international
    if parsed is None:
        raise InvalidNumber(f"not a phone number: {candidate!r}")
    if parsed.extension:
        raise InvalidNumber(f"{candidate!r} has an extension; a subscriber number has none")
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber(f"not a valid number: {candidate!r}")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if allowed is not None:
        number_region = phonenumbers.region_code_for_number(parsed)
        if number_region not in allowed:
            raise InvalidNumber(
                f"{e164} is a number of {number_region}; this base takes numbers of "
                f"{', '.join(sorted(allowed))}"
            )
    return e164


def _parse(candidate: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None


def _acceptable(parsed: phonenumbers.PhoneNumber, allowed: frozenset[str] | None) -> bool:
    return (
        not parsed.extension
        and phonenumbers.is_valid_number(parsed)
        and (allowed is None or phonenumbers.region_code_for_number(parsed) in allowed)
    )


def number_from_user(text: str, region: str) -> str:
    """A number typed on the command line, in E.164; a refusal that says how to write it."""
    try:
        return normalise(text, region)
    except InvalidNumber as error:
        raise InputRefused(f"{error} (give it as +85512345678 or 012345678)") from None


def national_prefix(region: str) -> tuple[str, str] | None:
    """The region's country code as ``+CC`` and its trunk prefix, if numbers are dialled with one.

    For Cambodia this is ``("+855", "0")``: +85512345678 is dialled 012345678.
    """
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None or not metadata.national_prefix:
        return None
    return f"+{metadata.country_code}", metadata.national_prefix


def mask(msisdn: str) -> str:
    """A number with its middle hidden for logs: ``+855*****678``."""
    if len(msisdn) <= 7:
        return "*" * len(msisdn)
    return msisdn[:4] + "*" * (len(msisdn) - 7) + msisdn[-3:]


def display_form(msisdn: str, region: str) -> str:
    """The number as a subscriber of `region` dials it (``012345678``); E.164 if foreign."""
    prefixes = national_prefix(region)
    if prefixes is None or not msisdn.startswith(prefixes[0]):
        return msisdn
    return prefixes[1] + msisdn[len(prefixes[0]) :]

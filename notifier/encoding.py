"""How an SMS is encoded and into how many parts it splits.

GSM-7 (the GSM 03.38 alphabet) packs 160 septets in one message and 153 per part when the text is
split; characters of the extension table take two septets. Any character outside that alphabet makes
the whole message UCS-2: 70 UTF-16 code units in one message, 67 per part. Khmer is always UCS-2.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

__all__ = ["Encoding", "Measure", "SegmentLimits", "encoding_of", "measure", "segments", "units"]


class Encoding(StrEnum):
    """The two SMS data codings recycler sends."""

    GSM7 = "GSM-7"
    UCS2 = "UCS-2"

    @property
    def limits(self) -> SegmentLimits:
        """How many units fit in one message and in each part of a split one."""
        return _LIMITS[self]


@dataclass(frozen=True)
class SegmentLimits:
    """Units in a single message, and in each part of a concatenated one."""

    single: int
    part: int


_LIMITS = {
    Encoding.GSM7: SegmentLimits(single=160, part=153),
    Encoding.UCS2: SegmentLimits(single=70, part=67),
}


@dataclass(frozen=True)
class Measure:
    """A text's encoding, its length in that encoding's units, and its number of parts."""

    encoding: Encoding
    units: int
    segments: int


def encoding_of(text: str) -> Encoding:
    """GSM-7 when every character is in the GSM 03.38 alphabet, otherwise UCS-2."""
    try:
        text.encode("gsm03.38")
    except UnicodeEncodeError:
        return Encoding.UCS2
    return Encoding.GSM7


def units(text: str, encoding: Encoding) -> int:
    """The text's length in septets (GSM-7) or UTF-16 code units (UCS-2)."""
    if encoding is Encoding.GSM7:
        # The codec writes an escape before each extension-table character: one byte per septet.
        return len(text.encode("gsm03.38"))
    return len(text.encode("utf-16-le")) // 2


def segments(length: int, encoding: Encoding) -> int:
    """How many parts a text of `length` units is sent as."""
    limits = encoding.limits
    if length <= limits.single:
        return 1
    return -(-length // limits.part)


def measure(text: str) -> Measure:
    """Encoding, length and parts of a text."""
    encoding = encoding_of(text)
    length = units(text, encoding)
    return Measure(encoding=encoding, units=length, segments=segments(length, encoding))

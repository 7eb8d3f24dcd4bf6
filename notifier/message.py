"""One SMS as recycler hands it to a gateway."""

from __future__ import annotations

from dataclasses import dataclass

from notifier.encoding import Encoding, measure

__all__ = ["Message"]


@dataclass(frozen=True)
class Message:
    """An SMS: destination in E.164, text, and recycler's own reference for it."""

    to: str
    text: str
    reference: str
    encoding: Encoding
    segments: int

    @classmethod
    def of(cls, to: str, text: str, reference: str) -> Message:
        """A message whose encoding and parts are measured from its text."""
        measured = measure(text)
        return cls(to, text, reference, measured.encoding, measured.segments)

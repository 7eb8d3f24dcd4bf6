"""The console gateway: every SMS becomes one JSON line, on standard output or in a file.

It is the default, so that a demo or a test shows exactly what subscribers would receive.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from notifier.message import Message

__all__ = ["ConsoleGateway"]


class ConsoleGateway:
    """Writes each message as a JSON line with to, text, encoding, segments and reference."""

    def __init__(self, path: Path | None = None, stream: TextIO | None = None) -> None:
        self._path = path
        self._stream = stream
        self._file: TextIO | None = None

    @property
    def name(self) -> str:
        """``console``."""
        return "console"

    async def send(self, message: Message) -> str:
        """Write the line and flush it: a line still in a buffer was not sent."""
        line = json.dumps(
            {
                "to": message.to,
                "text": message.text,
                "encoding": str(message.encoding),
                "segments": message.segments,
                "reference": message.reference,
            },
            ensure_ascii=False,
        )
        target = self._target()
        target.write(line + "\n")
        target.flush()
        return f"console-{message.reference}"

    async def close(self) -> None:
        """Close the outbox file, if one was opened."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _target(self) -> TextIO:
        if self._path is None:
            return self._stream or sys.stdout
        if self._file is None:
            self._file = self._path.open("a", encoding="utf-8")
        return self._file

"""The console gateway: every SMS becomes one JSON line, on standard output or in a file.

It is the default, so that a demo or a test shows exactly what subscribers would receive.

A line in the file is written whole or not at all: it goes out in one ``write`` to a file opened
for appending, and if the disk fills part-way the file is cut back to where it was, so a reader
never meets a torn line, and the message is reported unsent (a failure on the operator's side).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TextIO

from notifier.gateway import OperatorGatewayError
from notifier.message import Message

__all__ = ["ConsoleGateway"]


class ConsoleGateway:
    """Writes each message as a JSON line with to, text, encoding, segments and reference."""

    def __init__(self, path: Path | None = None, stream: TextIO | None = None) -> None:
        self._path = path
        self._stream = stream
        self._descriptor: int | None = None

    @property
    def name(self) -> str:
        """``console``."""
        return "console"

    async def send(self, message: Message) -> str:
        """Write the line, whole, before answering: a line still in a buffer was not sent."""
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
        if self._path is None:
            target = self._stream or sys.stdout
            try:
                target.write(line + "\n")
                target.flush()
            except OSError as error:
                raise OperatorGatewayError("write_error", str(error)) from None
        else:
            self._append((line + "\n").encode("utf-8"))
        return f"console-{message.reference}"

    async def close(self) -> None:
        """Close the outbox file, if one was opened."""
        if self._descriptor is not None:
            descriptor, self._descriptor = self._descriptor, None
            os.close(descriptor)

    def _append(self, data: bytes) -> None:
        assert self._path is not None
        try:
            if self._descriptor is None:
                self._descriptor = os.open(
                    self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
            before = os.fstat(self._descriptor).st_size
        except OSError as error:
            raise OperatorGatewayError(
                "write_error", f"cannot open {self._path}: {error.strerror}"
            ) from None
        try:
            written = os.write(self._descriptor, data)
        except OSError as error:
            written, problem = 0, error.strerror
        else:
            problem = "the disk is full" if written < len(data) else None
        if problem is not None:
            if written:
                # Cut the torn line off again: the file keeps only whole lines.
                os.ftruncate(self._descriptor, before)
            raise OperatorGatewayError("write_error", f"cannot write {self._path}: {problem}")

"""An in-memory gateway for tests, shipped so that users can test their own code with it."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from notifier.gateway import GatewayError
from notifier.message import Message

__all__ = ["InMemoryGateway"]


@dataclass
class InMemoryGateway:
    """Records every message it accepts; raises the errors it is told to, in order."""

    name: str = "memory"
    sent: list[Message] = field(default_factory=list)
    _failures: deque[GatewayError] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, *errors: GatewayError) -> None:
        """Make the next sends raise these errors, one per send."""
        with self._lock:
            self._failures.extend(errors)

    def send(self, message: Message) -> str:
        with self._lock:
            if self._failures:
                raise self._failures.popleft()
            self.sent.append(message)
            return f"memory-{len(self.sent)}"

    def close(self) -> None:
        """Nothing to release."""

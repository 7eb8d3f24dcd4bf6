"""An in-memory gateway for tests, shipped so that users can test their own code with it."""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from dataclasses import dataclass, field

from notifier.gateway import GatewayError
from notifier.message import Message

__all__ = ["InMemoryGateway"]


@dataclass
class InMemoryGateway:
    """Records every message it accepts; raises the errors it is told to, in order.

    ``latency`` makes every send take that long, as a real gateway would. Its message ids are
    ``PREFIX-N``; the prefix is random unless given, so that two gateways never hand out the
    same id (delivery receipts find a message by it).
    """

    latency: float = 0.0
    id_prefix: str = field(default_factory=lambda: f"memory-{secrets.token_hex(4)}")
    sent: list[Message] = field(default_factory=list)
    failures: deque[GatewayError] = field(default_factory=deque)
    refusals: dict[str, GatewayError] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``memory``."""
        return "memory"

    def fail_next(self, *errors: GatewayError) -> None:
        """Make the next sends raise these errors, one per send."""
        self.failures.extend(errors)

    def refuse(self, to: str, error: GatewayError) -> None:
        """Make every send to this number raise the error."""
        self.refusals[to] = error

    async def send(self, message: Message) -> str:
        """Record the message, or raise the error it was told to."""
        if self.latency:
            await asyncio.sleep(self.latency)
        if message.to in self.refusals:
            raise self.refusals[message.to]
        if self.failures:
            raise self.failures.popleft()
        self.sent.append(message)
        return f"{self.id_prefix}-{len(self.sent)}"

    async def close(self) -> None:
        """Nothing to release."""

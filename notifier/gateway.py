"""The port every SMS gateway adapter implements, and the errors it may raise.

Gateways are asynchronous: the dispatcher keeps many requests in flight from one process, and a
gateway's latency (tens of milliseconds) is what bounds throughput, not its CPU.
"""

from __future__ import annotations

from typing import Protocol

from notifier.message import Message

__all__ = [
    "Gateway",
    "GatewayError",
    "OperatorGatewayError",
    "RecipientGatewayError",
    "RetryableGatewayError",
]


class GatewayError(Exception):
    """The gateway did not accept the message.

    Which subclass is raised says whose side the failure is on, and that decides everything
    after it: a passing failure is tried again later; a refusal about the recipient's number
    is final (the subscriber cannot be reached, which counts as notice); a failure on the
    operator's own side (credentials, configuration, an unreachable gateway) is never notice,
    and stops the sender until the operator has fixed it.
    """

    retryable: bool = False

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class RetryableGatewayError(GatewayError):
    """A passing failure (timeout, 5xx, rate limited): the same message may be sent again later."""

    retryable = True


class RecipientGatewayError(GatewayError):
    """The gateway refused the message for good because of the recipient's number (invalid,
    unsubscribed, not a mobile number, unreachable handset)."""


class OperatorGatewayError(GatewayError):
    """The gateway cannot be used as configured: rejected credentials, a missing permission,
    a wrong account or sender, a gateway that cannot be reached, an outbox that cannot be
    written. Nothing about the recipient; every other message would fail the same way."""


class Gateway(Protocol):
    """Sends one SMS and answers with the gateway's id for it, or raises a GatewayError."""

    @property
    def name(self) -> str:
        """The adapter's name, for logs and metrics."""
        ...

    async def send(self, message: Message) -> str:
        """Hand one message to the gateway; returns the gateway's message id."""
        ...

    async def close(self) -> None:
        """Release connections or files."""
        ...

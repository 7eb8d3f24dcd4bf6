"""The port every SMS gateway adapter implements, and the errors it may raise."""

from __future__ import annotations

from typing import Protocol

from notifier.message import Message

__all__ = ["Gateway", "GatewayError", "PermanentGatewayError", "RetryableGatewayError"]


class GatewayError(Exception):
    """The gateway did not accept the message."""

    retryable: bool = False

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class RetryableGatewayError(GatewayError):
    """A passing failure (timeout, 5xx, rate limited): the same message may be sent again later."""

    retryable = True


class PermanentGatewayError(GatewayError):
    """The gateway refused the message for good (invalid number, unsubscribed)."""

    retryable = False


class Gateway(Protocol):
    """Sends one SMS and answers with the gateway's id for it, or raises a GatewayError."""

    name: str

    def send(self, message: Message) -> str:
        """Hand one message to the gateway; returns the gateway's message id."""
        ...

    def close(self) -> None:
        """Release connections or files."""
        ...

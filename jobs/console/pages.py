"""What the console's pages show and do, over the services the command line uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cached_property

from jobs.clock import Clock, parse_date
from jobs.database.engine import Database
from jobs.errors import InputRefused
from jobs.inspection import NumberView, number_view
from jobs.phone import number_from_user
from jobs.safeguards.changes import Operator
from jobs.safeguards.ownership import Safeguards
from jobs.safeguards.requests import FourEyes, Request
from jobs.settings import Settings
from jobs.vocabulary import Language

__all__ = ["Pages"]


@dataclass(frozen=True)
class Pages:
    database: Database
    settings: Settings
    clock: Clock

    # Made once for the console's life: the four-eyes operations load and check the message
    # templates, which no page view should do again.
    @cached_property
    def four_eyes(self) -> FourEyes:
        return FourEyes.of(self.database, self.settings, self.clock)

    @cached_property
    def safeguards(self) -> Safeguards:
        return Safeguards.of(self.database, self.settings, self.clock)

    def number_of(self, text: str) -> str:
        """A number in any form a person types it, in E.164."""
        if not text.strip():
            raise InputRefused("type a number to look up")
        return number_from_user(text, self.settings.default_region)

    def number(self, text: str) -> NumberView:
        return number_view(self.database, self.settings, self.clock, self.settings.rules, text)

    def pending(self) -> list[Request]:
        return self.four_eyes.requests(pending=True)

    def act(self, action: str, msisdn: str, actor: str, form: dict[str, str]) -> str:
        """A safeguard on one number, signed by the person; returns what was done."""
        number = self.number_of(msisdn)
        operator = Operator(actor=actor, reason=form.get("reason", ""))
        safeguards = self.safeguards
        if action == "hold":
            return safeguards.hold(number, operator).summary
        if action == "release":
            return safeguards.release(number, operator).summary
        if action == "sell":
            language = form.get("language", Language.KHMER)
            return safeguards.sell(
                number,
                operator,
                owner=form.get("owner", ""),
                language=language,
                validity_end=_date(form.get("validity_end", ""), "validity end"),
            ).summary
        eyes = self.four_eyes
        if form.get("kind") == "reinstatement":
            opened = eyes.request_reinstatement(number, operator)
        else:
            opened = eyes.request_transfer(
                number,
                operator,
                to_owner=form.get("to_owner", ""),
                consent_current=form.get("consent_current", ""),
                consent_new=form.get("consent_new", ""),
            )
        return f"request {opened.id} opened; the owner's notice is queued"

    def decide(self, action: str, request_id: int, actor: str, form: dict[str, str]) -> str:
        operator = Operator(actor=actor, reason=form.get("reason", ""))
        eyes = self.four_eyes
        if action == "approve":
            failed = form.get("notice_failed", "").strip() or None
            return eyes.approve(request_id, operator, notice_failed=failed).summary
        if action == "reject":
            return eyes.reject(request_id, operator).summary
        return eyes.object(request_id, operator).summary


def _date(text: str, what: str) -> date:
    try:
        return parse_date(text)
    except ValueError as error:
        raise InputRefused(f"{what}: {error}") from None

"""Four eyes: a number is taken from the owner who has it only by a request that the owner hears
of first and that a second person approves (issue 13; the operator's 2021 incident was one
employee doing it alone).

1. A request (a transfer to a new owner with both consents, or a forced reinstatement back to
   the owner a sale or transfer took the number from) is recorded with its evidence, and the
   owner's notice is queued at once in the outbox, ahead of the night's warnings.
2. A transfer cannot be approved before the cool-off has passed; neither kind before the
   notice reached a final state (sent, delivered, or failed for good, which the approver must
   then acknowledge with a reason).
3. The approver must be someone other than the requester. Approval re-checks everything under
   the number's lock (same ownership as at the request, not held for a transfer, no decision yet,
   not expired) and carries the move out in the same transaction.
4. A rejection ends the request; an objection (the owner called the care line) ends it and puts
   the number on hold at once.

Requests and their decisions are append-only; the database refuses an owner change that does
not name an approved request (migration 0007), whatever path the change took.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.clock import Clock
from jobs.database.engine import BaseLock, Database, retried
from jobs.database.schema import (
    transfer_decisions,
    transfer_requests,
    warnings,
)
from jobs.errors import InputRefused
from jobs.phone import display_form
from jobs.rules import Rules
from jobs.safeguards.changes import (
    Change,
    NumberChange,
    Operator,
    refuse_past_validity,
    taken_from,
)
from jobs.settings import Settings
from jobs.vocabulary import (
    NOTICE_STATES,
    OPEN_STATES,
    UNREACHED_STATES,
    AuditEvent,
    ChangeAction,
    CycleEnd,
    Language,
    MessageKind,
    OwnershipEnd,
    OwnershipStart,
    RequestDecision,
    RequestKind,
    RequestState,
    WarningState,
)
from notifier.templates import TemplateBook, TemplateKind

__all__ = ["FourEyes", "Request", "RequestPolicy"]

_NOTICE_TEMPLATES = {
    RequestKind.TRANSFER: TemplateKind.TRANSFER_NOTICE,
    RequestKind.REINSTATEMENT: TemplateKind.REINSTATEMENT_NOTICE,
}
_EVENTS = {
    RequestDecision.APPROVED: AuditEvent.REQUEST_APPROVED,
    RequestDecision.REJECTED: AuditEvent.REQUEST_REJECTED,
    RequestDecision.OBJECTED: AuditEvent.REQUEST_OBJECTED,
}


@dataclass(frozen=True)
class RequestPolicy:
    """The settings of the workflow."""

    care_line: str
    cooloff: timedelta
    time_to_live: timedelta
    max_per_actor_per_day: int
    region: str  # the notice names the number as its owner dials it

    @classmethod
    def of(cls, settings: Settings) -> RequestPolicy:
        return cls(
            care_line=settings.care_line,
            cooloff=timedelta(hours=settings.transfer_cooloff_hours),
            time_to_live=timedelta(days=settings.transfer_request_ttl_days),
            max_per_actor_per_day=settings.max_transfer_requests_per_actor_per_day,
            region=settings.default_region,
        )


@dataclass(frozen=True)
class Request:
    """A request as people read it: the evidence, the notice, the decision."""

    id: int
    msisdn: str
    kind: str
    state: str
    from_owner: str
    to_owner: str
    to_language: str
    ownership_id: int
    previous_ownership_id: int | None
    consent_current: str | None
    consent_new: str | None
    reason: str
    requested_by: str
    requested_at: datetime
    cooloff_until: datetime
    expires_at: datetime
    notice_id: int | None
    notice_state: str | None
    notice_error: str | None
    decision: str | None
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    notice_failed: str | None
    validity_end: date | None

    def to_json(self) -> dict[str, Any]:
        """The machine-readable request."""
        return {
            name: value.isoformat() if isinstance(value, date | datetime) else value
            for name, value in self.__dict__.items()
        }


_DECISIONS = transfer_decisions.alias("decision")
_NOTICES = warnings.alias("notice")
_VIEW = (
    sa.select(
        transfer_requests,
        _DECISIONS.c.decision,
        _DECISIONS.c.decided_by,
        _DECISIONS.c.decided_at,
        _DECISIONS.c.reason.label("decision_reason"),
        _DECISIONS.c.notice_failed,
        _NOTICES.c.id.label("notice_id"),
        _NOTICES.c.state.label("notice_state"),
        sa.func.coalesce(_NOTICES.c.receipt_code, _NOTICES.c.error_code).label("notice_error"),
    )
    .select_from(
        transfer_requests.outerjoin(
            _DECISIONS, _DECISIONS.c.request_id == transfer_requests.c.id
        ).outerjoin(_NOTICES, _NOTICES.c.request_id == transfer_requests.c.id)
    )
    .order_by(transfer_requests.c.id)
)


def _request_of(row: sa.Row[Any], now: datetime) -> Request:
    if row.decision is not None:
        state = RequestState(row.decision)
    elif now >= row.expires_at:
        state = RequestState.EXPIRED
    else:
        state = RequestState.PENDING
    return Request(
        id=row.id,
        msisdn=row.msisdn,
        kind=row.kind,
        state=state,
        from_owner=row.from_owner,
        to_owner=row.to_owner,
        to_language=row.to_language,
        ownership_id=row.ownership_id,
        previous_ownership_id=row.previous_ownership_id,
        consent_current=row.consent_current,
        consent_new=row.consent_new,
        reason=row.reason,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        cooloff_until=row.cooloff_until,
        expires_at=row.expires_at,
        notice_id=row.notice_id,
        notice_state=row.notice_state,
        notice_error=row.notice_error,
        decision=row.decision,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        decision_reason=row.decision_reason,
        notice_failed=row.notice_failed,
        validity_end=row.validity_end,
    )


def requests_of(
    connection: Connection,
    now: datetime,
    *,
    msisdn: str | None = None,
    pending: bool = False,
    request_id: int | None = None,
) -> list[Request]:
    """The requests, oldest first: of one number, or all, or the one with this id; only the
    pending ones if asked."""
    query = _VIEW
    if request_id is not None:
        query = query.where(transfer_requests.c.id == request_id)
    if msisdn is not None:
        query = query.where(transfer_requests.c.msisdn == msisdn)
    if pending:
        query = query.where(_DECISIONS.c.id.is_(None), transfer_requests.c.expires_at > now)
    return [_request_of(row, now) for row in connection.execute(query)]


@dataclass(frozen=True)
class FourEyes:
    """The four-eyes operations over one database."""

    database: Database
    clock: Clock
    zone: ZoneInfo
    rules: Rules
    policy: RequestPolicy
    templates: TemplateBook

    @classmethod
    def of(cls, database: Database, settings: Settings, clock: Clock) -> FourEyes:
        """The operations with what the settings say."""
        return cls(
            database,
            clock,
            settings.zone,
            settings.rules,
            RequestPolicy.of(settings),
            TemplateBook.load(max_segments=settings.max_segments),
        )

    @contextmanager
    def _operate(self) -> Iterator[NumberChange]:
        with self.database.write(lock=BaseLock.EXCLUSIVE) as connection:
            yield NumberChange(connection, self.clock, self.zone)

    # Opening ---------------------------------------------------------------------------------

    def request_transfer(
        self,
        msisdn: str,
        operator: Operator,
        *,
        to_owner: str,
        consent_current: str,
        consent_new: str,
        language: str | None = None,
    ) -> Request:
        """Ask to give an active or in-grace number to a new owner, with both owners' consent
        on record; the owner's notice is queued at once."""
        to_owner = to_owner.strip()
        if not to_owner:
            raise InputRefused("the new owner may not be blank")
        if not consent_current.strip() or not consent_new.strip():
            raise InputRefused(
                "a transfer needs the consent of both owners: give --consent-current and "
                "--consent-new, neither blank"
            )
        if language is not None and language not in tuple(Language):
            raise InputRefused(f"unknown language {language!r} (expected km or en)")

        def opening(session: NumberChange, number: sa.Row[Any]) -> dict[str, Any]:
            if number.owner_id is None:
                raise InputRefused(
                    f"{number.msisdn} is in the resale pool: sell it with `recycler pool sell`"
                )
            if number.on_hold:
                raise InputRefused(
                    f"{number.msisdn} is on hold: it cannot be transferred until released"
                )
            if number.owner_id == to_owner:
                raise InputRefused(f"{number.msisdn} already belongs to {to_owner}")
            self._refuse_past_grace(session, number)
            current = session.open_ownership(number.msisdn)
            assert current is not None, "an owned number always has an open ownership"
            return {
                "kind": RequestKind.TRANSFER,
                "ownership_id": current.id,
                "to_owner": to_owner,
                "to_language": language or number.language,
                "consent_current": consent_current.strip(),
                "consent_new": consent_new.strip(),
                "cooloff_until": session.now + self.policy.cooloff,
            }

        return self._open(msisdn, operator, opening)

    def request_reinstatement(
        self, msisdn: str, operator: Operator, *, validity_end: date | None = None
    ) -> Request:
        """Ask to give a number back to the owner a sale or transfer took it from. It needs a
        second person but no cool-off (the seed's case: the rightful owner gets the number back
        within hours); the holder is still told first. Allowed on hold: a number held while
        its theft is sorted out is exactly the one to give back."""

        def opening(session: NumberChange, number: sa.Row[Any]) -> dict[str, Any]:
            if number.owner_id is None:
                raise InputRefused(
                    f"{number.msisdn} is in the resale pool: `recycler reinstate` without "
                    "--force gives it back to its previous owner"
                )
            previous, current = taken_from(session, number)
            if previous.owner_id == number.owner_id:
                raise InputRefused(f"{number.msisdn} already belongs to {previous.owner_id}")
            refuse_past_validity(validity_end, session.today)
            return {
                "kind": RequestKind.REINSTATEMENT,
                "ownership_id": current.id,
                "to_owner": previous.owner_id,
                "to_language": previous.language,
                "previous_ownership_id": previous.id,
                "validity_end": validity_end,
                "cooloff_until": session.now,
            }

        return self._open(msisdn, operator, opening)

    @retried
    def _open(
        self,
        msisdn: str,
        operator: Operator,
        opening: Callable[[NumberChange, sa.Row[Any]], dict[str, Any]],
    ) -> Request:
        refused: str | None = None
        with self._operate() as session:
            number = session.number(msisdn)
            opened_today = session.connection.execute(
                sa.select(sa.func.count()).where(
                    transfer_requests.c.requested_by == operator.actor,
                    transfer_requests.c.requested_on == session.today,
                )
            ).scalar_one()
            if opened_today >= self.policy.max_per_actor_per_day:
                refused = (
                    f"{operator.actor} has opened {opened_today} requests today, the most one "
                    f"person may (max_transfer_requests_per_actor_per_day = "
                    f"{self.policy.max_per_actor_per_day}); this one was not opened, and the "
                    "refusal is recorded"
                )
            else:
                values = opening(session, number)
                # Other pending requests for the number may stand beside this one (two
                # buyers, a dispute): the first approved changes the ownership, and every other
                # is then refused, since it was made against an ownership that has ended.
                request_id = self._record_request(session, number, operator, values)
                (request,) = requests_of(session.connection, session.now, request_id=request_id)
        if refused is not None:
            self._audit_refusal(msisdn, operator, refused)
            raise InputRefused(refused)
        return request

    def _record_request(
        self,
        session: NumberChange,
        number: sa.Row[Any],
        operator: Operator,
        values: dict[str, Any],
    ) -> int:
        request_id = int(
            session.connection.execute(
                transfer_requests.insert()
                .values(
                    msisdn=number.msisdn,
                    from_owner=number.owner_id,
                    reason=operator.reason,
                    requested_by=operator.actor,
                    requested_at=session.now,
                    requested_on=session.today,
                    expires_at=session.now + self.policy.time_to_live,
                    **values,
                )
                .returning(transfer_requests.c.id)
            ).scalar_one()
        )
        kind = RequestKind(values["kind"])
        frame = self.templates.owner_notice(
            number.language,
            _NOTICE_TEMPLATES[kind],
            requested_on=session.today,
            care_line=self.policy.care_line,
            deadline=values["cooloff_until"].astimezone(self.zone),
        )
        dialled = display_form(number.msisdn, self.policy.region)
        session.connection.execute(
            warnings.insert().values(
                msisdn=number.msisdn,
                kind=MessageKind.OWNER_NOTICE,
                request_id=request_id,
                owner_id=number.owner_id,
                language=number.language,
                text=frame.text_for(dialled),
                encoding=str(frame.encoding),
                segments=frame.segments_for(dialled),
                state=WarningState.PENDING,
                queued_at=session.now,
                queued_on=session.today,
                attempts=0,
                next_attempt_at=session.now,
            )
        )
        session.audit(
            number.msisdn,
            AuditEvent.REQUEST_OPENED,
            operator,
            owner_id=number.owner_id,
            details={
                "request_id": request_id,
                "kind": kind.value,
                "to_owner": values["to_owner"],
                "consent_current": values.get("consent_current"),
                "consent_new": values.get("consent_new"),
                "cooloff_until": values["cooloff_until"].isoformat(),
            },
        )
        return request_id

    def _audit_refusal(self, msisdn: str, operator: Operator, refusal: str) -> None:
        """The brake's refusal is recorded, in a transaction of its own (the refused one
        changed nothing)."""
        with self._operate() as session:
            session.audit(
                msisdn,
                AuditEvent.REQUEST_REFUSED,
                operator,
                details={"refusal": refusal},
            )

    # Deciding --------------------------------------------------------------------------------

    @retried
    def approve(
        self, request_id: int, operator: Operator, *, notice_failed: str | None = None
    ) -> Change:
        """Carry out a request, as its second person, after re-checking everything."""
        if notice_failed is not None and not notice_failed.strip():
            raise InputRefused("--notice-failed needs a reason, and it may not be blank")
        with self._operate() as session:
            request, number = self._pending(session, request_id, "approved")
            if operator.actor == request.requested_by:
                raise InputRefused(
                    f"request {request.id} was opened by {operator.actor}: someone else must "
                    "approve it (four eyes)"
                )
            current = self._unchanged(session, request, number)
            if request.kind == RequestKind.TRANSFER:
                if number.on_hold:
                    raise InputRefused(
                        f"{number.msisdn} is on hold: it cannot be transferred until released"
                    )
                self._refuse_past_grace(session, number)
                if session.now < request.cooloff_until:
                    left = request.cooloff_until - session.now
                    raise InputRefused(
                        f"request {request.id} is in its cool-off until "
                        f"{_local(request.cooloff_until, self.zone)} ({_hours(left)} from now): "
                        "the owner has until then to object"
                    )
            self._notice_settled(request, notice_failed)
            session.connection.execute(
                transfer_decisions.insert().values(
                    request_id=request.id,
                    decision=RequestDecision.APPROVED,
                    decided_at=session.now,
                    decided_by=operator.actor,
                    reason=operator.reason,
                    notice_failed=notice_failed.strip() if notice_failed else None,
                )
            )
            session.audit(
                number.msisdn,
                AuditEvent.REQUEST_APPROVED,
                operator,
                owner_id=request.to_owner,
                details={"request_id": request.id, "requested_by": request.requested_by},
            )
            summary = self._carry_out(session, request, number, current, operator)
        return Change(number.msisdn, ChangeAction(request.kind), summary, request.to_owner)

    @retried
    def reject(self, request_id: int, operator: Operator) -> Change:
        """End a pending request without carrying it out (anyone may, the requester too)."""
        with self._operate() as session:
            request, number = self._pending(session, request_id, "rejected")
            self._decide(session, request, RequestDecision.REJECTED, operator)
        return Change(
            number.msisdn,
            ChangeAction.REJECTION,
            f"request {request.id} rejected: {number.msisdn} stays with {request.from_owner}",
            number.owner_id,
        )

    @retried
    def object(self, request_id: int, operator: Operator) -> Change:
        """The owner objected (they called the care line): the request ends and the number is
        put on hold at once."""
        with self._operate() as session:
            request, number = self._pending(session, request_id, "objected to")
            self._decide(session, request, RequestDecision.OBJECTED, operator)
            if not number.on_hold:
                session.place_hold(number, operator)
        return Change(
            number.msisdn,
            ChangeAction.OBJECTION,
            f"request {request.id} ended by the owner's objection: {number.msisdn} is on hold",
            number.owner_id,
        )

    def requests(self, *, pending: bool = False, msisdn: str | None = None) -> list[Request]:
        """The requests, oldest first."""
        with self.database.read() as connection:
            return requests_of(
                connection, self.clock.now_in(connection), msisdn=msisdn, pending=pending
            )

    # Checks ----------------------------------------------------------------------------------

    def _pending(
        self, session: NumberChange, request_id: int, verb: str
    ) -> tuple[Request, sa.Row[Any]]:
        """The request, still open to a decision, and its number, locked."""
        msisdn = session.connection.execute(
            sa.select(transfer_requests.c.msisdn).where(transfer_requests.c.id == request_id)
        ).scalar()
        if msisdn is None:
            raise InputRefused(f"there is no request {request_id}")
        number = session.number(msisdn)
        # Read after the number's lock: a decision committed while this waited is seen.
        (request,) = requests_of(session.connection, session.now, request_id=request_id)
        if request.decision is not None:
            assert request.decided_at is not None
            raise InputRefused(
                f"request {request.id} cannot be {verb}: it was already {request.decision} by "
                f"{request.decided_by} on {_local(request.decided_at, self.zone)}"
            )
        if request.state == RequestState.EXPIRED:
            raise InputRefused(
                f"request {request.id} cannot be {verb}: it expired on "
                f"{_local(request.expires_at, self.zone)}, undecided; open a new one if it is "
                "still wanted"
            )
        return request, number

    def _unchanged(
        self, session: NumberChange, request: Request, number: sa.Row[Any]
    ) -> sa.Row[Any]:
        """The number's ownership is still the one the request was made against."""
        current = session.open_ownership(number.msisdn)
        if current is None:
            raise InputRefused(
                f"request {request.id} cannot be approved: {number.msisdn} was recycled since "
                "(it is in the resale pool)"
            )
        if current.id != request.ownership_id:
            raise InputRefused(
                f"request {request.id} cannot be approved: {number.msisdn} has been with "
                f"{number.owner_id} since {current.started_on.isoformat()} "
                f"({current.start_cause}), not the ownership of {request.from_owner} the "
                "request was made against"
            )
        return current

    def _refuse_past_grace(self, session: NumberChange, number: sa.Row[Any]) -> None:
        grace_end = self.rules.grace_end(number.validity_end)
        if grace_end < session.today:
            raise InputRefused(
                f"{number.msisdn} is past its grace end ({grace_end.isoformat()}): it is due "
                "for recycling, and only an active or in-grace number can be transferred"
            )

    @staticmethod
    def _notice_settled(request: Request, notice_failed: str | None) -> None:
        state = request.notice_state
        if state in OPEN_STATES:
            raise InputRefused(
                f"request {request.id} cannot be approved yet: the owner's notice is {state} "
                "(`recycler send` sends it); approval waits until it has gone or failed"
            )
        if state in UNREACHED_STATES and notice_failed is None:
            what = "failed for good" if state == WarningState.FAILED else "was not delivered"
            raise InputRefused(
                f"request {request.id}: the owner's notice {what} "
                f"({request.notice_error}); approve only with --notice-failed REASON, saying "
                "how the owner was reached instead"
            )
        if state not in NOTICE_STATES:
            raise InputRefused(
                f"request {request.id} cannot be approved: the owner's notice was {state}"
            )
        if notice_failed is not None and state not in UNREACHED_STATES:
            raise InputRefused(
                f"--notice-failed is for a notice that failed or was not delivered; this one "
                f"was {state}"
            )

    # Carrying out ----------------------------------------------------------------------------

    def _decide(
        self,
        session: NumberChange,
        request: Request,
        decision: RequestDecision,
        operator: Operator,
    ) -> None:
        session.connection.execute(
            transfer_decisions.insert().values(
                request_id=request.id,
                decision=decision,
                decided_at=session.now,
                decided_by=operator.actor,
                reason=operator.reason,
            )
        )
        # The notice of a request that is over does not go out (one already with the gateway
        # does).
        session.connection.execute(
            sa.update(warnings)
            .where(
                warnings.c.request_id == request.id,
                warnings.c.state.in_((WarningState.PENDING, WarningState.BLOCKED)),
            )
            .values(
                state=WarningState.CANCELLED,
                cancel_reason=CycleEnd.REQUEST_ENDED,
                lease_expires_at=None,
            )
        )
        session.audit(
            request.msisdn,
            _EVENTS[decision],
            operator,
            owner_id=request.from_owner,
            details={"request_id": request.id, "requested_by": request.requested_by},
        )

    def _carry_out(
        self,
        session: NumberChange,
        request: Request,
        number: sa.Row[Any],
        current: sa.Row[Any],
        operator: Operator,
    ) -> str:
        """The move itself: the ownership records first, the owner last (the database's own
        rules check the change against the approval just written)."""
        if request.kind == RequestKind.TRANSFER:
            session.end_ownership(current.id, OwnershipEnd.TRANSFER, operator.actor, request.reason)
            session.start_ownership(
                number.msisdn,
                request.to_owner,
                request.to_language,
                OwnershipStart.TRANSFER,
                started_by=operator.actor,
                reason=request.reason,
                consent_current=request.consent_current,
                consent_new=request.consent_new,
                request_id=request.id,
            )
            session.new_cycle(
                number.msisdn,
                CycleEnd.TRANSFERRED,
                owner_id=request.to_owner,
                language=request.to_language,
            )
            session.audit(
                number.msisdn,
                AuditEvent.OWNERSHIP_TRANSFERRED,
                operator,
                owner_id=request.to_owner,
                details={
                    "from_owner": request.from_owner,
                    "consent_current": request.consent_current,
                    "consent_new": request.consent_new,
                    "request_id": request.id,
                    "requested_by": request.requested_by,
                },
            )
            return f"{number.msisdn} transferred to {request.to_owner} (request {request.id})"
        assert request.previous_ownership_id is not None
        session.end_ownership(
            current.id, OwnershipEnd.REINSTATEMENT, operator.actor, request.reason
        )
        previous, new_end = session.give_back(
            number.msisdn,
            request.previous_ownership_id,
            operator,
            validity_end=request.validity_end,
            reason=request.reason,
            details={
                "from_owner": request.from_owner,
                "forced": True,
                "request_id": request.id,
                "requested_by": request.requested_by,
            },
            request_id=request.id,
        )
        return (
            f"{number.msisdn} is back with {previous.owner_id} "
            f"(validity end {new_end.isoformat()}; request {request.id})"
        )


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:.1f} h" if hours >= 1 else f"{max(1, round(hours * 60))} min"

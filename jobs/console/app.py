"""The console's HTTP layer: sign-in, the pages, the forms.

Every page but the sign-in needs a live session (jobs/staff/sessions.py); every form carries the
session's CSRF token (the sign-in form a token of its own, in a cookie and the form alike), and a
form without the right one is refused (403). Every action is carried out by the same services as
the command line, with the signed-in person's username as the actor: the four-eyes rules hold
for people here exactly as there. Nothing is fetched from the internet: styles ship with the
package, charts are drawn on the server as SVG.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from jobs.clock import Clock, local_date, parse_date
from jobs.console import reports
from jobs.console.pages import Pages
from jobs.database.engine import Database
from jobs.errors import InputRefused
from jobs.inspection import status_view
from jobs.settings import Settings
from jobs.staff.accounts import (
    SignInRefused,
    add_staff,
    authenticate,
    change_password,
    disable_staff,
    list_staff,
    reset_staff,
    set_role,
)
from jobs.staff.sessions import Session, end_session, find_session, start_session
from jobs.vocabulary import AuditEvent, StaffRole

__all__ = ["SESSION_COOKIE", "create_console"]

SESSION_COOKIE = "recycler_session"
SIGN_IN_COOKIE = "recycler_sign_in"
_HERE = Path(__file__).parent
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# What each role may do, beyond reading (the auditor reads everything; the admin only staff).
_MAY = {
    "hold": {StaffRole.AGENT, StaffRole.SUPERVISOR},
    "release": {StaffRole.SUPERVISOR},
    "request": {StaffRole.AGENT, StaffRole.SUPERVISOR},
    "object": {StaffRole.AGENT, StaffRole.SUPERVISOR},
    "sell": {StaffRole.AGENT, StaffRole.SUPERVISOR},
    "approve": {StaffRole.SUPERVISOR},
    "reject": {StaffRole.SUPERVISOR},
    "read": {StaffRole.AGENT, StaffRole.SUPERVISOR, StaffRole.AUDITOR},
    "audit": {StaffRole.AUDITOR},  # the audit log and the banks' checks
    "staff": {StaffRole.ADMIN},
}


class _Refused(Exception):
    """A request the console answers with a page of its own (status and sentence)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class _Console:
    database: Database
    settings: Settings
    clock: Clock

    def may(self, session: Session, action: str) -> bool:
        return session.member.role in _MAY[action]


def create_console(database: Database, settings: Settings, clock: Clock) -> FastAPI:  # noqa: PLR0915 (one route per page, each a few lines)
    """The console as an ASGI application."""
    console = _Console(database, settings, clock)
    pages = Pages(database, settings, clock)
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    templates.env.globals["may"] = console.may
    templates.env.filters["local"] = lambda moment: _local(moment, settings)
    templates.env.filters["left"] = lambda moment: _left(moment, clock)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")

    @app.middleware("http")
    async def secured(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def now() -> Any:
        return clock.now()

    def render(
        request: Request, name: str, session: Session | None, status: int = 200, **context: Any
    ) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            name,
            {
                "session": session,
                "message": request.query_params.get("message"),
                "zone": settings.zone,
                **context,
            },
            status_code=status,
        )

    def signed_in(request: Request) -> Session:
        session = find_session(database, request.cookies.get(SESSION_COOKIE), now=now())
        if session is None:
            raise _Redirect(f"/sign-in?{urlencode({'next': request.url.path})}")
        if session.member.password_is_temporary and request.url.path != "/password":
            raise _Redirect("/password")
        return session

    def allowed(session: Session, action: str) -> None:
        if not console.may(session, action):
            raise _Refused(
                403, f"{session.member.username} ({session.member.role}) may not {action} here"
            )

    async def checked_form(request: Request, session: Session) -> dict[str, str]:
        form = {key: str(value) for key, value in (await request.form()).items()}
        if not secrets.compare_digest(form.get("csrf", ""), session.csrf_token):
            raise _Refused(403, "this form was not sent from this console session (CSRF token)")
        return form

    class _Redirect(Exception):
        def __init__(self, to: str) -> None:
            super().__init__(to)
            self.to = to

    @app.exception_handler(_Redirect)
    async def redirect(_request: Request, error: _Redirect) -> Response:
        return RedirectResponse(error.to, status_code=303)

    @app.exception_handler(_Refused)
    async def refused(request: Request, error: _Refused) -> Response:
        session = find_session(database, request.cookies.get(SESSION_COOKIE), now=now())
        return render(request, "refused.html", session, status=error.status, text=error.message)

    def done(path: str, message: str) -> Response:
        return RedirectResponse(f"{path}?message={quote(message)}", status_code=303)

    # Signing in and out -------------------------------------------------------------------

    @app.get("/sign-in")
    def sign_in_page(request: Request, next: str = "/") -> Response:
        token = secrets.token_urlsafe(32)
        response = render(request, "sign_in.html", None, csrf=token, next=_local_path(next))
        _cookie(response, SIGN_IN_COOKIE, token, settings, max_age=900)
        return response

    @app.post("/sign-in")
    def sign_in(
        request: Request,
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        code: Annotated[str, Form()] = "",
        csrf: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        expected = request.cookies.get(SIGN_IN_COOKIE, "")
        if not expected or not secrets.compare_digest(csrf, expected):
            raise _Refused(403, "this sign-in form has expired or was not sent from this console")
        try:
            member = authenticate(database, username, password, code, now=now())
        except SignInRefused as error:
            token = secrets.token_urlsafe(32)
            response = render(
                request,
                "sign_in.html",
                None,
                status=401,
                csrf=token,
                next=_local_path(next),
                error=error.message,
                username=username,
            )
            _cookie(response, SIGN_IN_COOKIE, token, settings, max_age=900)
            return response
        session = start_session(database, member, now=now())
        onward = RedirectResponse(
            "/password" if member.password_is_temporary else _local_path(next), status_code=303
        )
        _cookie(onward, SESSION_COOKIE, session.token, settings)
        onward.delete_cookie(SIGN_IN_COOKIE)
        return onward

    @app.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        session = signed_in(request)
        await checked_form(request, session)
        end_session(database, session, now=now())
        response = RedirectResponse("/sign-in", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/password")
    def password_page(request: Request) -> Response:
        return render(request, "password.html", signed_in(request))

    @app.post("/password")
    async def password(request: Request) -> Response:
        session = signed_in(request)
        form = await checked_form(request, session)
        if form.get("new", "") != form.get("again", ""):
            return render(
                request, "password.html", session, 400, error="the two new passwords differ"
            )
        try:
            change_password(
                database, session.member, form.get("current", ""), form.get("new", ""), now=now()
            )
        except InputRefused as error:
            return render(request, "password.html", session, 400, error=error.message)
        return done("/", "password changed")

    # Pages --------------------------------------------------------------------------------

    @app.get("/")
    def home(request: Request) -> Response:
        session = signed_in(request)
        if session.member.role == StaffRole.ADMIN:
            raise _Redirect("/staff")
        return render(request, "home.html", session)

    @app.get("/numbers")
    def find_number(request: Request, q: str = "") -> Response:
        session = signed_in(request)
        allowed(session, "read")
        try:
            msisdn = pages.number_of(q)
        except InputRefused as error:
            return render(request, "home.html", session, 400, error=error.message, query=q)
        raise _Redirect(f"/numbers/{quote(msisdn)}")

    @app.get("/numbers/{msisdn}")
    def number_page(request: Request, msisdn: str) -> Response:
        session = signed_in(request)
        allowed(session, "read")
        try:
            view = pages.number(msisdn)
        except InputRefused as error:
            return render(request, "home.html", session, 404, error=error.message, query=msisdn)
        return render(
            request, "number.html", session, view=view, today=local_date(now(), settings.zone)
        )

    @app.post("/numbers/{msisdn}/{action}")
    async def number_action(request: Request, msisdn: str, action: str) -> Response:
        session = signed_in(request)
        form = await checked_form(request, session)
        if action not in ("hold", "release", "request", "sell"):
            raise _Refused(404, f"no action {action}")
        allowed(session, action)
        try:
            message = pages.act(action, msisdn, session.member.username, form)
        except InputRefused as error:
            raise _Refused(400, error.message) from None
        return done(f"/numbers/{quote(msisdn)}", message)

    @app.get("/approvals")
    def approvals(request: Request) -> Response:
        session = signed_in(request)
        allowed(session, "read")
        return render(request, "approvals.html", session, requests=pages.pending(), now=now())

    @app.post("/requests/{request_id}/{action}")
    async def request_action(request: Request, request_id: int, action: str) -> Response:
        session = signed_in(request)
        form = await checked_form(request, session)
        if action not in ("approve", "reject", "object"):
            raise _Refused(404, f"no action {action}")
        allowed(session, action)
        try:
            message = pages.decide(action, request_id, session.member.username, form)
        except InputRefused as error:
            raise _Refused(400, error.message) from None
        return done(_local_path(form.get("back", "/approvals")), message)

    @app.get("/nights")
    def nights_page(request: Request) -> Response:
        session = signed_in(request)
        allowed(session, "read")
        health = status_view(database, settings, clock, settings.rules)
        return render(
            request,
            "nights.html",
            session,
            health=health,
            receipt_wait_hours=f"{settings.receipt_wait_hours:g}",
            **reports.nights(database, settings),
        )

    @app.get("/forecast")
    def forecast_page(request: Request, format: str = "html") -> Response:
        session = signed_in(request)
        allowed(session, "read")
        view = reports.forecast(database, settings, clock)
        if format == "csv":
            return Response(
                reports.forecast_csv(view),
                media_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="forecast.csv"'},
            )
        return render(request, "forecast.html", session, **view)

    @app.get("/audit")
    def audit(
        request: Request,
        number: str = "",
        actor: str = "",
        event_type: str = "",
        since: str = "",
        until: str = "",
        page: int = 0,
        format: str = "html",
    ) -> Response:
        session = signed_in(request)
        allowed(session, "audit")
        try:
            chosen = reports.AuditQuery(
                msisdn=pages.number_of(number) if number.strip() else None,
                actor=actor.strip() or None,
                event_type=event_type.strip() or None,
                since=_day(since, "from"),
                until=_day(until, "until"),
            )
        except InputRefused as error:
            return render(
                request,
                "audit.html",
                session,
                400,
                error=error.message,
                rows=[],
                total=0,
                page=0,
                size=reports.AUDIT_PAGE,
                form=request.query_params,
                kinds=_EVENT_TYPES,
                query="",
            )
        if format == "csv":
            rows, _ = reports.audit_page(database, settings, chosen, page=0, size=None)
            return Response(
                reports.audit_csv(rows),
                media_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
            )
        rows, total = reports.audit_page(database, settings, chosen, page=max(page, 0))
        return render(
            request,
            "audit.html",
            session,
            rows=rows,
            total=total,
            page=max(page, 0),
            size=reports.AUDIT_PAGE,
            form=request.query_params,
            kinds=_EVENT_TYPES,
            query=urlencode(
                {key: value for key, value in request.query_params.items() if key != "page"}
            ),
        )

    @app.get("/checks")
    def checks_page(request: Request, page: int = 0) -> Response:
        session = signed_in(request)
        allowed(session, "audit")
        rows, total = reports.checks_page(database, page=max(page, 0))
        return render(
            request,
            "checks.html",
            session,
            rows=rows,
            total=total,
            page=max(page, 0),
            size=reports.AUDIT_PAGE,
        )

    @app.get("/staff")
    def staff_page(request: Request) -> Response:
        session = signed_in(request)
        allowed(session, "staff")
        return render(
            request, "staff.html", session, members=list_staff(database), roles=list(StaffRole)
        )

    @app.post("/staff")
    async def staff_action(request: Request) -> Response:
        session = signed_in(request)
        form = await checked_form(request, session)
        allowed(session, "staff")
        action, username = form.get("action", ""), form.get("username", "")
        actor = session.member.username
        try:
            if action == "add":
                new = add_staff(database, username, form.get("role", ""),
                                totp=form.get("totp") == "on", actor=actor, now=now())  # fmt: skip
            elif action == "reset":
                new = reset_staff(database, username, actor=actor, now=now())
            elif action == "disable":
                disable_staff(database, username, actor=actor, now=now())
                return done("/staff", f"{username} is disabled")
            elif action == "role":
                changed = set_role(database, username, form.get("role", ""), actor=actor, now=now())
                return done("/staff", f"{changed.username} is now {changed.role}")
            else:
                raise _Refused(400, f"no staff action {action!r}")
        except InputRefused as error:
            raise _Refused(400, error.message) from None
        # The one-time secrets are shown on this answer only, never again.
        return render(request, "staff_secret.html", session, new=new)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _local(moment: datetime | str | None, settings: Settings) -> str:
    """A moment as the operator reads it: local time, to the minute."""
    if moment is None or moment == "":
        return ""
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M")


def _left(moment: datetime | str, clock: Clock) -> str:
    """How long until a moment: "over" once it has passed."""
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    seconds = (value - clock.now()).total_seconds()
    if seconds <= 0:
        return "over"
    return f"{seconds / 3600:.1f} h left" if seconds >= 3600 else f"{seconds / 60:.0f} min left"


_EVENT_TYPES = sorted(str(kind) for kind in AuditEvent)


def _day(text: str, what: str) -> date | None:
    if not text.strip():
        return None
    try:
        return parse_date(text)
    except ValueError as error:
        raise InputRefused(f"{what}: {error}") from None


def _local_path(path: str) -> str:
    """Where to go after signing in: a path of this console only, never another site."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


def _cookie(
    response: Response, name: str, value: str, settings: Settings, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=settings.console_secure_cookies,
        path="/",
    )

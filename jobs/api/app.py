"""``recycler api``: the CAMARA Number Recycling API (release r2.2, API version 0.2.0), its
authorization server, health and metrics, as one ASGI application over the same services as the
command line.

Every error answers in CAMARA's shape (``status``, ``code``, ``message``), and every response
carries ``x-correlator``: the caller's, or one made up for it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gc
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import sqlalchemy as sa
import structlog
from anyio import to_thread
from fastapi import FastAPI, Form, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobs.api.receipts import ReceiptSecrets, add_receipt_routes
from jobs.checking.clients import CHECK_SCOPE, authenticate, revoked_client_ids
from jobs.checking.records import answer_and_record
from jobs.checking.tokens import TokenAuthority, TokenClaims, TokenRejected
from jobs.clock import Clock, parse_date
from jobs.database.engine import Database
from jobs.settings import Settings

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/number-recycling/v0.2"
_CORRELATOR = re.compile(r"[a-zA-Z0-9\-_:;./<>{}]{0,256}")
_REVOCATIONS_SECONDS = 5.0
_E164 = r"^\+[1-9][0-9]{4,14}$"
_RETRY_AFTER_SECONDS = 5
log = structlog.get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiError(Exception):
    """An answer in CAMARA's error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class CheckRequest(BaseModel):
    """The body of a check: the definition's two properties and no other. The definition leaves
    the object open, but a misspelt ``phonenumber`` silently ignored would turn into the wrong
    error (or, with a three-legged token, a wrong question), so an unknown property is refused."""

    model_config = ConfigDict(extra="forbid")

    phoneNumber: Annotated[  # noqa: N815  (the definition's name)
        str | None,
        Field(default=None, pattern=_E164),
        # The document says what the definition says: a string or absent, never null.
        WithJsonSchema(
            {
                "type": "string",
                "pattern": _E164,
                "description": "The number in E.164, with the '+'; absent with a three-legged "
                "token.",
                "examples": ["+85512345678"],
            }
        ),
    ] = None
    specifiedDate: Annotated[  # noqa: N815
        str,
        Field(
            pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
            json_schema_extra={"format": "date"},
            description="Has the number changed hands since this local date (YYYY-MM-DD)?",
            examples=["2024-10-31"],
        ),
    ]

    @field_validator("phoneNumber", mode="before")
    @classmethod
    def _absent_not_null(cls, value: object) -> object:
        # The definition's phoneNumber is a string or absent; null is neither.
        if value is None:
            raise ValueError("phoneNumber is a string in E.164 or absent, never null")
        return value


class CheckResponse(BaseModel):
    """The answer of a check."""

    phoneNumberRecycled: bool  # noqa: N815


class ErrorInfo(BaseModel):
    """Every error, in CAMARA's shape."""

    status: int
    code: str
    message: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorInfo, "description": description}
    for status, description in (
        (400, "INVALID_ARGUMENT or OUT_OF_RANGE"),
        (401, "UNAUTHENTICATED: no token, or one that is invalid or expired"),
        (403, "PERMISSION_DENIED: the token lacks the scope number-recycling:check"),
        (404, "IDENTIFIER_NOT_FOUND: recycler knows no such number"),
        (422, "MISSING_IDENTIFIER or UNNECESSARY_IDENTIFIER"),
        (429, "TOO_MANY_REQUESTS: the client's rate is exceeded"),
        (503, "UNAVAILABLE: the database cannot answer now; try again after Retry-After"),
    )
}


class _RateLimiter:
    """A token bucket per client: `rate` checks a second, bursts of as many."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        with self._lock:
            tokens, seen = self._buckets.get(client, (self.rate, now))
            tokens = min(self.rate, tokens + (now - seen) * self.rate)
            if tokens < 1:
                self._buckets[client] = (tokens, now)
                return False
            self._buckets[client] = (tokens - 1, now)
            return True


class _Revocations:
    """The revoked clients, read again every few seconds: a revoked client's tokens stop
    working within that time, without a database read per request. The read is awaited on the
    event loop like a check's (a read that blocked the loop would hold every check in flight,
    for as long as a connection takes to fail when the database is gone)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._revoked: frozenset[str] = frozenset()
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def holds(self, client_id: str) -> bool:
        if time.monotonic() - self._read_at > _REVOCATIONS_SECONDS:
            async with self._lock:
                if time.monotonic() - self._read_at > _REVOCATIONS_SECONDS:
                    self._revoked = await self.database.each_statement_async(revoked_client_ids)
                    self._read_at = time.monotonic()
        return client_id in self._revoked


class _Correlation:
    """Pure ASGI middleware: every response carries the request's x-correlator (or a new one);
    a correlator that breaks the definition's pattern is refused."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope["headers"]:
            if name == b"x-correlator":
                given = value.decode("latin-1")
                break
        valid = given is not None and _CORRELATOR.fullmatch(given) is not None
        correlator = given if valid and given else str(uuid.uuid4())
        scope.setdefault("state", {})["correlator"] = correlator

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-correlator", correlator.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        if given is not None and not valid:
            response = _error_response(
                ApiError(400, "INVALID_ARGUMENT", "x-correlator does not match its pattern")
            )
            await response(scope, receive, with_header)
            return
        await self.app(scope, receive, with_header)


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(
        {"status": error.status, "code": error.code, "message": error.message},
        status_code=error.status,
        headers={"WWW-Authenticate": "Bearer"} if error.status == 401 else None,
    )


@dataclass
class _Context:
    """What the endpoints share."""

    database: Database
    settings: Settings
    clock: Clock
    authority: TokenAuthority
    registry: CollectorRegistry

    def __post_init__(self) -> None:
        self.checks = Counter(
            "recycler_api_checks_total",
            "Checks answered, by outcome (recycled, not_recycled, or the error code).",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "recycler_api_check_seconds",
            "Time to answer a check.",
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        self.tokens_issued = Counter(
            "recycler_api_tokens_issued_total",
            "Access tokens issued by the built-in authorization server.",
            registry=self.registry,
        )
        self.limiter = _RateLimiter(self.settings.api_rate_per_client)
        self.revoked = _Revocations(self.database)

    async def authorised(self, authorization: str | None) -> TokenClaims:
        """The claims of a token that may check numbers, or the CAMARA refusal."""
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(401, "UNAUTHENTICATED", "a Bearer access token is required")
        try:
            claims = self.authority.verify(
                authorization.removeprefix("Bearer ").strip(), self.clock.now()
            )
        except TokenRejected as rejected:
            raise ApiError(401, "UNAUTHENTICATED", str(rejected)) from None
        if claims.issuer == self.authority.issuer and await self.revoked.holds(claims.client_id):
            raise ApiError(401, "UNAUTHENTICATED", "the client was revoked")
        if CHECK_SCOPE not in claims.scopes:
            raise ApiError(403, "PERMISSION_DENIED", f"the token lacks the scope {CHECK_SCOPE}")
        return claims


def create_app(
    database: Database,
    settings: Settings,
    clock: Clock,
    authority: TokenAuthority,
    *,
    registry: CollectorRegistry | None = None,
    receipt_secrets: ReceiptSecrets | None = None,
) -> FastAPI:
    """The application over a database, with the token authority it trusts, and the secrets
    delivery receipts are signed with (by default from the environment)."""
    context = _Context(database, settings, clock, authority, registry or CollectorRegistry())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The check runs on the event loop; the other endpoints (the token endpoint's Argon2
        # check, health) in worker threads: as many threads as connections, so that a burst
        # waits in the loop's queue, not in threads that each wait for a connection.
        to_thread.current_default_thread_limiter().total_tokens = settings.api_database_connections
        # What the server holds from its start (modules, the application, the schema: over a
        # million objects) is kept out of the garbage collector's reach: a full collection
        # otherwise walks all of it every few seconds, a pause of 60-100 ms that every check
        # in flight waits out (it was the API's p99).
        gc.collect()
        gc.freeze()
        yield
        await database.dispose_async()

    app = FastAPI(
        lifespan=lifespan,
        title="recycler: Number Recycling",
        version="0.2.0",
        description="The CAMARA Number Recycling API (release r2.2) as recycler serves it: has a "
        "number changed hands since a date? Tokens from recycler's own authorization server "
        "(client credentials) or the operator's identity provider.",
        docs_url=None,
        redoc_url=None,
    )
    _errors(app, context)
    _check(app, context)
    _authorization(app, context)
    _operations(app, context)
    add_receipt_routes(
        app, database, settings, clock, receipt_secrets or ReceiptSecrets.from_environment()
    )
    app.add_middleware(_Correlation)
    return app


def _errors(app: FastAPI, context: _Context) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        if error.code != "UNAUTHENTICATED":
            context.checks.labels(error.code).inc()
        return _error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'][1:]) or 'body'}: {problem['msg']}"
            for problem in error.errors()
        )
        context.checks.labels("INVALID_ARGUMENT").inc()
        return _error_response(ApiError(400, "INVALID_ARGUMENT", problems or "invalid request"))

    @app.exception_handler(sa.exc.OperationalError)
    @app.exception_handler(sa.exc.InterfaceError)
    @app.exception_handler(sa.exc.TimeoutError)
    async def unavailable(_request: Request, error: Exception) -> JSONResponse:
        # The database is down, unreachable, or too busy to lend a connection: the bank is
        # told to try again (not handed a bare 500), and nothing was answered unrecorded.
        log.warning("api.database_unavailable", error=str(error).splitlines()[0])
        context.checks.labels("UNAVAILABLE").inc()
        response = _error_response(
            ApiError(503, "UNAVAILABLE", "the service cannot answer now; try again shortly")
        )
        response.headers["Retry-After"] = str(_RETRY_AFTER_SECONDS)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def other(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 415: "UNSUPPORTED_MEDIA_TYPE"}
        code = codes.get(error.status_code, "INVALID_ARGUMENT")
        return _error_response(ApiError(error.status_code, code, str(error.detail)))


def _check(app: FastAPI, context: _Context) -> None:
    settings = context.settings

    @app.post(
        f"{API_PREFIX}/check",
        response_model=CheckResponse,
        responses=_ERRORS,
        operation_id="checkNumberRecycling",
        summary="Has the subscriber of the phone number changed since a date?",
        tags=["Check Number Recycling"],
    )
    async def check(
        request: Request,
        body: CheckRequest,
        authorization: Annotated[str | None, Header()] = None,
        x_correlator: Annotated[
            str | None, Header(pattern=r"^[a-zA-Z0-9\-_:;./<>{}]{0,256}$")
        ] = None,
    ) -> CheckResponse:
        started = time.perf_counter()
        claims = await context.authorised(authorization)
        if not context.limiter.allow(claims.client_id):
            raise ApiError(
                429,
                "TOO_MANY_REQUESTS",
                f"more than {settings.api_rate_per_client:g} checks a second from this client",
            )
        if claims.phone_number is not None and body.phoneNumber is not None:
            raise ApiError(
                422,
                "UNNECESSARY_IDENTIFIER",
                "The phone number is already identified by the access token",
            )
        msisdn = claims.phone_number or body.phoneNumber
        if msisdn is None:
            raise ApiError(422, "MISSING_IDENTIFIER", "The phone number cannot be identified")
        try:
            specified: date = parse_date(body.specifiedDate)
        except ValueError as error:
            raise ApiError(400, "INVALID_ARGUMENT", f"specifiedDate: {error}") from None
        result = await context.database.each_statement_async(
            answer_and_record,
            settings,
            now=context.clock.now(),
            client_id=claims.client_id,
            msisdn=msisdn,
            specified_date=specified,
            correlator=request.scope["state"]["correlator"],
        )
        context.latency.observe(time.perf_counter() - started)
        if result.code == "IDENTIFIER_NOT_FOUND":
            raise ApiError(404, result.code, "Phone number not found.")
        if result.code is not None:
            raise ApiError(
                400,
                result.code,
                "specifiedDate is out of range: after today, or before recycler's records of "
                "the number begin",
            )
        assert result.recycled is not None
        context.checks.labels("recycled" if result.recycled else "not_recycled").inc()
        return CheckResponse(phoneNumberRecycled=result.recycled)


def _authorization(app: FastAPI, context: _Context) -> None:
    authority, base_url = context.authority, context.settings.api_base_url

    @app.post("/oauth2/token", tags=["Authorization"], summary="Client credentials grant")
    def token(
        grant_type: Annotated[str, Form()],
        scope: Annotated[str | None, Form()] = None,
        client_id: Annotated[str | None, Form()] = None,
        client_secret: Annotated[str | None, Form()] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        if authorization and authorization.startswith("Basic "):
            try:
                decoded = base64.b64decode(authorization.removeprefix("Basic ").strip()).decode()
                client_id, _, client_secret = decoded.partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return _oauth_error(401, "invalid_client", "malformed Basic credentials")
        if not client_id or not client_secret:
            return _oauth_error(401, "invalid_client", "client authentication is required")
        client = authenticate(context.database, client_id, client_secret)
        if client is None:
            return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
        if grant_type != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "only client_credentials")
        asked = frozenset(scope.split()) if scope else client.scopes
        if not asked or not asked <= client.scopes:
            return _oauth_error(400, "invalid_scope", "the client may not ask for that scope")
        issued = authority.issue(client.client_id, asked, context.clock.now())
        context.tokens_issued.inc()
        return JSONResponse(
            issued.to_json(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
        )

    @app.get("/.well-known/jwks.json", tags=["Authorization"])
    def jwks() -> dict[str, Any]:
        return authority.jwks()

    @app.get("/.well-known/openid-configuration", tags=["Authorization"])
    def discovery() -> dict[str, Any]:
        return {
            "issuer": authority.issuer,
            "token_endpoint": f"{base_url}/oauth2/token",
            "jwks_uri": f"{base_url}/.well-known/jwks.json",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "scopes_supported": [CHECK_SCOPE],
            "response_types_supported": ["token"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }


def _operations(app: FastAPI, context: _Context) -> None:
    @app.get("/healthz", tags=["Operations"])
    def healthz() -> JSONResponse:
        try:
            with context.database.read() as connection:
                connection.exec_driver_sql("SELECT 1")
        except Exception as error:  # the database is what a health check is about
            return JSONResponse(
                {"status": "unhealthy", "database": str(error).splitlines()[0]}, status_code=503
            )
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["Operations"])
    def metrics() -> Response:
        return Response(generate_latest(context.registry), media_type=CONTENT_TYPE_LATEST)


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """RFC 6749's error answer of the token endpoint."""
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="recycler"'
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )

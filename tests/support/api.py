"""Running recycler's API for real in a test: uvicorn on a free port, in a thread; and an
identity provider of the operator's own, publishing its keys over HTTP like a real one.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from jobs.api import create_app, token_authority
from jobs.api.receipts import ReceiptSecrets
from jobs.checking.clients import add_client
from jobs.clock import Clock, SystemClock
from tests.support.world import World

__all__ = ["ApiServer", "IdentityProvider", "free_port", "running_api", "serve"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(app: Any, port: int) -> Iterator[str]:
    """An ASGI app served by uvicorn on 127.0.0.1:port in a thread; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class IdentityProvider:
    """The operator's own identity provider: its discovery document and JWKS over HTTP, and
    tokens signed with its key (as its token endpoint would issue them)."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "idp-key-1"
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return {"issuer": self.issuer, "jwks_uri": self.jwks_url}

        @app.get("/jwks.json")
        def jwks() -> dict[str, Any]:
            public: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(
                self.key.public_key(), as_dict=True
            )
            return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

        self.app = app

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks.json"

    def token(
        self, audience: str, *, phone_number: str | None = None, lifetime: int = 600, **extra: Any
    ) -> str:
        now = datetime.now(UTC)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "sub": "idp-user-7",
            "client_id": "bank-via-idp",
            "scope": "openid number-recycling:check",
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=lifetime)).timestamp()),
            "jti": "idp-token-1",
            **extra,
        }
        if phone_number is not None:
            claims["phone_number"] = phone_number
        return jwt.encode(
            claims, self.key, algorithm="RS256", headers={"kid": self.kid, "typ": "at+jwt"}
        )


@dataclass
class ApiServer:
    """recycler's API running on a world's database."""

    world: World
    base_url: str
    key_path: Path

    def client(
        self, name: str = "Bank of Tests", scopes: list[str] | None = None
    ) -> tuple[str, str]:
        """A new API client: (client_id, client_secret)."""
        added = add_client(
            self.world.database,
            name=name,
            scopes=scopes or ["number-recycling:check"],
            actor="test",
            now=datetime.now(UTC),
        )
        return added.client.client_id, added.client_secret

    def token(self, client_id: str, secret: str, **form: str) -> str:
        """A token from the built-in authorization server, by HTTP Basic."""
        answer = httpx.post(
            f"{self.base_url}/oauth2/token",
            data={"grant_type": "client_credentials", **form},
            auth=(client_id, secret),
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    def check(
        self, body: Any, token: str | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST /number-recycling/v0.2/check."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if isinstance(body, str | bytes):
            sent.setdefault("Content-Type", "application/json")
            return httpx.post(
                f"{self.base_url}/number-recycling/v0.2/check", content=body, headers=sent
            )
        return httpx.post(f"{self.base_url}/number-recycling/v0.2/check", json=body, headers=sent)


@contextmanager
def running_api(
    world: World,
    folder: Path,
    *,
    clock: Clock | None = None,
    port: int | None = None,
    receipt_secrets: ReceiptSecrets | None = None,
    **settings: Any,
) -> Iterator[ApiServer]:
    """The API on the world's database; its clock the real one (tokens expire in real time)
    unless a test gives it the world's. The receipts' secrets are none unless given."""
    port = port or free_port()
    chosen = world.with_settings(
        api_port=port, api_signing_key_path=folder / "api-key.pem", **settings
    )
    authority = token_authority(chosen.settings)
    app = create_app(
        chosen.database,
        chosen.settings,
        clock or SystemClock(),
        authority,
        receipt_secrets=receipt_secrets or ReceiptSecrets(),
    )
    with serve(app, port) as base_url:
        yield ApiServer(chosen, base_url, folder / "api-key.pem")

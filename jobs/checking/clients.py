"""The clients of the reassigned API (banks): added on the command line, each with a secret that
is shown once and kept only as an Argon2id hash, and the scopes it may ask tokens for.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection

from jobs.database.engine import Database
from jobs.database.schema import api_checks, api_clients
from jobs.errors import InputRefused

__all__ = [
    "CHECK_SCOPE",
    "SCOPES",
    "Client",
    "NewClient",
    "add_client",
    "authenticate",
    "list_clients",
    "revoke_client",
    "revoked_client_ids",
    "usage",
]

CHECK_SCOPE = "number-recycling:check"
# The scopes recycler's API knows.
SCOPES = frozenset({CHECK_SCOPE})
_HASHER = PasswordHasher()  # Argon2id with the library's recommended cost


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the client id is unknown, so that a wrong id costs as long as a
    wrong secret and the two cannot be told apart by timing. Made on first use: hashing costs a
    tenth of a second, which every command would otherwise pay at start."""
    return _HASHER.hash(secrets.token_urlsafe(32))


@dataclass(frozen=True)
class Client:
    """A client as stored (never with its secret)."""

    client_id: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The machine-readable client."""
        return {
            "client_id": self.client_id,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True)
class NewClient:
    """A client just added, with its secret: the only time the secret exists in the clear."""

    client: Client
    client_secret: str

    def to_json(self) -> dict[str, Any]:
        """The machine-readable answer of `api-client add`."""
        return {**self.client.to_json(), "client_secret": self.client_secret}


def _client(row: Any) -> Client:
    return Client(
        client_id=row.client_id,
        name=row.name,
        scopes=frozenset(row.scopes.split()),
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
    )


def add_client(
    database: Database, *, name: str, scopes: list[str], actor: str, now: datetime
) -> NewClient:
    """A new client with a fresh secret."""
    name = name.strip()
    if not name or len(name) > 128:
        raise InputRefused("a client needs a name of 1 to 128 characters")
    unknown = sorted(set(scopes) - SCOPES)
    if unknown or not scopes:
        named = ", ".join(unknown) or "(none given)"
        raise InputRefused(f"unknown scope {named}; known: {', '.join(sorted(SCOPES))}")
    client_id = f"rc_{secrets.token_hex(12)}"
    secret = secrets.token_urlsafe(32)
    with database.write() as connection:
        row = connection.execute(
            api_clients.insert()
            .values(
                client_id=client_id,
                name=name,
                secret_hash=_HASHER.hash(secret),
                scopes=" ".join(sorted(set(scopes))),
                created_at=now,
                created_by=actor,
            )
            .returning(*api_clients.c)
        ).one()
    return NewClient(_client(row), secret)


def list_clients(database: Database) -> list[Client]:
    """Every client, oldest first, revoked ones included."""
    with database.read() as connection:
        rows = connection.execute(sa.select(api_clients).order_by(api_clients.c.id))
        return [_client(row) for row in rows]


def revoke_client(database: Database, client_id: str, *, actor: str, now: datetime) -> Client:
    """Revoke a client: no new token, and its tokens already issued stop working."""
    with database.write() as connection:
        row = connection.execute(
            sa.update(api_clients)
            .where(api_clients.c.client_id == client_id, api_clients.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_by=actor)
            .returning(*api_clients.c)
        ).first()
    if row is None:
        raise InputRefused(f"no client {client_id} that is not revoked already")
    return _client(row)


def revoked_client_ids(connection: Connection) -> frozenset[str]:
    """The clients whose tokens must no longer be accepted."""
    return frozenset(
        connection.execute(
            sa.select(api_clients.c.client_id).where(api_clients.c.revoked_at.is_not(None))
        ).scalars()
    )


def authenticate(database: Database, client_id: str, secret: str) -> Client | None:
    """The client whose id and secret these are, or None (unknown, wrong, or revoked)."""
    with database.read() as connection:
        row = connection.execute(
            sa.select(api_clients).where(api_clients.c.client_id == client_id)
        ).first()
    try:
        _HASHER.verify(row.secret_hash if row is not None else _dummy_hash(), secret)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.revoked_at is not None:
        return None
    return _client(row)


def usage(database: Database, since: datetime | None) -> list[dict[str, Any]]:
    """Checks per client (since a moment), with how many were answered and refused."""
    answered = api_checks.c.recycled.is_not(None)
    query = sa.select(
        api_checks.c.client_id,
        sa.func.count(),
        sa.func.count().filter(answered),
        sa.func.min(api_checks.c.occurred_at),
        sa.func.max(api_checks.c.occurred_at),
    ).group_by(api_checks.c.client_id)
    if since is not None:
        query = query.where(api_checks.c.occurred_at >= since)
    with database.read() as connection:
        names = dict(
            connection.execute(sa.select(api_clients.c.client_id, api_clients.c.name)).all()
        )
        rows = connection.execute(query.order_by(api_checks.c.client_id)).all()
    return [
        {
            "client_id": client_id,
            "name": names.get(client_id),
            "checks": total,
            "answered": answered_count,
            "refused": total - answered_count,
            "first": first.isoformat() if first else None,
            "last": last.isoformat() if last else None,
        }
        for client_id, total, answered_count, first, last in rows
    ]

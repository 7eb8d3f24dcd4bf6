"""Access tokens for the reassigned API: JWTs as RFC 9068 profiles them.

recycler is its own authorization server for the embedded default: it signs tokens (RS256) with
a key kept in a file, publishes the public half as a JWKS, and issues tokens to its clients by
the client-credentials grant. An operator with an identity provider of its own names its JWKS,
issuer and audience, and tokens signed there are accepted as well.

Every token presented is checked for its signature (an asymmetric algorithm, never ``none`` or
a shared secret), issuer, audience, expiry and issue time; its scopes are checked by the caller.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "ExternalIssuer",
    "Issued",
    "SigningKey",
    "TokenAuthority",
    "TokenClaims",
    "TokenRejected",
]

_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
_LEEWAY_SECONDS = 30
# Tokens whose signature was checked, kept by their text (a few hundred bytes each).
_VERIFIED_KEPT = 1024


class TokenRejected(Exception):
    """The token cannot be trusted: missing, malformed, badly signed, expired, not for us."""


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says."""

    client_id: str
    scopes: frozenset[str]
    issuer: str
    token_id: str | None
    # A three-legged token names its subscriber's number; a two-legged one does not.
    phone_number: str | None


@dataclass(frozen=True)
class Issued:
    """A token just issued, as the token endpoint answers it."""

    access_token: str
    expires_in: int
    scope: str

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


class SigningKey:
    """recycler's own RSA key: the private half signs, the public half is published."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self.private_key = private_key
        public = private_key.public_key()
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:12]).decode().rstrip("=")
        self.public_key = public

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """The key in the PEM file, created (readable by its owner only) when absent."""
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{path} does not hold an RSA private key")
            return cls(loaded)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        return cls(key)

    def jwk(self) -> dict[str, Any]:
        """The public key as a JWK."""
        document: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(self.public_key, as_dict=True)
        return {**document, "kid": self.kid, "use": "sig", "alg": "RS256"}


@dataclass(frozen=True)
class ExternalIssuer:
    """The operator's own identity provider, when it has one."""

    issuer: str
    jwks_url: str


class TokenAuthority:
    """Issues recycler's own tokens, and verifies any token presented."""

    def __init__(
        self,
        key: SigningKey,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int,
        external: ExternalIssuer | None = None,
    ) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self.external = external
        self._external_keys = (
            jwt.PyJWKClient(external.jwks_url, cache_keys=True, lifespan=600)
            if external is not None
            else None
        )
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._verified_lock = threading.Lock()

    def issue(self, client_id: str, scopes: frozenset[str], now: datetime) -> Issued:
        """A signed access token for a client and the scopes granted."""
        scope = " ".join(sorted(scopes))
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client_id,
            "client_id": client_id,
            "scope": scope,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=self.ttl_seconds)).timestamp()),
            "jti": secrets.token_hex(16),
        }
        token = jwt.encode(
            claims,
            self.key.private_key,
            algorithm="RS256",
            headers={"kid": self.key.kid, "typ": "at+jwt"},
        )
        return Issued(token, self.ttl_seconds, scope)

    def jwks(self) -> dict[str, Any]:
        """The published keys."""
        return {"keys": [self.key.jwk()]}

    def verify(self, token: str, now: datetime) -> TokenClaims:
        """The claims of a token that is ours or the operator's IdP's, whole and in date.

        A bank sends the same token with every check until it expires: the outcome of the
        signature, issuer and audience checks is kept for the most recent tokens (a signature
        check is a tenth of a check's time), the times are checked against the clock on every
        call, and revocation is the caller's, on every call too."""
        with self._verified_lock:
            claims = self._verified.get(token)
            if claims is not None:
                self._verified.move_to_end(token)
        if claims is None:
            claims = self._verified_claims(token)
            with self._verified_lock:
                self._verified[token] = claims
                if len(self._verified) > _VERIFIED_KEPT:
                    self._verified.popitem(last=False)
        return _claims_of(claims, now)

    def _verified_claims(self, token: str) -> dict[str, Any]:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            issuer = unverified.get("iss")
            if issuer == self.issuer:
                key: Any = self.key.public_key
            elif self.external is not None and issuer == self.external.issuer:
                assert self._external_keys is not None
                key = self._external_keys.get_signing_key_from_jwt(token).key
            else:
                raise TokenRejected("the token was not issued by an issuer recycler trusts")
            claims = jwt.decode(
                token,
                key,
                algorithms=_ALGORITHMS,
                audience=self.audience,
                issuer=issuer,
                # The times are checked below against the service's clock, the one that
                # stamped the tokens it issued, not against the library's own.
                options={
                    "require": ["exp", "iat", "iss", "aud"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except TokenRejected:
            raise
        except (jwt.PyJWTError, ValueError) as error:
            raise TokenRejected(f"the token is not valid: {error}") from None
        return claims


def _claims_of(claims: dict[str, Any], now: datetime) -> TokenClaims:
    """What a token whose signature holds says, once its times are checked against now."""
    _check_times(claims, now.timestamp())
    client_id = claims.get("client_id") or claims.get("azp") or claims.get("sub")
    if not isinstance(client_id, str) or not client_id:
        raise TokenRejected("the token names no client")
    scope = claims.get("scope", "")
    scopes = set(scope.split()) if isinstance(scope, str) else set()
    listed = claims.get("scp")
    if isinstance(listed, list):
        scopes |= {str(item) for item in listed}
    phone = claims.get("phone_number")
    return TokenClaims(
        client_id=client_id,
        scopes=frozenset(scopes),
        issuer=str(claims["iss"]),
        token_id=str(claims["jti"]) if claims.get("jti") else None,
        phone_number=str(phone) if phone else None,
    )


def _check_times(claims: dict[str, Any], now: float) -> None:
    """exp, iat and nbf against now, with a little leeway for clocks that differ."""
    times = {name: claims.get(name) for name in ("exp", "iat", "nbf")}
    for name, value in times.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise TokenRejected(f"the token is not valid: {name} is not a number")
    if times["exp"] is not None and times["exp"] <= now - _LEEWAY_SECONDS:
        raise TokenRejected("the token has expired")
    if times["iat"] is not None and times["iat"] > now + _LEEWAY_SECONDS:
        raise TokenRejected("the token was issued in the future")
    if times["nbf"] is not None and times["nbf"] > now + _LEEWAY_SECONDS:
        raise TokenRejected("the token is not valid yet")

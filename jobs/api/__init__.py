"""The HTTP API for banks: the CAMARA Number Recycling check and its authorization server."""

from __future__ import annotations

from jobs.api.app import API_PREFIX, create_app
from jobs.checking.tokens import ExternalIssuer, SigningKey, TokenAuthority
from jobs.settings import Settings

__all__ = ["API_PREFIX", "create_app", "token_authority"]


def token_authority(settings: Settings) -> TokenAuthority:
    """The issuer of recycler's own tokens, trusting the operator's identity provider too."""
    external = (
        ExternalIssuer(settings.api_issuer, settings.api_jwks_url)
        if settings.api_issuer is not None and settings.api_jwks_url is not None
        else None
    )
    return TokenAuthority(
        SigningKey.load_or_create(settings.api_signing_key_path),
        issuer=settings.api_base_url,
        audience=settings.api_audience,
        ttl_seconds=settings.api_token_ttl_seconds,
        external=external,
    )

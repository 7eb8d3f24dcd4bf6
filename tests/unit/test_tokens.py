"""The token authority keeps the outcome of signature checks for the tokens it has seen; the
times of a kept token are still checked on every call (issue 11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobs.checking.tokens import SigningKey, TokenAuthority, TokenRejected

ISSUED_AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture
def authority(tmp_path: Path) -> TokenAuthority:
    return TokenAuthority(
        SigningKey.load_or_create(tmp_path / "key.pem"),
        issuer="http://127.0.0.1:8080",
        audience="number-recycling",
        ttl_seconds=600,
        external=None,
    )


def test_a_kept_token_still_expires(authority: TokenAuthority) -> None:
    token = authority.issue("rc_bank", frozenset({"number-recycling:check"}), ISSUED_AT)
    assert authority.verify(token.access_token, ISSUED_AT).client_id == "rc_bank"
    assert authority.verify(token.access_token, ISSUED_AT + timedelta(seconds=599)).scopes == {
        "number-recycling:check"
    }
    with pytest.raises(TokenRejected, match="expired"):
        authority.verify(token.access_token, ISSUED_AT + timedelta(seconds=600 + 31))


def test_a_refused_token_is_refused_again(authority: TokenAuthority) -> None:
    """Only tokens whose signature held are kept: an altered one is refused every time."""
    token = authority.issue("rc_bank", frozenset({"number-recycling:check"}), ISSUED_AT)
    header, payload, signature = token.access_token.split(".")
    altered = f"{header}.{payload}.{signature[:-4]}AAAA"
    for _ in range(2):
        with pytest.raises(TokenRejected, match="not valid"):
            authority.verify(altered, ISSUED_AT)

"""The CAMARA Number Recycling API over real HTTP, with real tokens (issue 11): the scenarios of
the definition, every error it names, the authorization server, and the record of every check.

The server is uvicorn in a thread on the test's database; tokens come from recycler's own token
endpoint (client credentials), or from an identity provider of the operator's own that publishes
its keys over HTTP (tests/support/api.py). Dates are real local dates: the API reads the real
clock, and the numbers' records begin on the world's day (2026-11-25).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import jwt
import pytest
import sqlalchemy as sa

from jobs.database.schema import api_checks
from tests.support.api import ApiServer, IdentityProvider, free_port, running_api, serve
from tests.support.cli import environment, recycler, start, wait_until
from tests.support.world import World

ZONE = ZoneInfo("Asia/Phnom_Penh")
RECORDS_BEGIN = date(2026, 11, 25)  # the world's clock: where its numbers' records begin


def today() -> date:
    return datetime.now(ZONE).date()


@pytest.fixture
def api(world: World, tmp_path: Path) -> Iterator[ApiServer]:
    with running_api(world, tmp_path) as server:
        yield server


@pytest.fixture
def token(api: ApiServer) -> str:
    return api.token(*api.client())


def recycled_number(world: World) -> str:
    """A number the night of 2026-11-25 recycled into the pool (no owner now)."""
    day = RECORDS_BEGIN
    msisdn = world.add_number(day - timedelta(days=93))
    world.add_warning(msisdn, 7, final_on=day - timedelta(days=10))
    world.fresh_feed(day)
    assert world.run(day, allow_mass_recycle=True).recycled == 1
    return msisdn


class TestScenarios:
    """The definition's two scenarios, and the case its rule turns on."""

    def test_same_owner_is_false(self, world: World, api: ApiServer, token: str) -> None:
        """An owner since the records began: false for that day and after."""
        msisdn = world.add_number(today() + timedelta(days=40))
        answer = api.check({"phoneNumber": msisdn, "specifiedDate": str(RECORDS_BEGIN)}, token)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"phoneNumberRecycled": False}

    def test_no_owner_now_is_true(self, world: World, api: ApiServer, token: str) -> None:
        """Recycled into the pool: true for any date, today's included."""
        msisdn = recycled_number(world)
        for asked in (RECORDS_BEGIN, today()):
            answer = api.check({"phoneNumber": msisdn, "specifiedDate": str(asked)}, token)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"phoneNumberRecycled": True}

    def test_correlator_echoed_or_made(self, world: World, api: ApiServer, token: str) -> None:
        """The caller's x-correlator comes back; without one, a new one does."""
        msisdn = world.add_number(today() + timedelta(days=40))
        body = {"phoneNumber": msisdn, "specifiedDate": str(RECORDS_BEGIN)}
        mine = f"bank-{uuid.uuid4()}"
        assert api.check(body, token, {"x-correlator": mine}).headers["x-correlator"] == mine
        made = api.check(body, token).headers["x-correlator"]
        assert made
        assert made != mine


class TestErrors:
    """Every error of the definition, with its status and code."""

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            ("{not json", "INVALID_ARGUMENT"),
            ("", "INVALID_ARGUMENT"),
            ({}, "INVALID_ARGUMENT"),
            ({"phoneNumber": "+85512000001", "specifiedDate": "2026-02-30"}, "INVALID_ARGUMENT"),
            ({"phoneNumber": "+85512000001", "specifiedDate": "26-11-01"}, "INVALID_ARGUMENT"),
            ({"phoneNumber": "012000001", "specifiedDate": "2026-11-25"}, "INVALID_ARGUMENT"),
            (
                {"phoneNumber": "+85512000001", "specifiedDate": "2026-11-25", "extra": 1},
                "INVALID_ARGUMENT",
            ),
        ],
        ids=["bad json", "no body", "empty", "no such day", "bad date", "bad number", "unknown"],
    )
    def test_invalid_argument(self, api: ApiServer, token: str, body: object, code: str) -> None:
        answer = api.check(body, token)
        assert answer.status_code == 400, answer.text
        assert answer.json()["code"] == code
        assert answer.json()["status"] == 400
        assert answer.json()["message"]

    def test_out_of_range(self, world: World, api: ApiServer, token: str) -> None:
        """Tomorrow, and a day before the records begin."""
        msisdn = world.add_number(today() + timedelta(days=40))
        for asked in (today() + timedelta(days=1), RECORDS_BEGIN - timedelta(days=1)):
            answer = api.check({"phoneNumber": msisdn, "specifiedDate": str(asked)}, token)
            assert (answer.status_code, answer.json()["code"]) == (400, "OUT_OF_RANGE")

    def test_unknown_number(self, api: ApiServer, token: str) -> None:
        answer = api.check({"phoneNumber": "+85517888777", "specifiedDate": "2026-11-25"}, token)
        assert (answer.status_code, answer.json()["code"]) == (404, "IDENTIFIER_NOT_FOUND")

    @pytest.mark.parametrize("how", ["none", "garbage", "expired", "foreign", "other audience"])
    def test_unauthenticated(self, api: ApiServer, how: str) -> None:
        """No token, a malformed one, an expired one of ours, one signed by a stranger, one for
        another audience: 401 UNAUTHENTICATED."""
        key_path = api.key_path
        from jobs.checking.tokens import SigningKey  # noqa: PLC0415

        ours = SigningKey.load_or_create(key_path)
        now = int(time.time())
        claims = {
            "iss": api.world.settings.api_base_url,
            "aud": api.world.settings.api_audience,
            "client_id": "x",
            "scope": "number-recycling:check",
            "iat": now - 7200,
            "exp": now - 3600,
        }
        stranger = IdentityProvider()
        tokens = {
            "none": None,
            "garbage": "not.a.token",
            "expired": jwt.encode(
                claims, ours.private_key, algorithm="RS256", headers={"kid": ours.kid}
            ),
            "foreign": jwt.encode(
                {**claims, "iat": now, "exp": now + 600}, stranger.key, algorithm="RS256"
            ),
            "other audience": jwt.encode(
                {**claims, "iat": now, "exp": now + 600, "aud": "someone-else"},
                ours.private_key,
                algorithm="RS256",
                headers={"kid": ours.kid},
            ),
        }
        answer = api.check(
            {"phoneNumber": "+85512000001", "specifiedDate": "2026-11-25"}, tokens[how]
        )
        assert (answer.status_code, answer.json()["code"]) == (401, "UNAUTHENTICATED")
        assert answer.headers["www-authenticate"] == "Bearer"

    def test_wrong_scope(self, api: ApiServer) -> None:
        """A token of ours without number-recycling:check: 403 PERMISSION_DENIED."""
        from jobs.api import token_authority  # noqa: PLC0415

        authority = token_authority(api.world.settings)
        issued = authority.issue("rc_someone", frozenset({"openid"}), datetime.now(ZONE))
        answer = api.check(
            {"phoneNumber": "+85512000001", "specifiedDate": "2026-11-25"}, issued.access_token
        )
        assert (answer.status_code, answer.json()["code"]) == (403, "PERMISSION_DENIED")

    def test_too_many_requests(self, world: World, tmp_path: Path) -> None:
        """At 2 checks a second for a client, a burst of 6 meets 429 TOO_MANY_REQUESTS."""
        msisdn = world.add_number(today() + timedelta(days=40))
        with running_api(world, tmp_path, api_rate_per_client=2) as api:
            token = api.token(*api.client())
            body = {"phoneNumber": msisdn, "specifiedDate": str(RECORDS_BEGIN)}
            codes = [api.check(body, token).status_code for _ in range(6)]
        assert codes[:2] == [200, 200]
        assert 429 in codes[2:]


class TestIdentifiers:
    """Two-legged and three-legged tokens, from the operator's identity provider."""

    @pytest.fixture
    def idp(self) -> Iterator[IdentityProvider]:
        provider = IdentityProvider()
        with serve(provider.app, provider.port):
            yield provider

    def test_three_legged(self, world: World, tmp_path: Path, idp: IdentityProvider) -> None:
        """A token naming the subscriber: the body names nobody (200), or it is 422
        UNNECESSARY_IDENTIFIER; a two-legged token without a number in the body is 422
        MISSING_IDENTIFIER."""
        msisdn = world.add_number(today() + timedelta(days=40))
        with running_api(world, tmp_path, api_issuer=idp.issuer, api_jwks_url=idp.jwks_url) as api:
            audience = api.world.settings.api_audience
            three = idp.token(audience, phone_number=msisdn)
            answer = api.check({"specifiedDate": str(RECORDS_BEGIN)}, three)
            assert answer.json() == {"phoneNumberRecycled": False}
            answer = api.check({"phoneNumber": msisdn, "specifiedDate": "2026-11-25"}, three)
            assert (answer.status_code, answer.json()["code"]) == (422, "UNNECESSARY_IDENTIFIER")
            two = idp.token(audience)
            answer = api.check({"specifiedDate": "2026-11-25"}, two)
            assert (answer.status_code, answer.json()["code"]) == (422, "MISSING_IDENTIFIER")
            answer = api.check({"phoneNumber": msisdn, "specifiedDate": "2026-11-25"}, two)
            assert answer.json() == {"phoneNumberRecycled": False}
            wrong = idp.token("someone-else")
            answer = api.check({"phoneNumber": msisdn, "specifiedDate": "2026-11-25"}, wrong)
            assert answer.status_code == 401


class TestAuthorizationServer:
    """The token endpoint, the keys and the discovery document."""

    def test_client_credentials(self, api: ApiServer) -> None:
        """Basic or form authentication; the token names the client, scope and audience, and
        verifies against the published keys."""
        client_id, secret = api.client()
        form = httpx.post(
            f"{api.base_url}/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
        assert form.status_code == 200, form.text
        issued = form.json()
        assert issued["token_type"] == "Bearer"
        assert issued["scope"] == "number-recycling:check"
        assert issued["expires_in"] == 3600
        discovery = httpx.get(f"{api.base_url}/.well-known/openid-configuration").json()
        keys = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(
            issued["access_token"]
        )
        claims = jwt.decode(
            issued["access_token"],
            keys.key,
            algorithms=["RS256"],
            audience="number-recycling",
            issuer=discovery["issuer"],
        )
        assert claims["client_id"] == client_id
        assert {"jti", "iat", "exp"} <= set(claims)

    def test_refusals(self, api: ApiServer) -> None:
        """Wrong secret, unknown client, other grant, a scope not granted, a revoked client."""
        client_id, secret = api.client()

        def ask(auth: tuple[str, str], **form: str) -> httpx.Response:
            return httpx.post(
                f"{api.base_url}/oauth2/token",
                data={"grant_type": "client_credentials", **form},
                auth=auth,
            )

        assert ask((client_id, "wrong")).json()["error"] == "invalid_client"
        assert ask(("rc_nobody", secret)).status_code == 401
        assert ask((client_id, secret), grant_type="password").json()["error"] == (
            "unsupported_grant_type"
        )
        assert ask((client_id, secret), scope="admin").json()["error"] == "invalid_scope"
        token = api.token(client_id, secret)
        result = recycler("api-client", "revoke", client_id, env=environment(api.world.url))
        assert result.code == 0, result
        assert ask((client_id, secret)).status_code == 401
        time.sleep(5.5)  # revocations are read every few seconds
        answer = api.check({"phoneNumber": "+85512000001", "specifiedDate": "2026-11-25"}, token)
        assert answer.status_code == 401


class TestRecord:
    """Every check is recorded; the number's story and the usage report show them."""

    def test_checks_are_recorded_and_shown(self, world: World, api: ApiServer) -> None:
        client_id, secret = api.client("Bank A")
        token = api.token(client_id, secret)
        msisdn = world.add_number(today() + timedelta(days=40))
        api.check(
            {"phoneNumber": msisdn, "specifiedDate": "2026-11-25"}, token, {"x-correlator": "c-1"}
        )
        api.check({"phoneNumber": msisdn, "specifiedDate": str(today() + timedelta(days=2))}, token)
        with world.database.read() as connection:
            rows = connection.execute(
                sa.select(
                    api_checks.c.client_id,
                    api_checks.c.msisdn,
                    api_checks.c.recycled,
                    api_checks.c.code,
                    api_checks.c.correlator,
                ).order_by(api_checks.c.id)
            ).all()
        assert tuple(rows[0]) == (client_id, msisdn, False, None, "c-1")
        assert tuple(rows[1])[2:4] == (None, "OUT_OF_RANGE")
        story = recycler("number", msisdn, "--json", env=environment(world.url))
        assert [check["client_id"] for check in story.json()["checks"]] == [client_id] * 2
        usage = recycler("api-client", "usage", "--json", env=environment(world.url))
        assert usage.json() == [
            {
                "client_id": client_id,
                "name": "Bank A",
                "checks": 2,
                "answered": 1,
                "refused": 1,
                "first": usage.json()[0]["first"],
                "last": usage.json()[0]["last"],
            }
        ]
        with pytest.raises(sa.exc.DBAPIError), world.database.write() as connection:
            connection.execute(sa.delete(api_checks))


@pytest.mark.postgresql_only
class TestDatabaseOutage:
    """The API's database restarts, fails over, or is gone: banks get answers again as soon as
    it is back, and a clear 503 in the definition's shape while it is not."""

    @staticmethod
    def close_server_connections(world: World) -> int:
        """What a restart or a failover does to the API's connections: the server ends them."""
        with world.database.engine.connect() as connection:
            ended = connection.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).scalar_one()
        world.database.engine.dispose()
        return int(ended)

    def checks_recorded(self, world: World, msisdn: str) -> int:
        with world.database.read() as connection:
            return int(
                connection.execute(
                    sa.select(sa.func.count()).where(api_checks.c.msisdn == msisdn)
                ).scalar_one()
            )

    def test_connections_the_server_ended(self, world: World, api: ApiServer, token: str) -> None:
        """Every check after the server ended the API's connections is answered (on a new
        connection) and recorded exactly once."""
        msisdn = world.add_number(today() + timedelta(days=40))
        body = {"phoneNumber": msisdn, "specifiedDate": str(RECORDS_BEGIN)}
        assert [api.check(body, token).status_code for _ in range(3)] == [200] * 3
        assert self.close_server_connections(world) >= 1
        answers = [api.check(body, token) for _ in range(5)]
        assert [(answer.status_code, answer.json()) for answer in answers] == [
            (200, {"phoneNumberRecycled": False})
        ] * 5
        assert self.checks_recorded(world, msisdn) == 8

    def test_database_gone(self, world: World, api: ApiServer, token: str) -> None:
        """While the database takes no connections: 503 UNAVAILABLE in CAMARA's shape, the
        correlator echoed, health unhealthy; answers again once it is back."""
        msisdn = world.add_number(today() + timedelta(days=40))
        body = {"phoneNumber": msisdn, "specifiedDate": str(RECORDS_BEGIN)}
        assert api.check(body, token).status_code == 200
        name = world.database.url.database
        admin = sa.create_engine(
            world.database.url.set(database="postgres"), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            self.close_server_connections(world)
            answer = api.check(body, token, {"x-correlator": "outage-1"})
            assert answer.status_code == 503, answer.text
            assert answer.json()["code"] == "UNAVAILABLE"
            assert answer.json()["status"] == 503
            assert answer.headers["x-correlator"] == "outage-1"
            assert "Retry-After" in answer.headers
            assert httpx.get(f"{api.base_url}/healthz").status_code == 503
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            admin.dispose()
        answer = api.check(body, token)
        assert (answer.status_code, answer.json()) == (200, {"phoneNumberRecycled": False})
        # The refused check left no record (there was nowhere to write it), the others did.
        assert self.checks_recorded(world, msisdn) == 2


class TestAsTheOperatorRunsIt:
    """`recycler api` as a process, clients made with `recycler api-client add`, a bank's
    client asking as the README shows; SIGTERM ends it cleanly."""

    def test_the_readme_path(self, world: World, tmp_path: Path) -> None:
        port = free_port()
        key = tmp_path / "api-key.pem"
        env = environment(world.url, api_port=str(port), api_signing_key_path=str(key))
        added = recycler("api-client", "add", "Bank of Phnom Penh", "--json", env=env)
        assert added.code == 0, added
        client = added.json()
        assert client["scopes"] == ["number-recycling:check"]
        assert client["client_secret"] not in recycler("api-client", "list", env=env).stdout
        server = start("api", env=env)
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until(lambda: _answers(f"{base_url}/healthz"), timeout=30)
            assert key.stat().st_mode & 0o777 == 0o600
            issued = httpx.post(
                f"{base_url}/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(client["client_id"], client["client_secret"]),
            )
            assert issued.status_code == 200, issued.text
            msisdn = recycled_number(world)
            answer = httpx.post(
                f"{base_url}/number-recycling/v0.2/check",
                json={"phoneNumber": msisdn, "specifiedDate": str(RECORDS_BEGIN)},
                headers={"Authorization": f"Bearer {issued.json()['access_token']}"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"phoneNumberRecycled": True}
            metrics = httpx.get(f"{base_url}/metrics").text
            assert 'recycler_api_checks_total{outcome="recycled"} 1.0' in metrics
        finally:
            server.process.send_signal(signal.SIGTERM)
            finished = server.finish(timeout=30)
        assert finished.code == 0, finished
        assert client["client_secret"] not in finished.stderr + finished.stdout

    def test_port_taken(self, world: World, tmp_path: Path) -> None:
        """Another program on the port: exit 1 and a sentence, not a server that never serves."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            env = environment(
                world.url, api_port=str(port), api_signing_key_path=str(tmp_path / "key.pem")
            )
            result = recycler("api", env=env, timeout=60)
        assert result.code == 1, result
        assert f"could not serve on 127.0.0.1:{port}" in result.stderr
        assert "address already in use" in result.stderr


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


class TestTheReadmeBlock:
    """The README's section for banks, run by bash as written, on the demo's base: only the port
    is changed (so that the test does not need 8080 free) and a wait for the server to listen is
    added, which a person typing the commands does by themselves."""

    def test_the_curl_example_answers(self, tmp_path: Path) -> None:
        readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
        section = readme.split("## For banks", 1)[1]
        block = section.split("```sh\n", 1)[1].split("```", 1)[0]
        port = free_port()
        script = block.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace(
            "recycler api &",
            "recycler api &\ntrap 'kill %1' EXIT\n"
            f"until curl -sf http://127.0.0.1:{port}/healthz >/dev/null; do sleep 0.2; done",
        )
        env = environment(api_port=str(port), api_signing_key_path=str(tmp_path / "key.pem"))
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        seeded = recycler("seed", "--subscribers", "2000", env=env, cwd=tmp_path)
        assert seeded.code == 0, seeded
        assert recycler("run", env=env, cwd=tmp_path).code == 0
        finished = subprocess.run(
            ["bash", "-c", script],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert finished.returncode == 0, finished.stderr
        assert finished.stdout.strip() == '{"phoneNumberRecycled":false}'

"""`recycler staff` and `recycler console` as an operator types them."""

from __future__ import annotations

import urllib.request

import pyotp

from tests.support.cli import environment, recycler, start, wait_until
from tests.support.world import World


class TestStaffCommands:
    def test_add_list_role_reset_disable(self, world: World) -> None:
        env = environment(world.url)
        added = recycler("staff", "add", "Sok", "--role", "supervisor", "--json", env=env)
        assert added.code == 0, added
        new = added.json()
        assert (new["username"], new["role"], new["totp_required"]) == ("sok", "supervisor", True)
        assert len(new["password"]) >= 12
        assert pyotp.parse_uri(new["totp_uri"]).issuer == "recycler"
        agent = recycler("staff", "add", "ana", "--role", "agent", env=env)
        assert agent.code == 0
        assert "one-time password: " in agent.stdout
        assert "the app's code at sign-in: used when given" in agent.stdout

        again = recycler("staff", "add", "ana", "--role", "agent", env=env)
        assert (again.code, "there is already a staff account ana" in again.stderr) == (2, True)
        bad = recycler("staff", "add", "9x", "--role", "agent", env=env)
        assert bad.code == 2
        assert "a letter first" in bad.stderr
        unknown_role = recycler("staff", "add", "bo", "--role", "king", env=env)
        assert unknown_role.code == 2

        promoted = recycler("staff", "role", "ana", "--role", "supervisor", "--json", env=env)
        assert promoted.json()["totp_required"] is True
        reset = recycler("staff", "reset", "ana", "--json", env=env).json()
        assert reset["password"] != new["password"]
        assert recycler("staff", "disable", "ana", env=env).stdout.strip() == "ana is disabled"
        twice = recycler("staff", "disable", "ana", env=env)
        assert (twice.code, "already disabled" in twice.stderr) == (2, True)
        listed = recycler("staff", "list", "--json", env=env).json()
        assert [(member["username"], member["disabled"]) for member in listed] == [
            ("sok", False),
            ("ana", True),
        ]
        assert "password" not in listed[0]
        assert recycler("staff", "reset", "nobody", env=env).code == 2


class TestConsoleCommand:
    def test_serves_until_stopped(self, world: World) -> None:
        env = environment(world.url, console_port="18931")
        running = start("console", env=env)
        try:

            def answers() -> bool:
                try:
                    with urllib.request.urlopen("http://127.0.0.1:18931/healthz", timeout=1) as r:
                        return r.status == 200
                except OSError:
                    return False

            wait_until(answers, timeout=30)
            with urllib.request.urlopen("http://127.0.0.1:18931/sign-in", timeout=5) as page:
                body = page.read().decode()
                assert "Sign in" in body
                assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
        finally:
            running.process.terminate()
        assert running.finish().code == 0

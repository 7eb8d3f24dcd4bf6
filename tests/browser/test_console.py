"""The console in headless Chromium (issue 14): sign-in with password and second factor,
lockout, CSRF, the four-eyes rules with signed-in people, a hold from the number page, and the
main flows with the keyboard alone. Each page is saved as a 1280x800 screenshot."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from playwright.sync_api import Page, expect

from jobs.clock import SystemClock
from jobs.database.schema import api_checks, audit_events, numbers, warnings
from jobs.importing.subscribers import import_subscribers
from jobs.safeguards.changes import Operator
from jobs.safeguards.ownership import Safeguards
from jobs.sending.dispatcher import Dispatcher
from jobs.sending.receipts import deliveries_by_night, keep_receipt
from jobs.staff.accounts import set_role
from jobs.vocabulary import AuditEvent
from notifier.receipts import twilio_receipt
from notifier.testing import InMemoryGateway
from tests.benchmarks.exports import subscriber_export
from tests.browser.conftest import Console, Person
from tests.support.world import REQUESTER, World, as_of_noon

ZONE = ZoneInfo("Asia/Phnom_Penh")
OWN_PASSWORD = "a long password of my own"


def today() -> date:
    return datetime.now(ZONE).date()


def live(world: World, owner: str = "alice") -> str:
    world.clock.moment = datetime.now(UTC) - timedelta(days=30)
    return world.add_number(today() + timedelta(days=20), owner_id=owner)


def shot(page: Page, console: Console, name: str) -> None:
    page.screenshot(path=str(console.screenshots / f"{name}.png"), full_page=False)


def attempt(page: Page, console: Console, username: str, password: str, code: str = "") -> None:
    """Fill in the sign-in form and send it."""
    page.goto(f"{console.url}/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Code from the authenticator app").fill(code)
    page.get_by_role("button", name="Sign in").click()


def sign_in(page: Page, console: Console, person: Person, *, code: bool = True) -> None:
    """Sign in; the first time, trade the one-time password for one's own."""
    attempt(page, console, person.username, person.password, person.code() if code else "")
    if page.url.endswith("/password"):
        page.get_by_label("Current password").fill(person.password)
        page.get_by_label("New password", exact=False).first.fill(OWN_PASSWORD)
        page.get_by_label("New password again").fill(OWN_PASSWORD)
        page.get_by_role("button", name="Change password").click()
        person.password = OWN_PASSWORD
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def events(world: World, kind: str) -> list[str]:
    with world.database.read() as connection:
        return list(
            connection.execute(
                sa.select(audit_events.c.actor).where(audit_events.c.event_type == kind)
            ).scalars()
        )


class TestSignIn:
    def test_password_and_second_factor(self, console: Console, page: Page) -> None:
        """A supervisor needs the code; the one-time password must be changed first."""
        sok = console.person("sok", "supervisor")
        page.goto(f"{console.url}/approvals")
        expect(page).to_have_url(f"{console.url}/sign-in?next=%2Fapprovals")
        shot(page, console, "sign-in")
        attempt(page, console, "sok", sok.password)  # no code: refused
        expect(page.get_by_role("alert")).to_contain_text("is not right")
        sign_in(page, console, sok)
        expect(page.get_by_role("heading", name="Find a number")).to_be_visible()
        assert events(console.world, AuditEvent.STAFF_SIGNED_IN) == ["sok"]
        assert events(console.world, AuditEvent.STAFF_SIGN_IN_FAILED) == ["sok"]
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(f"{console.url}/sign-in")
        page.goto(f"{console.url}/approvals")
        expect(page).to_have_url(f"{console.url}/sign-in?next=%2Fapprovals")

    def test_lockout_after_five_failures(self, console: Console, page: Page) -> None:
        ana = console.person("ana", "agent")
        for _ in range(5):
            attempt(page, console, "ana", "wrong")
            expect(page.get_by_role("alert")).to_contain_text("is not right")
        attempt(page, console, "ana", ana.password)  # the right one, now too late
        expect(page.get_by_role("alert")).to_contain_text("locked")
        assert events(console.world, AuditEvent.STAFF_LOCKED) == ["ana"]


class TestForms:
    def test_a_form_without_its_csrf_token_is_refused(self, console: Console, page: Page) -> None:
        msisdn = live(console.world)
        ana = console.person("ana", "agent")
        sign_in(page, console, ana, code=False)
        answer = page.request.post(
            f"{console.url}/numbers/{msisdn}/hold", form={"reason": "no token"}
        )
        assert answer.status == 403
        assert "CSRF" in answer.text()
        forged = page.request.post(
            f"{console.url}/numbers/{msisdn}/hold", form={"reason": "x", "csrf": "guessed"}
        )
        assert forged.status == 403
        assert events(console.world, AuditEvent.HOLD_PLACED) == []

    def test_a_hold_from_the_number_page(self, console: Console, page: Page) -> None:
        msisdn = live(console.world)
        ana = console.person("ana", "agent")
        sign_in(page, console, ana, code=False)
        page.get_by_label("Number, in any form").fill("0" + msisdn[4:])
        page.get_by_role("button", name="Look up").click()
        expect(page.get_by_role("heading", name=msisdn)).to_be_visible()
        shot(page, console, "number")
        page.get_by_label("Reason").first.fill("owner reports a stolen SIM")
        page.get_by_role("button", name="Place hold").click()
        expect(page.get_by_role("status")).to_contain_text(f"{msisdn} is on hold")
        expect(page.locator("#phase")).to_have_text("on hold")
        assert events(console.world, AuditEvent.HOLD_PLACED) == ["ana"]
        # An agent may not release it: no form, and the address itself is refused.
        expect(page.get_by_role("button", name="Release")).to_have_count(0)


class TestFourEyes:
    def test_an_agent_cannot_approve_not_even_their_own_later(
        self, console: Console, page: Page
    ) -> None:
        """The agent opens a request; has no approve button; then, made a supervisor, is
        still refused for their own request."""
        msisdn = live(console.world)
        ana = console.person("ana", "agent")
        sign_in(page, console, ana, code=False)
        page.goto(f"{console.url}/numbers/{msisdn}")
        page.get_by_label("New owner", exact=True).fill("mallory")
        page.get_by_label("Consent of the current owner (reference)").fill("SIGNED-1")
        page.get_by_label("Consent of the new owner (reference)").fill("SIGNED-2")
        page.locator("#transfer-reason").fill("asked at shop 12")
        page.get_by_role("button", name="Open transfer request").click()
        expect(page.get_by_role("status")).to_contain_text("request 1 opened")
        page.goto(f"{console.url}/approvals")
        shot(page, console, "approvals")
        expect(page.get_by_role("button", name="Approve request 1")).to_have_count(0)
        csrf = page.locator("input[name=csrf]").first.input_value()
        refused = page.request.post(
            f"{console.url}/requests/1/approve", form={"csrf": csrf, "reason": "mine"}
        )
        assert refused.status == 403
        set_role(
            console.world.database, "ana", "supervisor", actor="admin", now=SystemClock().now()
        )
        page.reload()
        page.get_by_role("button", name="Approve request 1").click()
        expect(page.get_by_role("alert")).to_contain_text("someone else must approve it")
        assert console.world.number(msisdn).owner_id == "alice"

    def test_a_supervisor_approves_after_the_cool_off(self, console: Console, page: Page) -> None:
        world = console.world
        msisdn = live(world)
        world.clock.moment = datetime.now(UTC) - timedelta(hours=25)
        world.four_eyes().request_transfer(
            msisdn, REQUESTER, to_owner="mallory", consent_current="A", consent_new="B"
        )
        # The sender runs its own event loop; Playwright's holds this thread.
        sender = threading.Thread(target=world.send_notices)
        sender.start()
        sender.join()
        sok = console.person("sok", "supervisor")
        sign_in(page, console, sok)
        page.get_by_role("link", name="Approvals").click()
        row = page.locator("#request-1")
        expect(row).to_contain_text("sent")
        row.get_by_role("button", name="Approve request 1").click()
        expect(page.get_by_role("status")).to_contain_text(f"{msisdn} transferred to mallory")
        assert world.number(msisdn).owner_id == "mallory"
        page.goto(f"{console.url}/numbers/{msisdn}")
        expect(page.locator("#request-1 .state")).to_have_text("approved")


class TestKeyboard:
    def test_sign_in_find_and_hold_with_the_keyboard_alone(
        self, console: Console, page: Page
    ) -> None:
        msisdn = live(console.world)
        ana = console.person("ana", "agent")
        page.goto(f"{console.url}/sign-in")
        expect(page.get_by_label("Username")).to_be_focused()  # autofocus: no click needed
        page.keyboard.type("ana")
        page.keyboard.press("Tab")
        page.keyboard.type(ana.password)
        page.keyboard.press("Enter")
        expect(page).to_have_url(f"{console.url}/password")
        page.get_by_label("Current password").focus()
        page.keyboard.type(ana.password)
        page.keyboard.press("Tab")
        page.keyboard.type(OWN_PASSWORD)
        page.keyboard.press("Tab")
        page.keyboard.type(OWN_PASSWORD)
        page.keyboard.press("Enter")
        expect(page.get_by_role("status")).to_contain_text("password changed")
        page.get_by_label("Number, in any form").focus()
        page.keyboard.type("0" + msisdn[4:])
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name=msisdn)).to_be_visible()
        page.locator("#hold-reason").focus()
        page.keyboard.type("stolen phone")
        page.keyboard.press("Enter")
        expect(page.locator("#phase")).to_have_text("on hold")


def three_nights(world: World) -> list[date]:
    """Numbers in every warning window, three nights run, their warnings sent."""
    first = today() - timedelta(days=3)
    world.clock.moment = datetime.now(UTC) - timedelta(days=4)
    for offset in range(-95, 40, 3):
        world.add_number(first + timedelta(days=offset - 90 + 31), owner_id=f"o{offset}")
    days = [first + timedelta(days=index) for index in range(3)]
    for day in days:
        world.clock.moment = as_of_noon(day, world.settings)
        world.fresh_feed(day)
        world.run(day, allow_mass_recycle=True)
        sender = threading.Thread(target=lambda: Dispatcher(
            world.database, world.with_settings(send_window="00:00-24:00").settings,
            InMemoryGateway(), world.clock).drain())  # fmt: skip
        sender.start()
        sender.join()
    return days


class TestOperations:
    def test_nights_are_charts_with_data(self, console: Console, page: Page) -> None:
        three_nights(console.world)
        sok = console.person("sok", "supervisor")
        sign_in(page, console, sok)
        page.get_by_role("link", name="Nights").click()
        expect(page.get_by_role("heading", name="The last 3 nights")).to_be_visible()
        shot(page, console, "nights")
        drawn = page.locator("svg.chart rect.bar")
        heights = [
            float(drawn.nth(index).get_attribute("height") or 0) for index in range(drawn.count())
        ]
        assert len(heights) >= 3 * 6
        assert sum(1 for height in heights if height > 0) >= 6
        sent = page.get_by_role(
            "img", name="accepted by the gateway (sent, delivered or undelivered since)"
        )
        assert any(
            float(bar.get_attribute("height") or 0) > 0 for bar in sent.locator("rect").all()
        )

    def test_deliveries_per_night_and_stage(self, console: Console, page: Page) -> None:
        """Receipts for the three nights' warnings (every other one delivered, one
        undelivered): the Deliveries table says what SQL says, row by row."""
        world = console.world
        three_nights(world)
        with world.database.read() as connection:
            sent = (
                connection.execute(
                    sa.select(warnings.c.gateway_message_id)
                    .where(warnings.c.gateway_message_id.is_not(None))
                    .order_by(warnings.c.id)
                )
                .scalars()
                .all()
            )
        assert len(sent) >= 3
        now = world.clock.now()
        with world.database.write() as connection:
            for index, message_id in enumerate(sent[::2]):
                keep_receipt(
                    connection,
                    gateway="twilio",
                    message_id=message_id,
                    receipt=twilio_receipt("undelivered" if index == 0 else "delivered", "30003"),
                    now=now,
                    today=now.date(),
                )
        sender = threading.Thread(target=lambda: Dispatcher(
            world.database, world.with_settings(send_window="00:00-24:00").settings,
            InMemoryGateway(), world.clock).drain())  # fmt: skip
        sender.start()
        sender.join()
        with world.database.read() as connection:
            expected = deliveries_by_night(
                connection, now=datetime.now(UTC), wait=timedelta(hours=72)
            )
        assert sum(row.undelivered for row in expected) == 1
        assert sum(row.delivered for row in expected) == len(sent[::2]) - 1
        sign_in(page, console, console.person("sok", "supervisor"))
        page.get_by_role("link", name="Nights").click()
        table = page.locator("section[aria-labelledby=deliveries] table tbody tr")
        expect(table).to_have_count(len(expected))
        for index, row in enumerate(expected):
            cells = table.nth(index).locator("td").all_inner_texts()
            share = "-" if row.delivered_share is None else f"{row.delivered_share * 100:.1f}"
            assert cells == [
                row.night.isoformat(), str(row.stage), str(row.accepted), str(row.delivered),
                str(row.undelivered), str(row.no_receipt), str(row.awaiting_receipt),
                str(row.failed), share,
            ]  # fmt: skip
        shot(page, console, "deliveries")

    def test_forecast_equals_the_counts_in_sql(
        self, console: Console, page: Page, tmp_path: Path
    ) -> None:
        """From an operator's subscriber export, imported; one number held (the forecast
        leaves it out): every one of the 90 rows, and the CSV, equal counts done in SQL."""
        world = console.world
        world.clock.moment = datetime.now(UTC)
        export = subscriber_export(tmp_path / "subscribers.csv", 3000, today(), seed=4)
        import_subscribers(world.database, export, world.settings, world.clock, actor="feed")
        grace = world.settings.grace_days
        with world.database.read() as connection:
            held = connection.execute(
                sa.select(numbers.c.msisdn)
                .where(numbers.c.validity_end == today() + timedelta(days=10 - grace))
                .limit(1)
            ).scalar_one()
        Safeguards.of(world.database, world.settings, world.clock).hold(held, REQUESTER)
        sok = console.person("sok", "supervisor")
        sign_in(page, console, sok)
        page.get_by_role("link", name="Forecast").click()
        shot(page, console, "forecast")
        shown = [
            [cell.strip() for cell in row.split("\t")]
            for row in page.locator("#forecast tbody tr").all_inner_texts()
        ]
        assert len(shown) == 90
        with world.database.read() as connection:
            expected = [
                [
                    (today() + timedelta(days=offset)).isoformat(),
                    *(
                        str(
                            connection.execute(
                                sa.select(sa.func.count()).where(
                                    numbers.c.owner_id.is_not(None),
                                    numbers.c.on_hold.is_(sa.false()),
                                    numbers.c.validity_end
                                    == today() + timedelta(days=offset - grace + stage),
                                )
                            ).scalar_one()
                        )
                        for stage in (30, 14, 7, 1, 0)
                    ),
                ]
                for offset in range(90)
            ]
        assert shown == expected
        assert sum(int(row[-1]) for row in shown) > 0  # recycles to expect: not all zero
        with page.expect_download() as download:
            page.get_by_role("link", name="Download as CSV").click()
        lines = Path(download.value.path()).read_text().splitlines()
        assert lines[0] == "day,stage_30,stage_14,stage_7,stage_1,grace_end"
        assert [line.split(",") for line in lines[1:]] == expected

    def test_audit_search_pages_and_csv(self, console: Console, page: Page) -> None:
        world = console.world
        msisdn = live(world)
        safeguards = Safeguards.of(world.database, world.settings, world.clock)
        for index in range(30):
            safeguards.hold(msisdn, Operator("care-dara", f"call {index}"))
            safeguards.release(msisdn, Operator("care-dara", f"call {index} settled"))
        auditor = console.person("aud", "auditor")
        sign_in(page, console, auditor, code=False)
        page.get_by_role("link", name="Audit").click()
        page.get_by_label("Who").fill("care-dara")
        page.get_by_role("button", name="Search").click()
        expect(page.get_by_text("60 events, 1 to 50 shown")).to_be_visible()
        shot(page, console, "audit")
        assert page.locator("#events tbody tr").count() == 50
        page.get_by_role("link", name="Older").click()
        assert page.locator("#events tbody tr").count() == 10
        with page.expect_download() as download:
            page.get_by_role("link", name="All of them as CSV").click()
        assert len(Path(download.value.path()).read_text().splitlines()) == 61
        # An auditor changes nothing: no action on the number page.
        page.goto(f"{console.url}/numbers/{msisdn}")
        expect(page.get_by_role("button", name="Place hold")).to_have_count(0)

    def test_staff_page_is_the_admins(self, console: Console, page: Page) -> None:
        boss = console.person("boss", "admin")
        sign_in(page, console, boss)
        expect(page.get_by_role("heading", name="Staff")).to_be_visible()
        page.get_by_label("Username").fill("vanna")
        page.get_by_label("Role", exact=True).last.select_option("agent")
        page.get_by_role("button", name="Add").click()
        password = page.locator("#one-time-password").inner_text()
        assert len(password) >= 12
        assert page.locator("#totp-uri").inner_text().startswith("otpauth://totp/recycler:vanna")
        shot(page, console, "staff")
        page.goto(f"{console.url}/numbers")
        assert "may not read" in page.content()
        agent = console.person("ana", "agent")
        other = page.context.browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[union-attr]
        second = other.new_page()
        sign_in(second, console, agent, code=False)
        answer = second.goto(f"{console.url}/staff")
        assert answer is not None
        assert answer.status == 403
        other.close()


class TestAuditor:
    def test_reads_the_banks_checks_and_nothing_else_is_theirs_to_change(
        self, console: Console, page: Page
    ) -> None:
        world = console.world
        msisdn = live(world)
        with world.database.write() as connection:
            for index in range(3):
                connection.execute(
                    api_checks.insert().values(
                        occurred_at=datetime.now(UTC),
                        client_id="bank-acleda",
                        msisdn=msisdn,
                        specified_date=today() - timedelta(days=index),
                        recycled=False,
                        status=200,
                        correlator=f"c-{index}",
                    )
                )
        auditor = console.person("aud", "auditor")
        sign_in(page, console, auditor, code=False)
        page.get_by_role("link", name="Checks by banks").click()
        expect(page.get_by_text("3 checks through the reassigned API")).to_be_visible()
        shot(page, console, "checks")
        assert page.locator("#checks tbody tr").first.inner_text().count("bank-acleda") == 1
        # A supervisor has no audit log and no list of checks: those are the auditor's.
        sok = console.person("sok", "supervisor")
        other = page.context.browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[union-attr]
        second = other.new_page()
        sign_in(second, console, sok)
        expect(second.get_by_role("link", name="Audit")).to_have_count(0)
        answer = second.goto(f"{console.url}/checks")
        assert answer is not None
        assert answer.status == 403
        other.close()

"""The settings: sources, precedence, and clear refusals naming the setting."""

from __future__ import annotations

import os
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobs.settings import SendWindow, Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see the defaults, not the settings of whoever runs them."""
    for name in list(os.environ):
        if name.startswith("RECYCLER_") and not name.startswith("RECYCLER_TEST_"):
            monkeypatch.delenv(name)


class TestSources:
    """Defaults, the TOML file, the environment."""

    def test_defaults(self) -> None:
        """The documented defaults (README, Configuration)."""
        settings = load_settings()
        assert settings.timezone == "Asia/Phnom_Penh"
        assert (settings.grace_days, settings.warning_days) == (90, [30, 14, 7, 1])
        assert (settings.quarantine_days, settings.min_notice_days) == (0, 7)
        assert (settings.max_feed_age_hours, settings.max_recycle_fraction) == (36, 0.02)
        assert settings.default_region == "KH"
        assert settings.database_url == "sqlite:///recycler.sqlite3"

    def test_environment_wins_over_the_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """RECYCLER_GRACE_DAYS beats grace_days in the file; lists are comma-separated."""
        config = tmp_path / "recycler.toml"
        config.write_text("grace_days = 60\nwarning_days = [20, 5]\nquarantine_days = 3\n")
        monkeypatch.setenv("RECYCLER_GRACE_DAYS", "75")
        monkeypatch.setenv("RECYCLER_WARNING_DAYS", "30, 14,7 ,1")
        settings = load_settings(config)
        assert (settings.grace_days, settings.warning_days) == (75, [30, 14, 7, 1])
        assert settings.quarantine_days == 3

    def test_config_from_the_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """RECYCLER_CONFIG names the file when --config is not given."""
        config = tmp_path / "recycler.toml"
        config.write_text('timezone = "UTC"\n')
        monkeypatch.setenv("RECYCLER_CONFIG", str(config))
        assert load_settings().timezone == "UTC"


class TestRefusals:
    """Invalid settings fail at start with a message that names the setting."""

    @pytest.mark.parametrize(
        ("variable", "value", "message"),
        [
            (
                "RECYCLER_GRACE_DAYS",
                "-3",
                "setting grace_days: Input should be greater than or equal to 1",
            ),
            ("RECYCLER_QUARANTINE_DAYS", "-1", "setting quarantine_days"),
            ("RECYCLER_MIN_NOTICE_DAYS", "-7", "setting min_notice_days"),
            (
                "RECYCLER_TIMEZONE",
                "Mars/Olympus",
                "setting timezone: unknown time zone 'Mars/Olympus'",
            ),
            (
                "RECYCLER_WARNING_DAYS",
                "7,14,30",
                "setting warning_days: stages must be listed from the earliest, descending",
            ),
            ("RECYCLER_WARNING_DAYS", "30,14,14,1", "setting warning_days: duplicate stages"),
            (
                "RECYCLER_WARNING_DAYS",
                "30,0",
                "setting warning_days: stages are whole days of at least 1",
            ),
            (
                "RECYCLER_WARNING_DAYS",
                "120,30",
                "setting warning_days: the first stage (120) lies before",
            ),
            ("RECYCLER_MAX_RECYCLE_FRACTION", "1.5", "setting max_recycle_fraction"),
            ("RECYCLER_DEFAULT_REGION", "XX", "setting default_region: unknown region 'XX'"),
            (
                "RECYCLER_SEND_WINDOW",
                "20:00-08:00",
                "setting send_window: the window '20:00-08:00' ends before it starts",
            ),
            (
                "RECYCLER_DATABASE_URL",
                "mysql://x",
                "setting database_url: use sqlite:///PATH or postgresql+psycopg",
            ),
        ],
    )
    def test_bad_value(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
    ) -> None:
        """One bad value, one message that names it."""
        monkeypatch.setenv(variable, value)
        with pytest.raises(SettingsError) as raised:
            load_settings()
        assert message in str(raised.value)

    def test_twilio_needs_exactly_one_sender(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """gateway = twilio with neither, or both, of the sender settings is refused."""
        monkeypatch.setenv("RECYCLER_GATEWAY", "twilio")
        with pytest.raises(SettingsError, match="set exactly one of twilio_from"):
            load_settings()
        monkeypatch.setenv("RECYCLER_TWILIO_FROM", "+15005550006")
        assert load_settings().twilio_from == "+15005550006"
        monkeypatch.setenv("RECYCLER_TWILIO_MESSAGING_SERVICE_SID", "MG1")
        with pytest.raises(SettingsError, match="set exactly one of twilio_from"):
            load_settings()

    def test_secrets_are_not_settings(self, tmp_path: Path) -> None:
        """An auth token in the settings file is refused: secrets come from the environment."""
        config = tmp_path / "recycler.toml"
        config.write_text('twilio_auth_token = "secret"\n')
        with pytest.raises(SettingsError, match="twilio_auth_token: not a setting of recycler"):
            load_settings(config)

    def test_unknown_setting_in_the_file(self, tmp_path: Path) -> None:
        """A typo in the file is not silently ignored."""
        config = tmp_path / "recycler.toml"
        config.write_text("grace_dayz = 60\n")
        with pytest.raises(SettingsError, match="setting grace_dayz: not a setting of recycler"):
            load_settings(config)

    def test_file_that_is_not_toml(self, tmp_path: Path) -> None:
        """Broken TOML names the file."""
        config = tmp_path / "recycler.toml"
        config.write_text("grace_days = = 60\n")
        with pytest.raises(SettingsError, match="is not valid TOML"):
            load_settings(config)


class TestSendWindow:
    """Sending hours."""

    def test_always(self) -> None:
        """00:00-24:00 contains every time of day."""
        window = SendWindow.parse("00:00-24:00")
        assert window.contains(time(0))
        assert window.contains(time(23, 59, 59))

    def test_end_is_exclusive(self) -> None:
        """08:00-20:00 ends at 20:00."""
        window = Settings().window
        assert window.contains(time(8))
        assert not window.contains(time(20))
        assert not window.contains(time(7, 59))


class TestTimeInsideTheWindow:
    """How long a wait counts against the send lag: only the part inside sending hours."""

    ZONE = ZoneInfo("Asia/Phnom_Penh")

    def moment(self, day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2026, 11, day, hour, minute, tzinfo=self.ZONE)

    def test_evening_wait_after_the_window_closed(self) -> None:
        """Due 18:08, looked at 20:50: 1 h 52 min inside 08:00-20:00."""
        window = SendWindow.parse("08:00-20:00")
        waited = window.time_inside(self.moment(25, 18, 8), self.moment(25, 20, 50), self.ZONE)
        assert waited == timedelta(hours=1, minutes=52)

    def test_across_the_night(self) -> None:
        """Due 18:08, looked at 08:30 the next morning: 1 h 52 min plus 30 min."""
        window = SendWindow.parse("08:00-20:00")
        waited = window.time_inside(self.moment(25, 18, 8), self.moment(26, 8, 30), self.ZONE)
        assert waited == timedelta(hours=2, minutes=22)

    def test_always_open(self) -> None:
        """00:00-24:00: the whole wait counts, days included."""
        window = SendWindow.parse("00:00-24:00")
        waited = window.time_inside(self.moment(24, 10), self.moment(26, 10), self.ZONE)
        assert waited == timedelta(days=2)

    def test_nothing_inside(self) -> None:
        """Due at 21:00, looked at 07:00: no wait counts."""
        window = SendWindow.parse("08:00-20:00")
        assert window.time_inside(self.moment(25, 21), self.moment(26, 7), self.ZONE) == timedelta(
            0
        )

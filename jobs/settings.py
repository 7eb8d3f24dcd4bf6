"""The one typed settings object, read once at the edge of the program and passed in.

Sources, strongest first: environment variables ``RECYCLER_<SETTING>``, then the TOML file named by
``--config`` or ``RECYCLER_CONFIG``, then the defaults below. Lists in the environment are
comma-separated (``RECYCLER_WARNING_DAYS=30,14,7,1``). Secrets are never read from the file.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from jobs.rules import Rules

__all__ = [
    "DEFAULT_DATABASE_FILE",
    "SendWindow",
    "Settings",
    "SettingsError",
    "cron_trigger",
    "latest_fire_time",
    "load_settings",
]

DEFAULT_DATABASE_FILE = "recycler.sqlite3"
# Bounds no sensible setting reaches, and that keep every date computed from one in range.
_LONGEST_DAYS = 3650
_LONGEST_HOURS = 24 * 365
_LONGEST_SPAN_DAYS = 31


class SettingsError(Exception):
    """The settings are invalid."""


class SendWindow:
    """Local sending hours, ``HH:MM-HH:MM``; ``00:00-24:00`` means always."""

    def __init__(self, start: time, end: time | None) -> None:
        # end None stands for 24:00, which datetime.time cannot hold.
        self.start = start
        self.end = end

    @classmethod
    def parse(cls, text: str) -> SendWindow:
        try:
            start_text, end_text = (part.strip() for part in text.split("-"))
            start = time.fromisoformat(start_text)
            end = None if end_text == "24:00" else time.fromisoformat(end_text)
        except ValueError as error:
            raise ValueError(f"expected HH:MM-HH:MM, got {text!r}") from error
        if end is not None and end <= start:
            raise ValueError(f"the window {text!r} ends before it starts")
        return cls(start, end)

    def contains(self, moment: time) -> bool:
        """Whether a local time of day lies inside the window."""
        return self.start <= moment and (self.end is None or moment < self.end)

    def time_inside(self, start: datetime, end: datetime, zone: ZoneInfo) -> timedelta:
        """How much of the span from `start` to `end` lies inside the window, day after day,
        on the local clock (a warning due at 18:08 and still waiting at 08:30 the next morning
        has waited 1 h 52 min that evening and 30 min that morning)."""
        if end <= start:
            return timedelta(0)
        inside = timedelta(0)
        day = start.astimezone(zone).date()
        last = end.astimezone(zone).date()
        # A span of months is surely too long; counting a few weeks is enough to say so.
        day = max(day, last - timedelta(days=_LONGEST_SPAN_DAYS))
        while day <= last:
            opens = datetime.combine(day, self.start, tzinfo=zone)
            closes = (
                datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
                if self.end is None
                else datetime.combine(day, self.end, tzinfo=zone)
            )
            overlap = min(end, closes) - max(start, opens)
            if overlap > timedelta(0):
                inside += overlap
            day += timedelta(days=1)
        return inside

    def __str__(self) -> str:
        end = "24:00" if self.end is None else self.end.strftime("%H:%M")
        return f"{self.start.strftime('%H:%M')}-{end}"


def cron_trigger(expression: str, zone: ZoneInfo) -> CronTrigger:
    """A crontab line as an APScheduler trigger: ``minute hour day month weekday``, or with a
    leading seconds field (six fields), which tests use to fire a few seconds ahead."""
    fields = expression.split()
    if len(fields) in (5, 6) and any(character.isdigit() for character in fields[-1]):
        # APScheduler 3 counts weekdays from Monday, crontab from Sunday: a number would
        # silently mean another day.
        raise ValueError(
            f"not a crontab line: {expression!r} (write weekdays by name, mon-sun, not by number)"
        )
    try:
        if len(fields) == 5:
            return CronTrigger.from_crontab(expression, timezone=zone)
        if len(fields) == 6:
            second, minute, hour, day, month, day_of_week = fields
            return CronTrigger(
                second=second,
                minute=minute,
                hour=hour,
                day=day,
                month=month,
                day_of_week=day_of_week,
                timezone=zone,
            )
    except ValueError as error:
        raise ValueError(f"not a crontab line: {expression!r} ({error})") from None
    raise ValueError(f"not a crontab line: {expression!r} (expected 5 fields)")


def latest_fire_time(expression: str, zone: ZoneInfo, now: datetime) -> datetime | None:
    """When a crontab schedule last fired at or before `now` (looking back at most eight
    days)."""
    trigger = cron_trigger(expression, zone)
    moment = trigger.get_next_fire_time(None, now - timedelta(days=8))
    latest = None
    while moment is not None and moment <= now:
        latest = moment
        moment = trigger.get_next_fire_time(moment, moment + timedelta(seconds=1))
    return latest


def _region(value: str) -> str:
    region = value.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown region {value!r}")
    return region


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of recycler. Field names are the setting names (README, Configuration)."""

    model_config = SettingsConfigDict(
        env_prefix="RECYCLER_",
        extra="forbid",
        frozen=True,
        validate_default=True,
        # "inf" and "nan" parse as floats; no setting of recycler means either.
        allow_inf_nan=False,
    )

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_DATABASE_FILE}",
        description="SQLAlchemy URL; PostgreSQL as postgresql+psycopg://user@host/db",
    )
    timezone: str = Field(default="Asia/Phnom_Penh", description="the operator's time zone")
    grace_days: int = Field(
        default=90, ge=1, le=_LONGEST_DAYS, description="days after V the owner keeps the number"
    )
    warning_days: Annotated[list[int], NoDecode] = Field(
        default=[30, 14, 7, 1], description="warning stages in days before grace end, descending"
    )
    quarantine_days: int = Field(
        default=0, ge=0, le=_LONGEST_DAYS, description="days in the pool before sale"
    )
    min_notice_days: int = Field(
        default=7, ge=0, le=365, description="notice a recycle needs, in days"
    )
    max_feed_age_hours: float = Field(
        default=36, gt=0, le=_LONGEST_HOURS, description="top-up feed staleness limit"
    )
    max_recycle_fraction: float = Field(
        default=0.02, ge=0, le=1, description="share of the base one run may recycle"
    )
    default_region: str = Field(default="KH", description="region for national-form numbers")
    allowed_regions: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="regions whose numbers the base may hold (empty: the default region only)",
    )
    console_outbox_path: Path | None = Field(
        default=None, description="file the console gateway appends to; stdout when unset"
    )
    gateway: Literal["console", "twilio", "kannel"] = Field(
        default="console", description="SMS gateway adapter"
    )
    twilio_from: str | None = Field(default=None, description="Twilio sender number")
    twilio_messaging_service_sid: str | None = Field(
        default=None, description="Twilio messaging service, instead of a sender number"
    )
    twilio_base_url: str = Field(
        default="https://api.twilio.com", description="Twilio API base URL (or a compatible one)"
    )
    twilio_status_callback_url: str | None = Field(
        default=None,
        description="recycler api's /receipts/twilio as Twilio reaches it: asks Twilio for "
        "delivery receipts (signed with the auth token)",
    )
    kannel_sendsms_url: str = Field(
        default="http://127.0.0.1:13013/cgi-bin/sendsms",
        description="Kannel smsbox's sendsms interface",
    )
    kannel_username: str | None = Field(
        default=None, description="Kannel sendsms-user (its password: KANNEL_PASSWORD)"
    )
    kannel_sender: str | None = Field(default=None, description="sender id or number for Kannel")
    kannel_smsc_id: str | None = Field(
        default=None, description="Kannel smsc-id to route through (default: Kannel's routing)"
    )
    kannel_receipt_url: str | None = Field(
        default=None,
        description="recycler api's /receipts/kannel as Kannel reaches it: asks Kannel for "
        "delivery reports (signed with KANNEL_RECEIPT_SECRET)",
    )
    receipt_wait_hours: float = Field(
        default=72,
        gt=0,
        le=24 * 30,
        description="after this, a sent message without a receipt counts as 'no receipt'",
    )
    send_window: str = Field(default="08:00-20:00", description="local sending hours")
    send_rate: float = Field(
        default=10,
        ge=0,
        le=100_000,
        description="messages per second per sender process; 0: no limit",
    )
    send_concurrency: int = Field(
        default=16, ge=1, le=1000, description="gateway requests in flight per sender"
    )
    # Generous: a request the gateway accepted but answered after the timeout is sent again.
    send_timeout_seconds: float = Field(
        default=30, gt=0, le=300, description="how long one gateway request may take"
    )
    max_attempts: int = Field(default=8, ge=1, le=50, description="sends tried before failing")
    max_clock_skew_seconds: float = Field(
        default=30,
        gt=0,
        le=3600,
        description="a sender whose clock is further than this from the database's refuses",
    )
    database_connect_timeout_seconds: float = Field(
        default=10, gt=0, le=300, description="how long connecting to the database may take"
    )
    database_statement_timeout_seconds: float = Field(
        default=60,
        gt=0,
        le=86_400,
        description="how long one statement may take (and a wait for another job's lock)",
    )
    database_idle_transaction_timeout_seconds: float = Field(
        default=60,
        gt=0,
        le=86_400,
        description="the server closes a connection idle this long inside a transaction",
    )
    run_statement_timeout_seconds: float = Field(
        default=1800,
        gt=0,
        le=86_400,
        description="the statement timeout of long jobs: the nightly run, imports, the seed",
    )
    stop_timeout_seconds: float = Field(
        default=10,
        gt=0,
        le=600,
        description="after SIGTERM, how long a process may take before it stops by force",
    )
    lease_seconds: float = Field(
        default=300, gt=0, le=86_400, description="how long a claimed warning stays claimed"
    )
    max_segments: int = Field(default=3, ge=1, le=10, description="longest allowed SMS, in parts")
    max_run_age_hours: float = Field(
        default=26,
        gt=0,
        le=_LONGEST_HOURS,
        description="status is unhealthy when the last good run is older",
    )
    max_run_minutes: float = Field(
        default=120,
        gt=0,
        le=24 * 60,
        description="status is unhealthy when a run has been running longer than this",
    )
    max_send_lag_minutes: float = Field(
        default=60,
        gt=0,
        le=10_080,
        description="status is unhealthy when a due warning waits longer inside sending hours",
    )
    max_failed_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="status is unhealthy when more of the last day's warnings failed than this",
    )
    run_schedule: str = Field(
        default="30 1 * * *",
        description="when the daemon runs the nightly job: crontab, in the operator's time zone",
    )
    run_retry_seconds: float = Field(
        default=60,
        gt=0,
        le=3600,
        description="the daemon retries a failed run after this, doubling up to 15 minutes",
    )
    run_grace_minutes: float = Field(
        default=60,
        gt=0,
        le=24 * 60,
        description="status is unhealthy when the scheduled run has not completed this long "
        "after its time",
    )
    send_poll_seconds: float = Field(
        default=30,
        gt=0,
        le=3600,
        description="how often the daemon's sender looks for due warnings",
    )
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="the daemon serves Prometheus metrics here"
    )
    metrics_textfile: Path | None = Field(
        default=None, description="one-shot commands write Prometheus metrics to this file"
    )
    care_line: str = Field(
        default="888",
        min_length=1,
        max_length=20,
        pattern=r"^\+?[0-9][0-9 ]*$",
        description="the care line an owner calls to object to a request for their number",
    )
    transfer_cooloff_hours: float = Field(
        default=24,
        ge=0,
        le=24 * 30,
        description="hours between a transfer request and its earliest approval; 0: none",
    )
    transfer_request_ttl_days: int = Field(
        default=7, ge=1, le=90, description="a request not decided in this many days expires"
    )
    max_transfer_requests_per_actor_per_day: int = Field(
        default=20, ge=1, le=10_000, description="requests one actor may open in a local day"
    )
    console_host: str = Field(default="127.0.0.1", description="where `recycler console` listens")
    console_port: int = Field(default=8081, ge=1, le=65535, description="its port")
    console_secure_cookies: bool = Field(
        default=False,
        description="mark the console's cookies Secure: set it when the console is behind TLS",
    )
    api_host: str = Field(default="127.0.0.1", description="where `recycler api` listens")
    api_port: int = Field(default=8080, ge=1, le=65535, description="its port")
    api_public_url: str | None = Field(
        default=None,
        description="the API's address as banks reach it (the built-in issuer); "
        "default http://API_HOST:API_PORT",
    )
    api_audience: str = Field(
        default="number-recycling", min_length=1, description="the audience every token names"
    )
    api_issuer: str | None = Field(
        default=None, description="the operator's identity provider's issuer, if any"
    )
    api_jwks_url: str | None = Field(
        default=None, description="the keys of that identity provider (JWKS)"
    )
    api_token_ttl_seconds: int = Field(
        default=3600, ge=60, le=86_400, description="how long a built-in token lasts"
    )
    api_rate_per_client: float = Field(
        default=50, ge=0, le=100_000, description="checks per second per client; 0: no limit"
    )
    api_database_connections: int = Field(
        default=8,
        ge=1,
        le=200,
        description="database connections of one `recycler api` process: the checks it "
        "answers at once",
    )
    api_signing_key_path: Path = Field(
        default=Path("recycler-api-key.pem"),
        description="the built-in issuer's RSA key (PEM), created when absent",
    )
    log_format: Literal["auto", "console", "json"] = Field(
        default="auto", description="log lines: json, console, or auto (console on a terminal)"
    )
    log_full_numbers: bool = Field(default=False, description="log numbers unmasked")

    @property
    def rules(self) -> Rules:
        """The lifecycle rules these settings describe (jobs.rules)."""
        return Rules(
            grace_days=self.grace_days,
            warning_days=tuple(self.warning_days),
            min_notice_days=self.min_notice_days,
            quarantine_days=self.quarantine_days,
        )

    @field_validator("timezone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @field_validator("warning_days", mode="before")
    @classmethod
    def _parse_stages(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("warning_days")
    @classmethod
    def _valid_stages(cls, stages: list[int]) -> list[int]:
        if not stages:
            raise ValueError("at least one warning stage is needed")
        if any(stage < 1 for stage in stages):
            # Stage 0 is reserved for the final notice of the minimum-notice rule.
            raise ValueError("stages are whole days of at least 1")
        if len(set(stages)) != len(stages):
            raise ValueError(f"duplicate stages in {stages}")
        if stages != sorted(stages, reverse=True):
            raise ValueError(f"stages must be listed from the earliest, descending: {stages}")
        return stages

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        return _region(value)

    @field_validator("allowed_regions", mode="before")
    @classmethod
    def _parse_regions(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("allowed_regions")
    @classmethod
    def _known_regions(cls, values: list[str]) -> list[str]:
        return [_region(value) for value in values]

    @field_validator("send_window")
    @classmethod
    def _valid_window(cls, value: str) -> str:
        SendWindow.parse(value)
        return value

    @field_validator("run_schedule")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        cron_trigger(value, ZoneInfo("UTC"))
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql+psycopg://")):
            raise ValueError(
                "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DATABASE "
                f"(got {value.split('://', maxsplit=1)[0]}://…)"
            )
        if value.startswith("sqlite://") and value.removeprefix("sqlite://").lstrip("/") in (
            "",
            ":memory:",
        ):
            # An in-memory database keeps nothing; usually a variable that was not set, as in
            # sqlite:///$DB.
            raise ValueError(
                f"{value} names no file (an unset variable?); write sqlite:///PATH, e.g. "
                f"sqlite:///{DEFAULT_DATABASE_FILE}"
            )
        return value

    @model_validator(mode="after")
    def _stages_inside_grace(self) -> Settings:
        if self.warning_days[0] > self.grace_days:
            raise ValueError(
                f"warning_days: the first stage ({self.warning_days[0]}) lies before the grace "
                f"period starts (grace_days={self.grace_days})"
            )
        return self

    @model_validator(mode="after")
    def _one_twilio_sender(self) -> Settings:
        if self.gateway == "twilio" and (self.twilio_from is None) == (
            self.twilio_messaging_service_sid is None
        ):
            raise ValueError(
                "twilio_from: with gateway = twilio, set exactly one of twilio_from "
                "(RECYCLER_TWILIO_FROM) and twilio_messaging_service_sid "
                "(RECYCLER_TWILIO_MESSAGING_SERVICE_SID)"
            )
        return self

    @model_validator(mode="after")
    def _kannel_sender(self) -> Settings:
        if self.gateway == "kannel" and (not self.kannel_username or not self.kannel_sender):
            raise ValueError(
                "kannel_username: with gateway = kannel, set kannel_username "
                "(RECYCLER_KANNEL_USERNAME) and kannel_sender (RECYCLER_KANNEL_SENDER)"
            )
        return self

    @model_validator(mode="after")
    def _issuer_with_its_keys(self) -> Settings:
        if (self.api_issuer is None) != (self.api_jwks_url is None):
            raise ValueError(
                "api_issuer: an identity provider needs both api_issuer and api_jwks_url"
            )
        return self

    @property
    def api_base_url(self) -> str:
        """The API's address as banks reach it."""
        return (self.api_public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def regions(self) -> frozenset[str]:
        """The regions whose numbers the base may hold."""
        return frozenset(self.allowed_regions or [self.default_region])

    @property
    def zone(self) -> ZoneInfo:
        """The operator's time zone."""
        return ZoneInfo(self.timezone)

    @property
    def window(self) -> SendWindow:
        """The parsed sending hours."""
        return SendWindow.parse(self.send_window)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init arguments; the environment must win over it.
        return (env_settings, init_settings)


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "not a setting of recycler"
        # A whole-model check names its setting inside the message itself.
        lines.append(f"setting {name}: {message}" if name else f"setting {message}")
    return "; ".join(lines)


# RECYCLER_* variables that are not settings but are read elsewhere.
_OTHER_VARIABLES = frozenset({"RECYCLER_CONFIG", "RECYCLER_FAILPOINTS"})


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A sentence for each RECYCLER_* variable that is not a setting (a typo is otherwise
    ignored without a word), with the setting it most likely meant."""
    known = {f"RECYCLER_{name.upper()}" for name in Settings.model_fields}
    sentences = []
    for name in sorted(environ):
        if (
            not name.startswith("RECYCLER_")
            or name in known
            or name in _OTHER_VARIABLES
            or name.startswith("RECYCLER_TEST_")
        ):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        sentences.append(f"{name} is not a setting of recycler{hint}; it is ignored")
    return sentences


def load_settings(config_path: Path | None = None, **overrides: Any) -> Settings:
    """Read the settings from the TOML file (if any) and the environment.

    ``overrides`` are for callers that build settings in code (tests, the benchmark); they rank
    with the file, below the environment.
    """
    path = config_path
    if path is None and os.environ.get("RECYCLER_CONFIG"):
        path = Path(os.environ["RECYCLER_CONFIG"])
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise SettingsError(f"config file {path} does not exist") from error
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise SettingsError(f"config file {path} is not valid TOML: {error}") from error
    values.update(overrides)
    try:
        return Settings(**values)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None

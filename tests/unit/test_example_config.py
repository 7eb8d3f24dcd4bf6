"""The example settings file in deploy/ is valid and holds every setting."""

from __future__ import annotations

import tomllib
from pathlib import Path

from jobs.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "recycler.example.toml"


def test_example_loads() -> None:
    """The file parses and validates."""
    settings = load_settings(EXAMPLE)
    assert settings.database_url.startswith("postgresql+psycopg://")


def test_example_names_every_setting() -> None:
    """A setting added to the code is added to the example too."""
    named = set(tomllib.loads(EXAMPLE.read_text(encoding="utf-8")))
    unset_by_default = {
        "console_outbox_path",
        "twilio_from",
        "twilio_messaging_service_sid",
        "metrics_port",
        "metrics_textfile",
        "api_public_url",
        "api_issuer",
        "api_jwks_url",
        "twilio_status_callback_url",
        "kannel_username",
        "kannel_sender",
        "kannel_smsc_id",
        "kannel_receipt_url",
    }
    assert named == set(Settings.model_fields) - unset_by_default
    text = EXAMPLE.read_text(encoding="utf-8")
    assert all(name in text for name in unset_by_default)  # at least shown, commented

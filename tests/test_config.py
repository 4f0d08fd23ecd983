from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "newsletter.example.toml"


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.database.url == "sqlite:///newsletter.db"
    assert settings.delivery.transport.startswith("outbox:")
    assert settings.source == "built-in defaults"


def test_example_file_loads_and_names_every_section() -> None:
    settings = load_settings(EXAMPLE, environ={})
    assert settings.newsletter.name
    assert settings.newsletter.sender.endswith(">")
    assert settings.feeds.sections[0] == "Europe"
    assert settings.delivery.connections >= 1


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "n.toml"
    path.write_text('[delivery]\nrate = 14\nconnections = 4\n[feeds]\nurls = ["a"]\n')
    settings = load_settings(
        path,
        environ={
            "NEWSLETTER_DELIVERY_RATE": "2.5",
            "NEWSLETTER_FEEDS_URLS": "https://a.example/feed, https://b.example/feed",
            "NEWSLETTER_NEWSLETTER_FROM": "Desk <desk@example.net>",
        },
    )
    assert settings.delivery.rate == 2.5
    assert settings.delivery.connections == 4
    assert settings.feeds.urls == ("https://a.example/feed", "https://b.example/feed")
    assert settings.newsletter.sender == "Desk <desk@example.net>"


def test_secrets_come_from_the_environment_only(tmp_path: Path) -> None:
    path = tmp_path / "n.toml"
    path.write_text('[delivery]\nsmtp_password = "hunter2"\n')
    with pytest.raises(ConfigError, match=r"unknown key delivery\.smtp_password"):
        load_settings(path, environ={})
    settings = load_settings(
        None, environ={"NEWSLETTER_SECRET_KEY": "new, old", "NEWSLETTER_SMTP_PASSWORD": "pw"}
    )
    assert settings.secrets.secret_keys == ("new", "old")
    assert "pw" not in repr(settings)
    assert "new" not in repr(settings.secrets)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[delivery]\nrate = 'fast'\n", r"delivery\.rate must be a number"),
        ("[newsletter]\ntimezone = 'Mars/Olympus'\n", r"not a known time zone"),
        ("[bogus]\nx = 1\n", r"unknown section \[bogus\]"),
        ("[newsletter\n", r"not valid TOML"),
        ("[feeds]\nurls = 'a'\nsections = [1, 2]\n", r"feeds\.sections must be a list"),
        ("[delivery]\nconnections = 0\n", r"delivery\.connections must be at least 1"),
    ],
)
def test_bad_values_name_the_key_and_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path, environ={})
    assert str(path) in str(info.value)


def test_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_issue_closes_is_a_weekday_and_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={"NEWSLETTER_NEWSLETTER_ISSUE_CLOSES": "thu 7:00"})
    assert settings.newsletter.closes == (3, time(7, 0))
    assert load_settings(environ={}).newsletter.closes == (0, time(0, 0))
    for wrong in ("Thursday", "Funday 07:00", "Thursday 25:00"):
        with pytest.raises(ConfigError, match="issue_closes"):
            load_settings(environ={"NEWSLETTER_NEWSLETTER_ISSUE_CLOSES": wrong})

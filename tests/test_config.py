from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.errors import ConfigError

from .conftest import Cli

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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[web]\nport = true\n", r"web\.port must be a whole number, not True"),
        ("[web]\nport = 99999999\n", r"web\.port must be from 1 to 65535, not 99999999"),
        ("[web]\nport = 0\n", r"web\.port must be from 1 to 65535"),
        ("[web]\nport = 8025.7\n", r"web\.port must be a whole number, not 8025\.7"),
        ("[web]\nhost = 80\n", r"web\.host must be a string"),
        ("[delivery]\nrate = -1\n", r"delivery\.rate must be at least 0"),
        ("[delivery]\nrate = inf\n", r"delivery\.rate must be a number, not inf"),
        ("[delivery]\nrate = nan\n", r"delivery\.rate must be a number"),
        ("[delivery]\ntimeout = 0\n", r"delivery\.timeout must be greater than 0"),
        ("[delivery]\nmax_attempts = 0\n", r"delivery\.max_attempts must be at least 1"),
        ("[feeds]\ntimeout = 0.0\n", r"feeds\.timeout must be greater than 0"),
        ("[feeds]\nurls = [1]\n", r"feeds\.urls must be a list of strings"),
        ("[web]\nconfirm_hours = 0\n", r"web\.confirm_hours must be at least 1"),
    ],
)
def test_wrong_types_and_ranges_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path, environ={})
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("NEWSLETTER_WEB_PORT", "99999999", r"\$NEWSLETTER_WEB_PORT: web\.port must be from 1"),
        ("NEWSLETTER_WEB_PORT", "80.5", r"web\.port must be a whole number, not '80\.5'"),
        ("NEWSLETTER_DELIVERY_CONNECTIONS", "0", r"delivery\.connections must be at least 1"),
        ("NEWSLETTER_DELIVERY_TIMEOUT", "-3", r"delivery\.timeout must be greater than 0"),
        ("NEWSLETTER_DELIVERY_RATE", "infinity", r"delivery\.rate must be a number"),
    ],
)
def test_environment_overrides_are_checked_alike(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, environ={name: value})


def test_good_numbers_keep_their_types(tmp_path: Path) -> None:
    path = tmp_path / "n.toml"
    path.write_text("[web]\nport = 65535\n[delivery]\nrate = 0\ntimeout = 5\n")
    settings = load_settings(path, environ={"NEWSLETTER_DELIVERY_CONNECTIONS": "2"})
    assert settings.web.port == 65535
    assert settings.delivery.connections == 2
    assert (settings.delivery.rate, settings.delivery.timeout) == (0.0, 5.0)
    assert isinstance(settings.delivery.timeout, float)


def test_the_command_line_names_the_key_in_one_line(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "newsletter.toml").write_text("[web]\nport = true\n")
    result = cli("subscribers", "list", env={"NEWSLETTER_CONFIG": "newsletter.toml"})
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output
    assert "web.port must be a whole number, not True" in result.output

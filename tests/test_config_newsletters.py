"""Several newsletters in one configuration: `[newsletters.SLUG]` tables over `[newsletter]`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError
from newsletter.mail.tokens import InvalidToken, Tokens

TWO = """
[newsletter]
name = "The Weekly Round-up"
from = "Example Magazine <newsletter@example.org>"
timezone = "Europe/London"

[newsletters.brief]
name = "Middle East Brief"
sections = ["Middle East"]
issue_closes = "Thursday 07:00"
"""

KEY = "k" * 32


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "n.toml"
    path.write_text(text)
    return load_settings(path, environ=environ or {})


def test_a_second_newsletter_starts_from_the_first_and_changes_what_it_names(
    tmp_path: Path,
) -> None:
    settings = _load(tmp_path, TWO)
    assert settings.slugs == ("weekly", "brief")
    assert settings.newsletter.slug == "weekly"
    brief = settings.for_newsletter("brief")
    assert brief.newsletter.name == "Middle East Brief"
    assert brief.newsletter.sender == "Example Magazine <newsletter@example.org>"
    assert brief.newsletter.timezone == "Europe/London"
    assert brief.newsletter.issue_closes == "Thursday 07:00"
    assert brief.sections == ("Middle East",)
    assert settings.sections == settings.feeds.sections
    assert (settings.list_id, brief.list_id) == ("weekly.example.org", "brief.example.org")
    assert settings.for_newsletter(None).newsletter.slug == "weekly"
    assert brief.default_newsletter.slug == "weekly"


def test_the_default_slug_can_be_renamed(tmp_path: Path) -> None:
    settings = _load(tmp_path, '[newsletter]\nslug = "roundup"\n')
    assert settings.slugs == ("roundup",)
    assert settings.list_id == "roundup.example.org"


def test_the_environment_changes_only_the_default_newsletter(tmp_path: Path) -> None:
    settings = _load(tmp_path, TWO, {"NEWSLETTER_NEWSLETTER_NAME": "Renamed"})
    assert settings.newsletter.name == "Renamed"
    assert settings.for_newsletter("brief").newsletter.name == "Middle East Brief"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[newsletters.brief]\nsections = ["Antarctica"]\n', r"newsletters\.brief\.sections"),
        ('[newsletters."Bad Slug"]\nname = "x"\n', r"slug 'Bad Slug'"),
        ('[newsletters.weekly]\nname = "x"\n', r"two newsletters are called 'weekly'"),
        ('[newsletters.brief]\nslug = "other"\n', r"the table's name is its slug"),
        ('[newsletters.brief]\nissue_closes = "soon"\n', r"newsletters\.brief\.issue_closes"),
        ("[newsletters.brief]\nlogo_width = 0\n", r"newsletters\.brief\.logo_width"),
        ('[newsletters.brief]\ncolour = "red"\n', r"unknown key newsletters\.brief\.colour"),
        ("[newsletters]\nbrief = 3\n", r"\[newsletters\.brief\] must be a table"),
    ],
)
def test_a_wrong_newsletter_table_names_the_key(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, extra)


def test_an_unknown_slug_is_a_clear_error_naming_the_others(tmp_path: Path) -> None:
    settings = _load(tmp_path, TWO)
    with pytest.raises(ConfigError, match="no newsletter 'daily'") as caught:
        settings.for_newsletter("daily")
    assert caught.value.hint == "the newsletters are: weekly, brief"


def test_a_replaced_current_newsletter_is_not_undone_by_a_look_up(tmp_path: Path) -> None:
    """Tests and callers replace `newsletter`; choosing it again by slug must keep that."""
    settings = _load(tmp_path, TWO)
    renamed = replace(settings, newsletter=replace(settings.newsletter, name="Changed"))
    assert renamed.for_newsletter("weekly").newsletter.name == "Changed"
    assert renamed.for_newsletter("brief").newsletter.name == "Middle East Brief"


def test_each_newsletter_signs_its_own_unsubscribe_links(tmp_path: Path) -> None:
    settings = _load(tmp_path, TWO)
    weekly = Tokens((KEY,), settings.list_id)
    brief = Tokens((KEY,), settings.for_newsletter("brief").list_id)
    token = brief.unsubscribe(7)
    assert brief.read_unsubscribe(token) == 7
    with pytest.raises(InvalidToken):
        weekly.read_unsubscribe(token)
    with pytest.raises(InvalidToken):
        weekly.read_preferences(weekly.unsubscribe(7))
    assert weekly.read_preferences(weekly.preferences(7)) == 7

"""What the command line prints from strangers (subscribers' names and addresses, feed titles,
bounce reports) reaches the terminal with its control and bidi characters spelled out: an
ESC could retitle the window or rewrite the screen, BEL rings, U+202E turns the line around.

Names are cleaned at every intake now, but rows stored before that, or by other means, may
still hold such characters, so the tests write them straight into the database.
"""

from __future__ import annotations

import mailbox
from pathlib import Path

from sqlalchemy import update

from newsletter.app import App
from newsletter.db.models import Article, Subscriber
from newsletter.subscribers.rules import add_address
from newsletter.untrusted import for_terminal

from .conftest import Cli

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "feed.xml"
# Retitle the terminal window, ring the bell, clear the screen, reverse the line.
HOSTILE = "Ann\x1b]0;owned\x07\x1b[2J\u202eevil\x9b"
SHOWN = "Ann\\x1b]0;owned\\x07\\x1b[2J\\u202eevil\\x9b"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def assert_terminal_safe(text: str) -> None:
    assert not [ch for ch in RAW if ch in text], repr(text)


def store_hostile_subscriber(app: App) -> None:
    add_address(app, "ann@example.org", "Ann")
    with app.transaction() as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.email == "ann@example.org")
            .values(name=HOSTILE, email="ann\u202e@example.org")
        )


def test_subscribers_list_shows_stored_names_and_addresses_escaped(cli: Cli, app: App) -> None:
    store_hostile_subscriber(app)
    result = cli("subscribers", "list")
    assert result.exit_code == 0, result.output
    assert_terminal_safe(result.output)
    assert "ann\\u202e@example.org" in result.stdout
    assert SHOWN[:28] in result.stdout


def test_export_escapes_on_standard_output_and_keeps_a_file_faithful(
    cli: Cli, app: App, tmp_path: Path
) -> None:
    store_hostile_subscriber(app)
    shown = cli("subscribers", "export")
    assert shown.exit_code == 0, shown.output
    assert_terminal_safe(shown.stdout)
    assert f"ann\\u202e@example.org,{SHOWN},active" in shown.stdout
    path = tmp_path / "export.csv"
    assert cli("subscribers", "export", "-o", str(path)).exit_code == 0
    assert f"ann\u202e@example.org,{HOSTILE},active" in path.read_text(encoding="utf-8")


def test_import_notices_quote_the_files_column_names_escaped(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "columns.csv"
    path.write_text(f"email,name,{HOSTILE}\nok@example.org,Ok,x\n", encoding="utf-8")
    assert cli("init").exit_code == 0
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert_terminal_safe(result.output)
    assert f"Notice: ignored column(s): {SHOWN.lower()}" in result.stderr


def test_a_name_given_to_subscribers_add_is_stored_clean(cli: Cli, app: App) -> None:
    assert cli("init").exit_code == 0
    added = cli("subscribers", "add", "eve@example.org", "--name", HOSTILE)
    assert added.exit_code == 0, added.output
    listed = cli("subscribers", "list")
    assert "Ann]0;owned[2Jevil" in listed.stdout
    assert_terminal_safe(listed.output)


def retitle(app: App, **values: str) -> None:
    with app.transaction() as session:
        session.execute(
            update(Article).where(Article.url.contains("undersea-cables")).values(**values)
        )


def test_articles_list_escapes_titles_kickers_and_sections(cli: Cli, app: App) -> None:
    assert cli("articles", "fetch", str(DEMO)).exit_code == 0
    retitle(app, title=f"Cables {HOSTILE}", kicker="\u202eNews", section="Asia\x1b[31m")
    listing = cli("articles", "list", "--week", "2024-W47")
    assert listing.exit_code == 0, listing.output
    assert_terminal_safe(listing.output)
    assert f"Cables {SHOWN}" in listing.stdout
    assert "Asia\\x1b[31m  \\u202eNews Cables" in listing.stdout


def test_issue_show_and_overrides_escape_titles_kickers_and_sections(cli: Cli, app: App) -> None:
    """A feed can carry bidi controls (a C0 control would not survive its parser, nor MJML)."""
    assert cli("articles", "fetch", str(DEMO)).exit_code == 0
    retitle(app, title="Cables \u202eevil\u2066", kicker="\u202eNews", section="Asia\u2067")
    assert cli("issue", "build", "--week", "2024-W47").exit_code == 0
    shown = cli("issue", "show", "--week", "2024-W47")
    assert shown.exit_code == 0, shown.output
    assert_terminal_safe(shown.output)
    assert "Asia\\u2067 / \\u202eNews" in shown.stdout
    assert "Cables \\u202eevil\\u2066" in shown.stdout
    url = "https://www.example.org/2024/11/24/pacific-undersea-cables-diplomacy/"
    excluded = cli("issue", "exclude", url, "--week", "2024-W47")
    assert excluded.exit_code == 0, excluded.output
    assert "Cables \\u202eevil\\u2066" in excluded.stdout
    overrides = cli("issue", "show", "--week", "2024-W47")
    assert "exclude: [" in overrides.stdout
    assert "Cables \\u202eevil\\u2066" in overrides.stdout
    assert_terminal_safe(excluded.output + overrides.output)


def test_issue_preview_on_standard_output_escapes_feed_text(cli: Cli, app: App) -> None:
    assert cli("articles", "fetch", str(DEMO)).exit_code == 0
    retitle(app, title="Cables \u202eevil")
    assert cli("issue", "build", "--week", "2024-W47").exit_code == 0
    for extra in ((), ("--text",)):
        result = cli("issue", "preview", "--week", "2024-W47", *extra)
        assert result.exit_code == 0, result.output
        assert_terminal_safe(result.stdout)
        assert "Cables \\u202eevil" in result.stdout


def test_bounce_reports_are_shown_escaped(cli: Cli, tmp_path: Path) -> None:
    stray = (
        b"From: stranger@example.net\r\nTo: bounces@example.org\r\nSubject: hello\r\n"
        b"Message-ID: <\x1b]0;owned\x07\x1b[2J@example.net>\r\n\r\nhello\r\n"
    )
    path = tmp_path / "stray.mbox"
    box = mailbox.mbox(path)
    box.add(stray)
    box.flush()
    box.close()
    assert cli("init").exit_code == 0
    result = cli("bounces", "process", str(path))
    assert result.exit_code == 0, result.output
    assert_terminal_safe(result.output)
    assert "<\\x1b]0;owned\\x07\\x1b[2J@example.net>" in result.stderr


def test_error_messages_are_shown_escaped(cli: Cli, tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    result = cli("subscribers", "import", str(tmp_path / "\x1b[2Jgone\u202e.csv"))
    assert result.exit_code == 1
    assert_terminal_safe(result.output)
    assert "\\x1b[2Jgone\\u202e.csv: cannot open" in result.stderr


def test_for_terminal_spells_out_controls_and_bidi_and_keeps_the_rest() -> None:
    assert (
        for_terminal("Ann\x1b]0;pwned\x07\u202eevil\r\n")
        == "Ann\\x1b]0;pwned\\x07\\u202eevil\\r\\n"
    )
    assert for_terminal("Zoë Müller \u200d👩‍💻") == "Zoë Müller \u200d👩‍💻"
    assert for_terminal("\x85\u2028\udcff\t") == "\\x85\\u2028\\udcff\\t"

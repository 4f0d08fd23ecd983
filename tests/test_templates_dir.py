"""`[newsletter] templates_dir`: misplaced overrides are named, and a preview follows a
template change made after the draft was built."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from newsletter.app import App
from newsletter.db.models import Issue, IssueStatus
from newsletter.issue.templates import templates_digest, unused_overrides
from tests.conftest import REPO, Cli

PACKAGED = REPO / "templates"
WEEK = "2024-W47"


def _custom(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "custom"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_an_override_outside_its_folder_is_named_with_where_it_belongs(tmp_path: Path) -> None:
    folder = _custom(
        tmp_path,
        {
            "roundup.txt.j2": "misplaced",
            "email/_footer.mjml.j2": '{% include "email/_legal.mjml.j2" %}',
            "email/_legal.mjml.j2": "a partial of the operator's own, included above",
            "web/base.html.j2": "an override in the right place",
            ".DS_Store": "",
        },
    )
    warnings = unused_overrides([folder, PACKAGED])
    assert len(warnings) == 1, warnings
    assert "roundup.txt.j2 overrides nothing" in warnings[0]
    assert "move it to email/roundup.txt.j2" in warnings[0]
    assert unused_overrides([tmp_path / "missing", PACKAGED]) == (
        f"templates_dir {tmp_path / 'missing'} does not exist; the packaged templates are used",
    )


def test_issue_build_warns_about_an_unused_override(cli: Cli, tmp_path: Path) -> None:
    folder = _custom(tmp_path, {"roundup.mjml.j2": "<mjml></mjml>"})
    env = {"NEWSLETTER_NEWSLETTER_TEMPLATES_DIR": str(folder)}
    assert cli("init").exit_code == 0
    result = cli("issue", "build", "--week", WEEK, env=env)
    assert result.exit_code == 0, result.output
    assert "warning: " in result.stderr
    assert "roundup.mjml.j2 overrides nothing" in result.stderr


def test_the_digest_follows_the_email_templates_as_looked_up(tmp_path: Path) -> None:
    packaged = templates_digest([PACKAGED])
    assert templates_digest([tmp_path, PACKAGED]) == packaged
    _custom(tmp_path / "web-only", {"web/base.html.j2": "pages are not in the email"})
    assert templates_digest([tmp_path / "web-only" / "custom", PACKAGED]) == packaged
    folder = _custom(tmp_path, {"email/_footer.mjml.j2": "<mj-section></mj-section>"})
    assert templates_digest([folder, PACKAGED]) != packaged


FEED = (
    '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
    "<link>https://www.example.org/</link><item><guid>one</guid>"
    "<link>https://www.example.org/one/</link><title>Story one</title>"
    "<pubDate>Tue, 19 Nov 2024 12:00:00 +0000</pubDate><description>About one.</description>"
    "<category>Europe</category></item></channel></rss>"
)


def test_preview_renders_an_approved_draft_again_after_a_template_change_never_a_sent_one(
    app: App, cli: Cli, tmp_path: Path
) -> None:
    """An approved draft is not re-selected, so only the template digest tells its stored
    render is out of date."""
    footer = (PACKAGED / "email" / "_footer.mjml.j2").read_text(encoding="utf-8")
    folder = _custom(tmp_path, {"email/_footer.mjml.j2": footer})
    env = {"NEWSLETTER_NEWSLETTER_TEMPLATES_DIR": str(folder)}
    cli.clock = app.clock  # type: ignore[assignment]
    (tmp_path / "feed.xml").write_text(FEED, encoding="utf-8")
    assert cli("articles", "fetch", str(tmp_path / "feed.xml")).exit_code == 0
    approved = cli("issue", "approve", "--week", WEEK, env=env)
    assert approved.exit_code == 0, approved.output
    before = cli("issue", "preview", "--week", WEEK, env=env)
    assert before.exit_code == 0, before.output
    assert "rendered it again" not in before.stderr

    (folder / "email" / "_footer.mjml.j2").write_text(
        footer.replace("{{ brand.postal_address }}", "{{ brand.postal_address }} (new footer)"),
        encoding="utf-8",
    )
    after = cli("issue", "preview", "--week", WEEK, env=env)
    assert after.exit_code == 0, after.output
    assert "(new footer)" in after.stdout
    assert "Templates changed since 2024-W47 was built: rendered it again." in after.stderr
    assert "Approved" in cli("issue", "show", "--week", WEEK, env=env).stdout

    with app.transaction() as session:
        session.execute(update(Issue).values(status=IssueStatus.SENT))
    (folder / "email" / "_footer.mjml.j2").write_text(footer, encoding="utf-8")
    sent = cli("issue", "preview", "--week", WEEK, env=env)
    assert sent.exit_code == 0, sent.output
    assert "(new footer)" in sent.stdout  # what readers received, kept as it was

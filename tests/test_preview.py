"""`newsletter issue preview`: the stored issue, filled in for a sample reader."""

from __future__ import annotations

from pathlib import Path

from newsletter.app import App
from newsletter.db.models import Issue, IssueStatus
from newsletter.issue.render import render_issue
from tests.conftest import Cli
from tests.sample_issue import WEEK, sample_issue

PACKAGED = Path(__file__).resolve().parent.parent / "templates"


def _store_built_issue(app: App) -> None:
    rendered = render_issue(sample_issue(), app.settings, [PACKAGED])
    now = app.clock.now()
    with app.transaction() as session:
        session.add(
            Issue(
                week=str(WEEK),
                status=IssueStatus.DRAFT,
                subject=rendered.subject,
                preheader=rendered.preheader,
                html=rendered.html,
                text=rendered.text,
                web_html=rendered.web_html,
                created_at=now,
                built_at=now,
            )
        )


def test_preview_writes_the_stored_html_for_a_sample_reader(app: App, cli: Cli) -> None:
    _store_built_issue(app)
    result = cli("issue", "preview", "--week", str(WEEK))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!DOCTYPE html>")
    assert "Dear Sample Reader," in result.stdout
    assert "https://news.example.org/u/preview-only-not-a-real-token" in result.stdout
    assert "NLP-" not in result.stdout


def test_preview_text_part_to_a_file(app: App, cli: Cli, tmp_path: Path) -> None:
    _store_built_issue(app)
    target = tmp_path / "preview.txt"
    result = cli("issue", "preview", "--week", "2024-W47", "--text", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    text = target.read_text(encoding="utf-8")
    assert text.startswith("THE WEEKLY ROUND-UP\n")
    assert "\nreader@example.org\n" in text
    assert "1 Example Street" in text


def test_preview_of_an_issue_with_no_articles_says_so_in_one_line(cli: Cli) -> None:
    result = cli("issue", "preview", "--week", "2024-W47")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "the issue for 2024-W47 has no articles yet" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_preview_rejects_a_malformed_week(cli: Cli) -> None:
    result = cli("issue", "preview", "--week", "last week")
    assert result.exit_code == 2
    assert "not an ISO week" in result.stderr

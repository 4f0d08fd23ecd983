"""`newsletter demo`: the whole weekly job in a fresh folder, through the real command."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import main


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["demo", *args], env=env or {}, catch_exceptions=False)
    return result.exit_code, result.output


def test_demo_runs_the_weekly_job_and_says_where_to_look(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    code, output = run("--dir", str(folder), env={"NEWSLETTER_SECRET_KEY": ""})
    assert code == 0, output
    assert str(folder / "preview.html") in output
    assert str(folder / "preview.txt") in output
    assert str(folder / "outbox") in output
    assert "random key" in output
    messages = sorted((folder / "outbox").glob("*.eml"))
    # subscribers.example.csv: one unsubscribed and one bounced reader get nothing.
    assert "Sent:        23 messages" in output
    assert len(messages) == 23
    for path in messages:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert message.get_content_type() == "multipart/alternative"
        assert message["List-Unsubscribe"].startswith("<http://127.0.0.1:8025/u/")
        assert path.name.startswith(str(message["To"].addresses[0].addr_spec))
    assert "<html" in (folder / "preview.html").read_text(encoding="utf-8").lower()
    assert "Week of 18 November 2024" in (folder / "preview.txt").read_text(encoding="utf-8")

    again, second = run("--dir", str(folder), env={"NEWSLETTER_SECRET_KEY": "k" * 32})
    assert again == 0, second
    assert "random key" not in second
    assert len(list((folder / "outbox").glob("*.eml"))) == 23


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    code, output = run("--dir", str(tmp_path))
    assert code == 1
    assert "not made by `newsletter demo`" in output
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"

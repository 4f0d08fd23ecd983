"""The demo issue as a reader receives it, held in golden files.

One message of the real round-up (the bundled demo data), split into its headers, its HTML
part and its text part, with what changes from run to run scrubbed: the Message-ID, the
MIME boundary and the Date. A template changed on purpose is recorded with
`pytest tests/test_golden.py --update-golden`; review the diff like any other.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.demo import run_demo

GOLDEN = Path(__file__).parent / "golden"
KEY = "golden-files-key-not-for-production"
RECIPIENT = "zoe.martin@example.org"


def _scrub_headers(message: EmailMessage) -> str:
    boundary = message.get_boundary() or ""
    lines = []
    scrubbed = {"message-id": "<MESSAGE-ID>", "date": "DATE"}
    for name, value in message.items():
        shown = scrubbed.get(name.lower(), " ".join(str(value).split()))
        lines.append(f"{name}: {shown}")
    return "\n".join(lines).replace(boundary, "BOUNDARY") + "\n"


@pytest.fixture(scope="module")
def demo_message(tmp_path_factory: pytest.TempPathFactory) -> EmailMessage:
    report = run_demo(tmp_path_factory.mktemp("demo") / "demo", secret_key=KEY)
    (path,) = report.outbox.glob(f"{RECIPIENT}.*.eml")  # the name ends in a digest of the address
    raw = path.read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _part(message: EmailMessage, kind: str) -> str:
    body = message.get_body((kind,))
    assert body is not None
    assert isinstance(body, EmailMessage)
    return str(body.get_content()).replace("\r\n", "\n")


@pytest.mark.parametrize(
    ("name", "produce"),
    [
        ("demo-headers.txt", _scrub_headers),
        ("demo.html", lambda m: _part(m, "html")),
        ("demo.txt", lambda m: _part(m, "plain")),
    ],
)
def test_the_demo_issue_matches_its_golden_file(
    demo_message: EmailMessage,
    update_golden: bool,
    name: str,
    produce: Callable[[EmailMessage], str],
) -> None:
    produced = produce(demo_message)
    assert not re.search(r"\b(19|20)\d\d-\d\d-\d\dT\d\d:\d\d", produced)  # no run times
    path = GOLDEN / name
    if update_golden:
        path.write_text(produced, encoding="utf-8")
    assert path.is_file(), f"{path} is missing: run pytest {__file__} --update-golden"
    assert produced == path.read_text(encoding="utf-8"), (
        f"{name} differs from what the templates produce now; if the change is intended, "
        "run `pytest tests/test_golden.py --update-golden` and review the diff"
    )

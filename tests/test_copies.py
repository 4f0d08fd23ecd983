"""Copies made by substitution (`mail/copies.py`) are byte for byte those of the standard
library's email package, for thousands of recipients chosen to break it.

Names mix encoded-word look-alikes, control characters, bidirectional overrides, quotes and
commas, long non-ASCII runs and line-length edges; the issue's own body has lines that start
with dots and personal fields at the start, middle and end of long lines.
"""

from __future__ import annotations

import random
from pathlib import Path

from newsletter.issue.render import render_issue
from newsletter.mail.headers import HeaderInjectionError, Recipient
from newsletter.mail.message import IssueParts, MessageFactory
from newsletter.mail.tokens import Tokens
from newsletter.transport.smtp import data_section
from tests.conftest import SECRET_KEY

from .sample_issue import sample_issue
from .test_message import NOW, make_settings

RECIPIENTS = 2000
PIECES = [
    "=?utf-8?q?Admin?=",
    "=?UTF-8?B?w6k=?=",
    "=?",
    "?=",
    "\u202eevil\u202c",
    "\u200f\u200e",
    "\x01\x07\x1b[31m",
    "\x7f",
    "\t",
    '"quoted"',
    "O'Brien, Pat",
    "<b>&amp;</b>",
    "back\\slash",
    "Zoë Müller-Lüdenscheidt",
    "Ŝŝ" * 40,
    "日本語の名前" * 8,
    "😀",
    "a" * 77,
    " ",
    ".",
    "=",
    "=3D",
    ";:@[]()",
    "",
]
LOCAL_PARTS = ["reader", "o'brien+news", "a.b-c", "x" * 60, "dot.", "_under_", "UPPER"]


def hostile_recipients(seed: int) -> list[Recipient]:
    rng = random.Random(seed)
    people = []
    for n in range(RECIPIENTS):
        name = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 6)))
        local = rng.choice(LOCAL_PARTS)
        people.append(Recipient(n + 1, f"{local}{n}@example.org", name))
    return people


def dotted(parts: IssueParts) -> IssueParts:
    """The issue with personal fields at line edges, in long lines, and dots that start lines."""
    extra = (
        "\n.NLP-NAME-0D1C\n..NLP-EMAIL-0D1C.\nNLP-NAME-0D1C " + "long words " * 30 + "NLP-NAME-0D1C"
        "\n." + "é" * 90 + "NLP-NAME-0D1C\n.\n"
    )
    return IssueParts(parts.issue_id, parts.week, parts.subject, parts.html, parts.text + extra)


def test_thousands_of_hostile_recipients_get_the_standard_librarys_bytes() -> None:
    settings = make_settings()
    issue = render_issue(sample_issue(), settings, [Path(__file__).parent.parent / "templates"])
    parts = dotted(IssueParts(7, "2024-W47", issue.subject, issue.html, issue.text))
    factory = MessageFactory(settings, Tokens((SECRET_KEY,), settings.list_id), parts)
    assert factory.uses_template
    compared = 0
    for recipient in hostile_recipients(seed=20241120):
        try:
            slow = factory.build_reference(recipient, NOW)
        except HeaderInjectionError:
            continue
        fast = factory.build(recipient, NOW)
        assert fast.message == slow.message, recipient
        assert (fast.sender, fast.recipient) == (slow.sender, slow.recipient)
        if fast.data is not None:
            assert fast.data == data_section(slow.message), recipient
        compared += 1
    assert compared > RECIPIENTS * 0.9

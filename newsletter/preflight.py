"""`newsletter check`: is this installation ready for its first send?

Each check looks at one thing a new magazine gets wrong before the first issue goes out
(plain-http links, a short signing key, a DKIM key that does not match its DNS record, a
relay without TLS or with a SIZE limit below the issue, an unmigrated database, templates
that do not compile or render past Gmail's clipping size, mail addresses that were never
chosen) and says what to do about it. Nothing is sent and nothing is stored; no DNS is
asked, so the DKIM record to publish is printed instead.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Protocol

import dkim
from dkim.crypto import UnparsableKeyError, parse_pem_private_key

from newsletter.config import MIN_SECRET_KEY_BYTES, Settings
from newsletter.errors import ConfigError, DeliveryError, NewsletterError
from newsletter.issue.build import Editing
from newsletter.issue.checks import GMAIL_CLIP_BYTES
from newsletter.issue.periods import Week
from newsletter.issue.render import IssueContent, Teaser, render_issue
from newsletter.issue.templates import unused_overrides
from newsletter.mail.message import DkimKey
from newsletter.transport.probe import probe
from newsletter.transport.smtp import SECURITY, parse_smtp_url

MIN_DKIM_BITS = 1024
RECOMMENDED_DKIM_BITS = 2048
_RSA_OID = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"  # 1.2.840.113549.1.1.1, rsaEncryption
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_WORDS = ("the", "ministers", "agreed", "on", "a", "plan", "that", "critics", "called", "timid")


class Level(Enum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    level: Level
    topic: str
    message: str


class Checked(Editing, Protocol):
    """What the checks need: settings, templates, and a way to compare the schema."""

    def check_schema(self) -> None: ...


def run_checks(app: Checked) -> list[Finding]:
    """Every finding, in the order an operator would fix them."""
    settings = app.settings
    findings = [
        _base_url(settings),
        _secret_keys(settings),
        *_dkim(settings),
        _mailto(settings),
        _bounce_domain(settings),
        _database(app),
    ]
    issue_bytes, rendered = _templates(app)
    findings += rendered
    findings += [
        Finding(Level.WARNING, "templates", w) for w in unused_overrides(app.templates_dirs)
    ]
    findings += _transport(settings, issue_bytes)
    return findings


def _base_url(settings: Settings) -> Finding:
    url = settings.newsletter.base_url
    if url.startswith("https://"):
        return Finding(Level.OK, "base_url", url)
    return Finding(
        Level.ERROR,
        "base_url",
        f"{url} is not https: unsubscribe links must be https; set [newsletter] base_url to "
        "the https address where your proxy serves `newsletter serve`",
    )


def _secret_keys(settings: Settings) -> Finding:
    """Present, that is: a key shorter than 32 bytes is refused when the settings load."""
    keys = settings.secrets.secret_keys
    if not keys:
        return Finding(
            Level.ERROR,
            "secret key",
            "NEWSLETTER_SECRET_KEY is not set; generate one with "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`",
        )
    return Finding(Level.OK, "secret key", f"{len(keys)} key(s) of {MIN_SECRET_KEY_BYTES}+ bytes")


def _dkim(settings: Settings) -> Iterator[Finding]:
    try:
        key = DkimKey.from_settings(settings)
    except ConfigError as exc:
        yield Finding(Level.ERROR, "dkim", str(exc))
        return
    if key is None:
        yield Finding(
            Level.WARNING,
            "dkim",
            "messages go out unsigned, which Gmail and Yahoo refuse from bulk senders; set "
            "NEWSLETTER_DKIM_PRIVATE_KEY with [delivery] dkim_selector and dkim_domain",
        )
        return
    try:
        numbers = parse_pem_private_key(key.private_key)
    except (UnparsableKeyError, ValueError):
        yield Finding(
            Level.ERROR, "dkim", "NEWSLETTER_DKIM_PRIVATE_KEY is not a PEM RSA private key"
        )
        return
    bits = int(numbers["modulus"]).bit_length()
    if bits < MIN_DKIM_BITS:
        yield Finding(
            Level.ERROR,
            "dkim",
            f"the key has {bits} bits; receivers ignore keys under {MIN_DKIM_BITS}: make a "
            f"{RECOMMENDED_DKIM_BITS}-bit key",
        )
        return
    if bits < RECOMMENDED_DKIM_BITS:
        yield Finding(
            Level.WARNING, "dkim", f"the key has {bits} bits; {RECOMMENDED_DKIM_BITS} is advised"
        )
    record = _dkim_record(int(numbers["modulus"]), int(numbers["publicExponent"]))
    name = f"{key.selector}._domainkey.{key.domain}"
    if not _signs_and_verifies(key, record):
        yield Finding(
            Level.ERROR, "dkim", f"a message signed with the key does not verify against {name}"
        )
        return
    sender = settings.newsletter.sender.rpartition("@")[2].strip(" >").lower()
    domain = key.domain.lower()
    if not (sender == domain or sender.endswith("." + domain) or domain.endswith("." + sender)):
        yield Finding(
            Level.WARNING,
            "dkim",
            f"d={key.domain} is not aligned with the From domain {sender}; DMARC will not "
            "pass on DKIM: sign with the From domain or its parent",
        )
    yield Finding(Level.OK, "dkim", f"{bits}-bit key; publish this TXT record at {name}: {record}")


def _dkim_record(modulus: int, exponent: int) -> str:
    """The DNS TXT value for an RSA public key: its SubjectPublicKeyInfo in base64."""
    rsa = _der(0x30, _der_integer(modulus) + _der_integer(exponent))
    algorithm = _der(0x30, _der(0x06, _RSA_OID) + _der(0x05, b""))
    info = _der(0x30, algorithm + _der(0x03, b"\0" + rsa))
    return f"v=DKIM1; k=rsa; p={base64.b64encode(info).decode('ascii')}"


def _der(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length, content."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _der_integer(value: int) -> bytes:
    """A non-negative INTEGER, with a leading zero byte when the top bit would read as a sign."""
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _signs_and_verifies(key: DkimKey, record: str) -> bool:
    """Sign a small message as a send would, then verify it against `record` as a receiver
    would after looking it up: proves the key, selector and domain belong together."""
    message = (
        f"From: check@{key.domain}\r\nTo: check@{key.domain}\r\nSubject: check\r\n"
        "Date: Mon, 18 Nov 2024 08:00:00 +0000\r\nMessage-ID: <check@example.org>\r\n"
        "MIME-Version: 1.0\r\n\r\nchecking the key\r\n"
    ).encode("ascii")
    expected = f"{key.selector}._domainkey.{key.domain}.".encode()

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        return record.encode("ascii") if name == expected else b""

    try:
        return bool(dkim.verify(key.sign(message), dnsfunc=lookup))
    except (dkim.DKIMException, UnicodeError, ValueError):
        return False


def _mailto(settings: Settings) -> Finding:
    address = settings.unsubscribe_mailto
    if settings.delivery.unsubscribe_mailto:
        return Finding(Level.OK, "unsubscribe mailto", f"{address} ([delivery] unsubscribe_mailto)")
    return Finding(
        Level.WARNING,
        "unsubscribe mailto",
        f"{address} by default: make sure mail to it reaches the mailbox `newsletter bounces "
        "process` reads, then set [delivery] unsubscribe_mailto to say so",
    )


def _bounce_domain(settings: Settings) -> Finding:
    bounce = settings.delivery.bounce_domain.lower()
    sender = settings.newsletter.sender.rpartition("@")[2].strip(" >").lower()
    if not bounce:
        return Finding(
            Level.WARNING,
            "bounce domain",
            "not set: bounces return to the From address and cannot be matched safely; set "
            f"[delivery] bounce_domain to a subdomain such as bounce.{sender}",
        )
    if bounce == sender:
        return Finding(
            Level.ERROR,
            "bounce domain",
            f"{bounce} is the From domain: bounces would land among readers' replies; use a "
            f"subdomain such as bounce.{sender} with its own MX",
        )
    return Finding(Level.OK, "bounce domain", f"bounces+TOKEN@{bounce}")


def _database(app: Checked) -> Finding:
    try:
        app.check_schema()
    except NewsletterError as exc:
        return Finding(Level.ERROR, "database", str(exc))
    return Finding(Level.OK, "database", "migrated to the current schema")


def _templates(app: Checked) -> tuple[int, list[Finding]]:
    """Render an issue as large as configured; its size in bytes and what was found."""
    settings = app.settings
    count = settings.feeds.max_articles
    try:
        rendered = render_issue(_synthetic_issue(settings), settings, app.templates_dirs)
    except NewsletterError as exc:
        return 0, [Finding(Level.ERROR, "templates", str(exc))]
    size = rendered.html_bytes
    shown = f"an issue of {count} articles is {size / 1024:.1f} KB of HTML"
    if size > GMAIL_CLIP_BYTES:
        return size, [
            Finding(
                Level.ERROR,
                "templates",
                f"{shown}, above the {GMAIL_CLIP_BYTES // 1024} KB at which Gmail clips it and "
                "hides the unsubscribe link: lower [feeds] max_articles or teaser_words",
            )
        ]
    text_bytes = len(rendered.text.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES * 0.9:
        return size + text_bytes, [
            Finding(
                Level.WARNING,
                "templates",
                f"{shown}, close to the {GMAIL_CLIP_BYTES // 1024} KB at which Gmail clips it: "
                "long teasers or more articles will cross it",
            )
        ]
    return size + text_bytes, [Finding(Level.OK, "templates", f"compile; {shown}")]


def _synthetic_issue(settings: Settings) -> IssueContent:
    """`max_articles` teasers of `teaser_words` words, every one with a photo and credit."""
    week = Week.parse("2024-W47")
    start = week.bounds(settings.newsletter.zone)[0]
    # English prose averages about six characters a word, with its space.
    words = " ".join(_WORDS[n % len(_WORDS)] for n in range(settings.feeds.teaser_words))
    sections = settings.feeds.sections or ("",)
    return IssueContent(
        week=week,
        teasers=tuple(
            Teaser(
                article_id=n,
                url=f"https://www.example.org/2024/11/a-long-headline-for-story-{n}",
                title=f"A headline of typical length for the week's story number {n}",
                kicker="Analysis",
                section=sections[n % len(sections)],
                authors=("Firstname Lastname", "Another Correspondent"),
                published_at=start + timedelta(hours=n),
                teaser_html=f"<p>{words}.</p>",
                image_url=f"https://images.example.org/2024/11/photo-{n}.jpg",
                image_alt="A photograph that goes with the story",
                image_credit="Photographer Name / Agency",
                featured=n == 0,
            )
            for n in range(settings.feeds.max_articles)
        ),
    )


def _transport(settings: Settings, issue_bytes: int) -> list[Finding]:
    url = settings.delivery.transport
    if url.startswith("outbox:"):
        return [
            Finding(
                Level.WARNING,
                "transport",
                f"{url}: messages are written to a folder, not sent; set [delivery] transport "
                "to your relay, e.g. smtp+starttls://user@smtp.example.org:587",
            )
        ]
    if url.split("://", 1)[0] not in SECURITY:
        return [Finding(Level.ERROR, "transport", f"{url!r} is not an smtp:// or outbox: URL")]
    try:
        config = parse_smtp_url(url, timeout=min(settings.delivery.timeout, 15.0))
        offer = probe(config)
    except (ConfigError, DeliveryError) as exc:
        return [Finding(Level.ERROR, "transport", str(exc))]
    where = config.description
    found: list[Finding] = []
    if offer.encrypted:
        how = "implicit TLS" if config.security == "tls" else "STARTTLS"
        found.append(Finding(Level.OK, "transport", f"{where}: {how}"))
    elif config.host in _LOOPBACK:
        found.append(Finding(Level.WARNING, "transport", f"{where}: unencrypted (local relay)"))
    else:
        advice = "use smtp+starttls://" if offer.starttls else "use smtps:// or another relay"
        found.append(
            Finding(Level.ERROR, "transport", f"{where}: unencrypted over the network; {advice}")
        )
    found += _extensions(where, offer.smtputf8, offer.pipelining)
    found.append(_size(where, offer.size, _message_bytes(issue_bytes)))
    return found


def _extensions(where: str, smtputf8: bool, pipelining: bool) -> list[Finding]:
    utf8 = Finding(Level.OK, "transport", f"{where}: SMTPUTF8")
    if not smtputf8:
        utf8 = Finding(
            Level.WARNING,
            "transport",
            f"{where}: no SMTPUTF8: readers with non-ASCII addresses cannot be sent to",
        )
    pipe = Finding(Level.OK, "transport", f"{where}: PIPELINING")
    if not pipelining:
        pipe = Finding(
            Level.WARNING,
            "transport",
            f"{where}: no PIPELINING: each message waits for more round trips; sending is slower",
        )
    return [utf8, pipe]


def _message_bytes(issue_bytes: int) -> int:
    """A generous bound on one message: both parts base64-encoded, plus the headers."""
    return issue_bytes * 4 // 3 + 16 * 1024


def _size(where: str, limit: int | None, needed: int) -> Finding:
    if limit is None or limit == 0:
        return Finding(Level.OK, "transport", f"{where}: no SIZE limit announced")
    if limit < needed:
        return Finding(
            Level.ERROR,
            "transport",
            f"{where}: SIZE {limit} bytes is below the {needed} a full issue may need; ask for "
            "a higher limit or lower [feeds] max_articles",
        )
    return Finding(Level.OK, "transport", f"{where}: SIZE {limit} bytes")

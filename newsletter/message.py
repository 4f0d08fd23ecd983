"""One issue's MIME message, built once and personalised per subscriber.

Building a message through `email.message.EmailMessage` costs milliseconds (header parsing,
quoted-printable encoding in pure Python); a list of 100,000 cannot afford that per copy. So
`MessageFactory` builds the message the slow, standard way once for a pair of sentinel
recipients, learns from the result which serialised bytes depend on the recipient (four
headers and the few body lines holding the personal fields) and, per subscriber, only
re-encodes those. `build_reference` keeps the slow way available, and the tests prove that the
two give the same bytes.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy as email_policy
from email import quoprimime
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import dkim

from .config import Settings
from .errors import ConfigError, NewsletterError
from .render import PERSONAL_MARKER, PersonalFields, personalise
from .tokens import Tokens

CRLF = "\r\n"
MAX_LINE = 78
LONG_LINE = 2000  # personal lines longer than this are re-encoded only around the fields
# Every header DKIM must cover (STANDARDS 17); those a message lacks are simply not signed.
DKIM_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"reply-to",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"feedback-id",
    b"precedence",
    b"auto-submitted",
)
_SIMPLE_NAME = re.compile(r"[A-Za-z0-9'-]+(?: [A-Za-z0-9'-]+)*")
_SIMPLE_ADDRESS = re.compile(r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9.-]+")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class HeaderInjectionError(NewsletterError):
    """A header value holds a line break: it would let its author add headers of their own."""

    hint = "remove line breaks from names, subjects and addresses"


class ListUnsubscribeHeader(UnstructuredHeader):
    """Folds only between its URIs: the default folder turns a long URL into encoded-words,
    which no mail client would follow."""

    name: str  # from BaseHeader, which the registry mixes in

    def fold(self, *, policy: Any) -> str:
        return fold_uri_list(self.name, str(self), policy.linesep)


def fold_uri_list(name: str, value: str, linesep: str = CRLF) -> str:
    uris = [part.strip() for part in value.split(",")]
    lines = [f"{name}: {uris[0]}"]
    for uri in uris[1:]:
        if len(lines[-1]) + 2 + len(uri) <= MAX_LINE:
            lines[-1] += f", {uri}"
        else:
            lines[-1] += ","
            lines.append(f" {uri}")
    return linesep.join(lines) + linesep


def _policy(utf8: bool = False) -> Any:
    registry = HeaderRegistry()
    # typeshed does not know that the registry mixes BaseHeader into every header class.
    registry.map_to_type("list-unsubscribe", ListUnsubscribeHeader)  # type: ignore[arg-type]
    return email_policy.SMTP.clone(header_factory=registry, utf8=utf8)


POLICY = _policy()
POLICY_UTF8 = _policy(utf8=True)


def check_header_value(field: str, value: str) -> str:
    if "\r" in value or "\n" in value or "\0" in value:
        raise HeaderInjectionError(f"the {field} contains a line break")
    return value


@dataclass(frozen=True)
class IssueParts:
    """What the message needs from an issue: plain values, no database row."""

    issue_id: int
    week: str
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class Recipient:
    """`subscriber_id` is None for a `--test` address that is not on the list."""

    subscriber_id: int | None
    email: str
    name: str = ""


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipient: str
    message: bytes


@dataclass(frozen=True)
class DkimKey:
    selector: str
    domain: str
    private_key: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimKey | None:
        path = settings.secrets.dkim_private_key_path
        if not path:
            return None
        try:
            key = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"NEWSLETTER_DKIM_PRIVATE_KEY: cannot read {path}: {exc.strerror}"
            ) from None
        return cls(settings.delivery.dkim_selector, settings.delivery.dkim_domain, key)

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature prepended; headers must be final by now."""
        signature = dkim.sign(
            message,
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self.private_key,
            include_headers=[h for h in DKIM_HEADERS if _has_header(message, h)],
        )
        return bytes(signature) + message


def _has_header(message: bytes, name: bytes) -> bool:
    head = message.partition(b"\r\n\r\n")[0].lower()
    return head.startswith(name + b":") or b"\r\n" + name + b":" in head


class MessageFactory:
    """The messages of one issue, for any number of recipients."""

    def __init__(
        self,
        settings: Settings,
        tokens: Tokens,
        issue: IssueParts,
        dkim_key: DkimKey | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.issue = issue
        self.dkim_key = dkim_key
        news = settings.newsletter
        check_header_value("subject", issue.subject)
        check_header_value("sender", news.sender)
        check_header_value("reply-to address", news.reply_to)
        check_header_value("newsletter name", news.name)
        self.from_address = _single_address(news.sender)
        self.domain = self.from_address.rpartition("@")[2]
        self.base_url = news.base_url.rstrip("/")
        self.boundary = "=_nl_" + _digest(f"{settings.list_id}:{issue.issue_id}:boundary")[:24]
        self._fast = _FastTemplate.learn(self)

    @property
    def uses_template(self) -> bool:
        """Whether copies are made by substitution (the slow way is the fallback)."""
        return self._fast is not None

    def personal_fields(self, recipient: Recipient, token: str) -> PersonalFields:
        return PersonalFields(
            unsubscribe_url=f"{self.base_url}/u/{token}",
            email=recipient.email,
            name=recipient.name,
        )

    def token(self, recipient: Recipient) -> str:
        """The unsubscribe token; a test address off the list gets one that names nobody."""
        return self.tokens.unsubscribe(recipient.subscriber_id or 0)

    def message_id(self, recipient: Recipient) -> str:
        """Stable per issue and subscriber (a resent copy is recognisably the same message);
        a test address off the list gets a fresh one each time."""
        if recipient.subscriber_id is None:
            return make_msgid("nl", domain=self.domain)
        key = f"{self.settings.list_id}:{self.issue.issue_id}:{recipient.subscriber_id}"
        return f"<nl.{self.issue.issue_id}.{_digest(key)[:20]}@{self.domain}>"

    def list_unsubscribe(self, token: str) -> str:
        return (
            f"<{self.base_url}/u/{token}>, "
            f"<mailto:unsubscribe@{self.domain}?subject=unsubscribe-{token}>"
        )

    def envelope_sender(self, recipient: Recipient) -> str:
        bounce_domain = self.settings.delivery.bounce_domain
        if bounce_domain and recipient.subscriber_id is not None:
            return self.tokens.verp_sender(
                recipient.subscriber_id, self.issue.issue_id, bounce_domain
            )
        return self.from_address

    def build(self, recipient: Recipient, now: datetime) -> Envelope:
        """The recipient's message, by substitution into the learned template when possible."""
        check_header_value("recipient name", recipient.name)
        check_header_value("recipient address", recipient.email)
        if self._fast is None or not recipient.email.isascii():
            return self.build_reference(recipient, now)
        return self._envelope(recipient, self._fast.render(self, recipient, now))

    def build_reference(self, recipient: Recipient, now: datetime) -> Envelope:
        """The recipient's message built entirely by the standard library."""
        check_header_value("recipient name", recipient.name)
        check_header_value("recipient address", recipient.email)
        token = self.token(recipient)
        fields = self.personal_fields(recipient, token)
        return self._envelope(
            recipient,
            self._reference_bytes(
                recipient,
                token,
                now,
                text=personalise(self.issue.text, fields, html=False),
                html=personalise(self.issue.html, fields, html=True),
            ),
        )

    def _envelope(self, recipient: Recipient, message: bytes) -> Envelope:
        if self.dkim_key is not None:
            message = self.dkim_key.sign(message)
        return Envelope(self.envelope_sender(recipient), recipient.email, message)

    def _reference_message(
        self, recipient: Recipient, token: str, now: datetime, *, text: str, html: str
    ) -> EmailMessage:
        utf8 = not recipient.email.isascii()
        msg = EmailMessage(policy=POLICY_UTF8 if utf8 else POLICY)
        news = self.settings.newsletter
        msg["From"] = news.sender
        msg["To"] = _to_value(recipient)
        msg["Subject"] = self.issue.subject
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = self.message_id(recipient)
        if news.reply_to:
            msg["Reply-To"] = news.reply_to
        msg["List-Id"] = f"{news.name} <{self.settings.list_id}>"
        msg["List-Unsubscribe"] = self.list_unsubscribe(token)
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["Precedence"] = "bulk"
        msg["Auto-Submitted"] = "auto-generated"
        msg["Feedback-ID"] = (
            f"{self.issue.week}:{self.settings.list_id}:newsletter:"
            f"{self.settings.delivery.feedback_sender_id}"
        )
        msg.set_content(text, charset="utf-8", cte="quoted-printable")
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        msg.set_boundary(self.boundary)
        return msg

    def _reference_bytes(
        self, recipient: Recipient, token: str, now: datetime, *, text: str, html: str
    ) -> bytes:
        message = self._reference_message(recipient, token, now, text=text, html=html)
        return message.as_bytes()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _single_address(sender: str) -> str:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    addresses = msg["From"].addresses
    if len(addresses) != 1 or not addresses[0].addr_spec:
        raise ConfigError(f"newsletter.from must hold exactly one address, not {sender!r}")
    return str(addresses[0].addr_spec)


def _lines(text: str) -> list[str]:
    """Lines as `bytes.splitlines` sees them after UTF-8 encoding (which is what the email
    package does before quoted-printable encoding)."""
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _qp_line(line: str) -> bytes:
    encoded = quoprimime.body_encode(line.encode("utf-8").decode("latin-1"), MAX_LINE, CRLF)
    return encoded.encode("ascii")


def _qp_escape(text: str) -> str:
    """The quoted-printable form of `text` before line wrapping (a trailing blank is left
    as is: only the end of a whole line gets special treatment)."""
    raw = text.encode("utf-8").decode("latin-1")
    return str(quoprimime.body_encode(raw + "x", sys.maxsize))[:-1]


class _LongLine:
    """A long line with personal fields in it, encoded exactly as `quoprimime.body_encode`
    would encode the personalised line, without re-encoding its static stretches.

    The wrapping of a stretch depends only on the offset at which the first soft line
    starts inside it, so each stretch is wrapped once per offset seen (at most 78) and the
    per-subscriber work is limited to the few soft lines that touch a personal field.
    """

    WIDTH = MAX_LINE - 1  # characters per soft line before the "="
    MARGIN = MAX_LINE + 1  # a soft line decided entirely inside a stretch

    def __init__(self, line: str, html: bool) -> None:
        found = list(PERSONAL_MARKER.finditer(line))
        edges = [0, *(edge for match in found for edge in match.span()), len(line)]
        self.statics = [_qp_escape(line[a:b]) for a, b in zip(edges[::2], edges[1::2], strict=True)]
        self.markers = [match.group(0) for match in found]
        self.html = html
        self._cache: dict[tuple[int, int], tuple[str, int]] = {}

    def encode(self, fields: PersonalFields) -> str:
        parts = [self.statics[0]]
        begins = [0]
        for marker, static in zip(self.markers, self.statics[1:], strict=True):
            parts.append(_qp_escape(personalise(marker, fields, html=self.html)))
            begins.append(sum(map(len, parts)))
            parts.append(static)
        line = "".join(parts)
        out: list[str] = []
        start = 0
        laststart = len(line) - 1 - MAX_LINE
        segment = 0
        while start <= laststart:
            while segment < len(self.statics) and start >= begins[segment] + len(
                self.statics[segment]
            ):
                segment += 1
            if (
                segment < len(self.statics)
                and begins[segment] <= start
                and start + self.MARGIN <= begins[segment] + len(self.statics[segment])
            ):
                block, exit_at = self._stretch(segment, start - begins[segment])
                if block:
                    out.append(block)
                start = begins[segment] + exit_at
                continue
            start = _wrap_step(line, start, out)
        out.append(_line_end(line, start, laststart))
        return CRLF.join(out)

    def _stretch(self, segment: int, offset: int) -> tuple[str, int]:
        key = (segment, offset)
        if key not in self._cache:
            text = self.statics[segment]
            out: list[str] = []
            start = offset
            while start + self.MARGIN <= len(text):
                start = _wrap_step(text, start, out)
            self._cache[key] = (CRLF.join(out), start)
        return self._cache[key]


def _wrap_step(line: str, start: int, out: list[str]) -> int:
    """One soft line of `quoprimime.body_encode`, never splitting an escape sequence."""
    stop = start + MAX_LINE - 1
    if line[stop - 2] == "=":
        out.append(line[start : stop - 1])
        return stop - 2
    if line[stop - 1] == "=":
        out.append(line[start:stop])
        return stop - 1
    out.append(line[start:stop] + "=")
    return stop


def _line_end(line: str, start: int, laststart: int) -> str:
    if line and line[-1] in " \t":
        room = start - laststart
        if room >= 3:
            return line[start:-1] + f"={ord(line[-1]):02X}"
        if room == 2:
            return line[start:-1] + line[-1] + "=" + CRLF
        return line[start:-1] + "=" + CRLF + f"={ord(line[-1]):02X}"
    return line[start:]


# Two recipients that differ in every personal field: lines that differ between their
# messages are the personal ones.
_SENTINELS = (
    Recipient(subscriber_id=None, email="first.sentinel@sentinel.invalid", name="First Sentinel"),
    Recipient(subscriber_id=None, email="second.sentinel@sentinel.invalid", name="Other Person"),
)
_SENTINEL_URLS = ("https://sentinel.invalid/u/AAAA", "https://sentinel.invalid/u/BBBBBBBB")


@dataclass(frozen=True)
class _Part:
    """One body part: encoded static runs, with the personal lines' templates between them."""

    static: tuple[bytes, ...]
    personal: tuple[str | _LongLine, ...]
    html: bool

    @classmethod
    def learn(cls, template: str, html: bool) -> _Part | None:
        source = _lines(template)
        renders = [
            _lines(
                personalise(
                    template,
                    PersonalFields(unsubscribe_url=url, email=r.email, name=r.name),
                    html=html,
                )
            )
            for r, url in zip(_SENTINELS, _SENTINEL_URLS, strict=True)
        ]
        if any(len(r) != len(source) for r in renders):
            return None
        static: list[bytes] = []
        personal: list[str | _LongLine] = []
        run: list[bytes] = []
        for index, line in enumerate(source):
            if renders[0][index] == renders[1][index]:
                run.append(_qp_line(renders[0][index]) + b"\r\n")
                continue
            static.append(b"".join(run))
            run = []
            personal.append(_LongLine(line, html) if len(line) > LONG_LINE else line)
        static.append(b"".join(run))
        part = cls(tuple(static), tuple(personal), html)
        for recipient, url, render in zip(_SENTINELS, _SENTINEL_URLS, renders, strict=True):
            fields = PersonalFields(unsubscribe_url=url, email=recipient.email, name=recipient.name)
            expected = b"".join(_qp_line(line) + b"\r\n" for line in render)
            if part.encode(fields) != expected:
                return None
        return part

    def encode(self, fields: PersonalFields) -> bytes:
        pieces = [self.static[0]]
        for line, after in zip(self.personal, self.static[1:], strict=True):
            if isinstance(line, _LongLine):
                pieces.append(line.encode(fields).encode("ascii") + b"\r\n")
            else:
                pieces.append(_qp_line(personalise(line, fields, html=self.html)) + b"\r\n")
            pieces.append(after)
        return b"".join(pieces)


@dataclass(frozen=True)
class _FastTemplate:
    """The serialised message cut around everything that depends on the recipient."""

    before_to: bytes
    between_to_and_date: bytes
    between_date_and_id: bytes
    between_id_and_unsubscribe: bytes
    before_text: bytes
    text: _Part
    between_parts: bytes
    html: _Part
    after_html: bytes

    @classmethod
    def learn(cls, factory: MessageFactory) -> _FastTemplate | None:
        text = _Part.learn(factory.issue.text, html=False)
        html = _Part.learn(factory.issue.html, html=True)
        if text is None or html is None:
            return None
        recipient = Recipient(subscriber_id=0, email="fast.sentinel@sentinel.invalid")
        now = datetime.fromisoformat("2000-01-01T00:00:00+00:00")
        token = factory.token(recipient)
        fields = factory.personal_fields(recipient, token)
        text_body = personalise(factory.issue.text, fields, html=False)
        html_body = personalise(factory.issue.html, fields, html=True)
        whole = factory._reference_bytes(recipient, token, now, text=text_body, html=html_body)
        personal = [
            _to_header(recipient),
            _date_header(now),
            f"Message-ID: {factory.message_id(recipient)}{CRLF}".encode("ascii"),
            fold_uri_list("List-Unsubscribe", factory.list_unsubscribe(token)).encode(),
            text.encode(fields),
            html.encode(fields),
        ]
        pieces = _split_around(whole, personal)
        if pieces is None:
            return None
        template = cls(
            pieces[0], pieces[1], pieces[2], pieces[3], pieces[4], text, pieces[5], html, pieces[6]
        )
        if template.render(factory, recipient, now) != whole:
            return None
        return template

    def render(self, factory: MessageFactory, recipient: Recipient, now: datetime) -> bytes:
        token = factory.token(recipient)
        fields = factory.personal_fields(recipient, token)
        return b"".join(
            (
                self.before_to,
                _to_header(recipient),
                self.between_to_and_date,
                _date_header(now),
                self.between_date_and_id,
                f"Message-ID: {factory.message_id(recipient)}{CRLF}".encode("ascii"),
                self.between_id_and_unsubscribe,
                fold_uri_list("List-Unsubscribe", factory.list_unsubscribe(token)).encode(),
                self.before_text,
                self.text.encode(fields),
                self.between_parts,
                self.html.encode(fields),
                self.after_html,
            )
        )


def _split_around(whole: bytes, pieces: Sequence[bytes]) -> list[bytes] | None:
    """`whole` cut at each of `pieces` in order: the len(pieces)+1 runs between them."""
    runs: list[bytes] = []
    position = 0
    for piece in pieces:
        found = whole.find(piece, position)
        if found < 0:
            return None
        runs.append(whole[position:found])
        position = found + len(piece)
    runs.append(whole[position:])
    return runs


def _to_header(recipient: Recipient) -> bytes:
    if (not recipient.name or _SIMPLE_NAME.fullmatch(recipient.name)) and _SIMPLE_ADDRESS.fullmatch(
        recipient.email
    ):
        value = f"{recipient.name} <{recipient.email}>" if recipient.name else recipient.email
        line = f"To: {value}{CRLF}"
        if len(line) <= MAX_LINE + 2:
            return line.encode("ascii")
    address = Address(display_name=recipient.name, addr_spec=recipient.email)
    header = POLICY.header_factory("To", address)
    return str(header.fold(policy=POLICY)).encode("ascii")


def _to_value(recipient: Recipient) -> Address | str:
    """`Address` refuses a non-ASCII local part (fine over SMTPUTF8), so that one is quoted
    by hand and written as UTF-8 by the SMTPUTF8 policy."""
    if recipient.email.isascii():
        return Address(display_name=recipient.name, addr_spec=recipient.email)
    if not recipient.name:
        return recipient.email
    name = recipient.name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{name}" <{recipient.email}>'


def _date_header(now: datetime) -> bytes:
    return f"Date: {format_datetime(now)}{CRLF}".encode("ascii")

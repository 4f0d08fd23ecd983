"""One issue's MIME message, built once and personalised per subscriber.

Building a message through `email.message.EmailMessage` costs milliseconds (header parsing,
quoted-printable encoding in pure Python); a list of 100,000 cannot afford that per copy. So
`MessageFactory` builds the message the slow, standard way once for a pair of sentinel
recipients, learns from the result which serialised bytes depend on the recipient (four
headers and the few body lines holding the personal fields) and, per subscriber, only
re-encodes those (`copies.py`). `build_reference` keeps the slow way available, and the
tests prove that the two give the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import dkim
from email_validator import EmailNotValidError, validate_email

from newsletter.config import Settings
from newsletter.errors import ConfigError, DeliveryError
from newsletter.issue.personal import PersonalFields, personalise
from newsletter.mail.copies import FastTemplate
from newsletter.mail.headers import (
    POLICY,
    POLICY_UTF8,
    Recipient,
    check_header_value,
    serialise,
    to_value,
)
from newsletter.mail.tokens import Tokens
from newsletter.tracking.tokens import ClickTokens
from newsletter.untrusted import person_name

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


@dataclass(frozen=True)
class IssueParts:
    """What the message needs from an issue: plain values, no database row."""

    issue_id: int
    week: str
    subject: str
    html: str
    text: str

    def linking(self, archive: str, draft: str) -> IssueParts:
        """These parts with "View in browser" pointing at the signed draft page instead of
        the archive, which shows an issue only once it is sent (for test copies)."""
        return replace(
            self, html=self.html.replace(archive, draft), text=self.text.replace(archive, draft)
        )


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipient: str
    message: bytes
    data: bytes | None = None  # `message` as SMTP's DATA section, when it came for free


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
        utf8_relay: Callable[[], bool] | None = None,
    ) -> None:
        """`utf8_relay` says whether the relay takes UTF-8 addresses (SMTPUTF8); asked only
        for a recipient whose address needs it. Without it, every relay is assumed to."""
        self.settings = settings
        self.tokens = tokens
        # The preferences page is one per reader, whichever newsletter the message is from.
        self.preferences_tokens = Tokens(
            settings.secrets.secret_keys, settings.for_newsletter(None).list_id
        )
        self.issue = issue
        self.dkim_key = dkim_key
        self.utf8_relay = utf8_relay
        news = settings.newsletter
        check_header_value("subject", issue.subject)
        check_header_value("sender", news.sender)
        check_header_value("reply-to address", news.reply_to)
        check_header_value("newsletter name", news.name)
        self.from_address = _single_address(news.sender)
        self.domain = self.from_address.rpartition("@")[2]
        self.base_url = news.base_url.rstrip("/")
        self.clicks = (
            ClickTokens.from_settings(settings)
            if settings.tracking.clicks == "per-reader"
            else None
        )
        self.boundary = "=_nl_" + _digest(f"{settings.list_id}:{issue.issue_id}:boundary")[:24]
        self._fast = FastTemplate.learn(self)

    def variant(self, html: str, text: str) -> MessageFactory:
        """The same issue's messages with other parts: a reader's copy of only some sections.

        Headers, tokens and the signing key are the issue's, so a copy differs only in body.
        """
        parts = replace(self.issue, html=html, text=text)
        return MessageFactory(self.settings, self.tokens, parts, self.dkim_key, self.utf8_relay)

    @property
    def uses_template(self) -> bool:
        """Whether copies are made by substitution (the slow way is the fallback)."""
        return self._fast is not None

    def personal_fields(self, recipient: Recipient, token: str) -> PersonalFields:
        return PersonalFields(
            unsubscribe_url=f"{self.base_url}/u/{token}",
            email=recipient.email,
            name=recipient.name,
            reader=self.clicks.reader(self.issue.week, recipient.subscriber_id or 0)
            if self.clicks is not None
            else "",
            preferences_url=(
                f"{self.base_url}/p/"
                f"{self.preferences_tokens.preferences(recipient.subscriber_id or 0)}"
            ),
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
            f"<mailto:{self.settings.unsubscribe_mailto}?subject=unsubscribe-{token}>"
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
        recipient = self._addressable(_checked(recipient))
        if self._fast is None or not recipient.email.isascii():
            return self.build_reference(recipient, now)
        if self.dkim_key is not None:
            return self._envelope(recipient, self._fast.render(self, recipient, now))
        message, data = self._fast.render_for_smtp(self, recipient, now)
        return Envelope(self.envelope_sender(recipient), recipient.email, message, data)

    def _addressable(self, recipient: Recipient) -> Recipient:
        """`recipient` with the domain in its ASCII (punycode) form when the relay cannot
        take UTF-8 addresses. Domains are stored in Unicode, even when typed as `xn--`, and
        the ASCII form reaches them through any relay; a non-ASCII local part has no such
        form and is left for the transport to refuse."""
        if recipient.email.isascii() or self.utf8_relay is None:
            return recipient
        try:
            ascii_email = validate_email(recipient.email, check_deliverability=False).ascii_email
        except EmailNotValidError:
            return recipient
        if ascii_email is None:
            return recipient
        try:
            if self.utf8_relay():
                return recipient
        except DeliveryError:
            pass  # the relay cannot be asked now: the ASCII form suits it either way
        return replace(recipient, email=ascii_email)

    def build_reference(self, recipient: Recipient, now: datetime) -> Envelope:
        """The recipient's message built entirely by the standard library."""
        recipient = _checked(recipient)
        token = self.token(recipient)
        fields = self.personal_fields(recipient, token)
        return self._envelope(
            recipient,
            self.reference_bytes(
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
        msg["To"] = to_value(recipient.email, recipient.name)
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

    def reference_bytes(
        self, recipient: Recipient, token: str, now: datetime, *, text: str, html: str
    ) -> bytes:
        return serialise(self._reference_message(recipient, token, now, text=text, html=html))


def _checked(recipient: Recipient) -> Recipient:
    """The recipient with the name cleaned as at every intake: names stored before that, or
    written to the database by other means, are only text for people too."""
    check_header_value("recipient address", recipient.email)
    name = person_name(recipient.name)
    return recipient if name == recipient.name else replace(recipient, name=name)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _single_address(sender: str) -> str:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    addresses = msg["From"].addresses
    if len(addresses) != 1 or not addresses[0].addr_spec:
        raise ConfigError(f"newsletter.from must hold exactly one address, not {sender!r}")
    return str(addresses[0].addr_spec)

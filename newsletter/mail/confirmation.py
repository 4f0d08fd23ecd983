"""The double opt-in email: one link to confirm, and nothing that could pass for marketing.

It is a transactional message to someone who is not yet on the list, so it carries no
List-Unsubscribe and no round-up content; ignoring it is how a reader declines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid

from jinja2 import Environment

from newsletter.config import Settings
from newsletter.mail.headers import POLICY, POLICY_UTF8, check_header_value, serialise, to_value
from newsletter.untrusted import person_name


@dataclass(frozen=True)
class Confirmation:
    envelope_from: str
    recipient: str
    message: bytes


def sender_address(settings: Settings) -> str:
    """The bare address of `[newsletter] from`, used as the envelope sender."""
    parsed = getaddresses([settings.newsletter.sender])
    return parsed[0][1] if parsed else ""


def build(
    settings: Settings,
    templates: Environment,
    *,
    email: str,
    name: str,
    confirm_url: str,
    now: datetime,
    expires_hours: int,
) -> Confirmation:
    """The finished message; CR or LF in any header value is refused, never folded in, and the
    name is cleaned as at every intake, whatever the caller passes."""
    name = person_name(name)
    check_header_value("newsletter name", settings.newsletter.name)
    check_header_value("sender", settings.newsletter.sender)
    context = {
        "newsletter": settings.newsletter,
        "name": name,
        "confirm_url": confirm_url,
        "expires_hours": expires_hours,
    }
    sender = sender_address(settings)
    message = EmailMessage(policy=POLICY if email.isascii() else POLICY_UTF8)
    message["From"] = settings.newsletter.sender
    message["To"] = to_value(email, name)
    if settings.newsletter.reply_to:
        message["Reply-To"] = settings.newsletter.reply_to
    message["Subject"] = f"Please confirm your subscription to {settings.newsletter.name}"
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        templates.get_template("email/confirm.txt.j2").render(context),
        charset="utf-8",
        cte="quoted-printable",
    )
    message.add_alternative(
        templates.get_template("email/confirm.html.j2").render(context),
        subtype="html",
        charset="utf-8",
        cte="quoted-printable",
    )
    return Confirmation(envelope_from=sender, recipient=email, message=serialise(message))

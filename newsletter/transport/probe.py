"""Ask an SMTP relay what it offers, without sending anything: for `newsletter check`.

One connection, EHLO, STARTTLS when the URL asks for it (then EHLO again, since a relay may
offer more, or less, once the channel is encrypted), and QUIT. What matters before a send:
whether the channel can be encrypted, whether non-ASCII addresses can be sent (SMTPUTF8),
whether commands can be pipelined, and the largest message the relay will take (SIZE).
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass

from newsletter.errors import DeliveryError
from newsletter.transport.smtp import SmtpConfig


@dataclass(frozen=True)
class Offer:
    """The relay's EHLO answer, after STARTTLS when the URL asked for it."""

    encrypted: bool
    starttls: bool  # offered before encryption (a `smtps://` relay is encrypted from the start)
    smtputf8: bool
    pipelining: bool
    size: int | None  # the SIZE limit in bytes; None when not announced, 0 for no limit


def probe(config: SmtpConfig) -> Offer:
    """Connect, greet and leave; a relay that cannot be reached or refuses TLS raises."""
    context = config.ssl_context or ssl.create_default_context()
    try:
        if config.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                config.host,
                config.port,
                timeout=config.timeout,
                context=context,
                local_hostname=config.local_hostname,
            )
        else:
            smtp = smtplib.SMTP(
                config.host,
                config.port,
                timeout=config.timeout,
                local_hostname=config.local_hostname,
            )
        with smtp:
            smtp.ehlo()
            starttls = smtp.has_extn("starttls")
            encrypted = config.security == "tls"
            if config.security == "starttls":
                if not starttls:
                    raise DeliveryError(f"{config.description} does not offer STARTTLS")
                smtp.starttls(context=context)
                smtp.ehlo()
                encrypted = True
            return Offer(
                encrypted=encrypted,
                starttls=starttls,
                smtputf8=smtp.has_extn("smtputf8"),
                pipelining=smtp.has_extn("pipelining"),
                size=_size(smtp.esmtp_features.get("size")),
            )
    except (OSError, smtplib.SMTPException) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, socket.timeout):
            reason = "no answer in time"
        raise DeliveryError(f"{config.description}: {reason}") from None


def _size(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.isdigit() else 0

"""How a delivery attempt can fail, in the terms the ledger acts on.

Every SMTP reply is mapped onto these kinds by `classify`, so the delivery engine never looks
at reply codes itself: retry later, fail the one recipient (and maybe mark them bounced),
stop the whole send, or record that nobody can know whether the message arrived.
"""

from __future__ import annotations

import re

from newsletter.errors import DeliveryError

_ENHANCED = re.compile(rb"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


class TransientFailure(DeliveryError):
    """Try again later (4xx, a dropped connection before the message was accepted)."""


class PermanentFailure(DeliveryError):
    """This recipient cannot be reached (5xx on the recipient); `bounce` if the address is bad."""

    def __init__(self, message: str, *, bounce: bool = False) -> None:
        super().__init__(message)
        self.bounce = bounce


class PolicyFailure(DeliveryError):
    """The server refuses us, not the recipient (5.7.x, AUTH): stop the whole send."""

    hint = "fix the sending account or policy, then run `newsletter send` again to resume"


class UncertainOutcome(DeliveryError):
    """The message may or may not have been accepted (a timeout after end-of-data)."""


class ServerUnavailable(TransientFailure):
    """No session could be opened; no recipient is to blame, so none is charged an attempt."""


def classify(code: int, reply: bytes | str, stage: str) -> DeliveryError:
    """The failure kind for a non-success reply: 4xx retry, 5.1.x and 5.2.1 bounce, 5.7.x
    and refusals of the sender stop the send, any other 5xx fails the one recipient."""
    if isinstance(reply, str):
        reply = reply.encode("utf-8", "replace")
    text = f"{code} {reply.decode('utf-8', 'replace')}".strip()
    enhanced = _ENHANCED.match(reply)
    if 400 <= code < 500:
        return TransientFailure(text)
    if enhanced and enhanced[2] == b"7":
        return PolicyFailure(f"the server refused the send: {text}")
    if enhanced and (enhanced[2] == b"1" or (enhanced[2], enhanced[3]) == (b"2", b"1")):
        return PermanentFailure(text, bounce=True)
    if stage in ("MAIL", "AUTH"):
        return PolicyFailure(f"the server refused the sender: {text}")
    if code >= 500:
        return PermanentFailure(text)
    return TransientFailure(f"unexpected reply to {stage}: {text}")

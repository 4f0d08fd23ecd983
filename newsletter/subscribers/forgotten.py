"""Addresses erased at their owner's request, remembered only as keyed hashes.

An erased address must not come back by mistake through an old CSV file or a typed
`subscribers add`; a hash is enough to recognise it, and without the secret key it cannot be
turned back into the address. Every configured key is tried, so rotating keys forgets
nothing. The subscribe form's double opt-in is not blocked: confirming is the person's own
explicit request.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.db.models import ForgottenAddress


def digest(secret: str, email: str) -> str:
    return hmac.new(secret.encode(), f"forgotten:{email}".encode(), hashlib.sha256).hexdigest()


def forgotten_among(session: Session, keys: Sequence[str], emails: Iterable[str]) -> set[str]:
    """Those of the (normalised) `emails` that were erased."""
    by_digest = {digest(key, email): email for email in emails for key in keys}
    if not by_digest:
        return set()
    found = session.scalars(
        select(ForgottenAddress.digest).where(ForgottenAddress.digest.in_(list(by_digest)))
    )
    return {by_digest[d] for d in found}

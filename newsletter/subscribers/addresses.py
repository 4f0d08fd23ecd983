"""What an address and a name may be, at every door a subscriber comes through.

An address is the subscriber's key, so it is validated (syntax only, never DNS) and written
in one canonical form; a name is plain text for people, whatever a stranger typed.
"""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import InputError
from newsletter.untrusted import person_name

MAX_NAME = 200
MAX_ADDRESS = 254  # RFC 5321's limit on a path, less the angle brackets
MAX_LOCAL = 64
# A local part that is a plain RFC 5322 dot-atom in ASCII: nothing to normalise in it.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def normalise_email(raw: str) -> str:
    """Validate syntax (no DNS) and return the canonical, lower-cased form used as the key."""
    text = raw.strip()
    if not text:
        raise InputError("the address is empty")
    if any(ch in text for ch in "\r\n\0"):
        raise InputError("the address contains a line break or NUL")
    local, at, domain = text.rpartition("@")
    if (
        at
        and len(text) <= MAX_ADDRESS
        and len(local) <= MAX_LOCAL
        and _PLAIN_LOCAL.fullmatch(local)
    ):
        checked = _checked_domain(domain)
        if checked is not None:
            return f"{local}@{checked}".lower()
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InputError(f"{text[:80]!r} is not a valid address: {exc}") from None
    return result.normalized.lower()


@lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> str | None:
    """The domain as email-validator normalises it, or None where it refuses it.

    Validating the domain dominated importing a large list (a tenth of a millisecond per
    address), yet a list has few distinct domains: each is checked once. A plain dot-atom
    local part needs no normalising, so such an address is the same as email-validator
    would make it; everything else takes the full check, and tests hold the two equal.
    """
    try:
        return validate_email(f"postmaster@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


def clean_name(raw: str) -> str:
    """A name as it arrives at any door (CSV import, `subscribers add`, the subscribe form),
    made plain text for people; the message builder cleans it the same way again."""
    name = person_name(raw)
    if len(name) > MAX_NAME:
        raise InputError(f"the name is longer than {MAX_NAME} characters")
    return name

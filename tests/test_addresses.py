"""An address is the subscriber's key: the quick path for plain addresses must give exactly
what email-validator gives, or refuse exactly what it refuses."""

from __future__ import annotations

import string

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.errors import InputError
from newsletter.subscribers.addresses import normalise_email

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
DOMAINS = [
    "example.org",
    "EXAMPLE.COM",
    "mail.example.co.uk",
    "xn--bcher-kva.example",
    "bücher.example",
    "-bad.example",
    "bad-.example",
    "no-tld",
    "localhost",
    "example.invalid",
    "a" * 64 + ".example",
    "exa_mple.org",
    "example..org",
    "[127.0.0.1]",
    "ex ample.org",
]
local_parts = st.one_of(
    st.text(alphabet=ATEXT + ".", min_size=0, max_size=70),
    st.text(min_size=1, max_size=20),
)


def _reference(text: str) -> str | None:
    try:
        return validate_email(text, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def _ours(text: str) -> str | None:
    try:
        return normalise_email(text)
    except InputError:
        return None


@settings(max_examples=1500, deadline=None)
@given(local=local_parts, domain=st.sampled_from(DOMAINS))
def test_normalising_agrees_with_email_validator(local: str, domain: str) -> None:
    text = f"{local}@{domain}"
    if text.strip() != text or any(ch in text for ch in "\r\n\0"):
        return  # stripped or refused before either check runs
    assert _ours(text) == _reference(text)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Reader@Example.ORG", "reader@example.org"),
        ("first.last+tag@xn--bcher-kva.example", "first.last+tag@bücher.example"),
        ("o'brien@example.org", "o'brien@example.org"),
    ],
)
def test_plain_addresses_are_normalised(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw", ["a..b@example.org", ".a@example.org", "a.@example.org", "a@-bad.example", "a@no-tld"]
)
def test_malformed_addresses_are_refused(raw: str) -> None:
    with pytest.raises(InputError):
        normalise_email(raw)

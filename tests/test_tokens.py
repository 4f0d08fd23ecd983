"""Tokens keep itsdangerous's format, so links in mail already sent go on working."""

from __future__ import annotations

import hashlib

import pytest
from itsdangerous import URLSafeSerializer

from newsletter.mail.tokens import InvalidToken, Tokens

KEYS = ("newest-key-" + "n" * 32, "older-key-" + "o" * 32)
LIST_ID = "weekly.example.org"


def stock(purpose: str, keys: tuple[str, ...] = KEYS) -> URLSafeSerializer:
    """itsdangerous's own serializer with our salt and digest: what earlier releases used."""
    return URLSafeSerializer(
        list(reversed(keys)),
        salt=f"{purpose}:{LIST_ID}",
        signer_kwargs={"digest_method": hashlib.sha256},
    )


@pytest.mark.parametrize("subscriber_id", [0, 1, 42, 123_456, 999_999_999])
def test_unsubscribe_tokens_are_those_itsdangerous_makes(subscriber_id: int) -> None:
    tokens = Tokens(KEYS, LIST_ID)
    token = tokens.unsubscribe(subscriber_id)
    assert token == stock("unsubscribe").dumps(subscriber_id)
    assert stock("unsubscribe").loads(token) == subscriber_id
    assert tokens.read_unsubscribe(token) == subscriber_id


def test_a_compressed_token_still_reads() -> None:
    """itsdangerous compresses a payload when that makes it shorter; such tokens still load."""
    subscriber_id = 10**40 - 1
    token = stock("unsubscribe").dumps(subscriber_id)
    assert token.startswith(".")  # the compressed form
    assert Tokens(KEYS, LIST_ID).read_unsubscribe(token) == subscriber_id


def test_bounce_tokens_read_both_ways() -> None:
    tokens = Tokens(KEYS, LIST_ID)
    assert stock("bounce").loads(tokens.bounce(7, 3)) == [7, 3]
    assert tokens.read_bounce(stock("bounce").dumps([7, 3])) == (7, 3)


def test_a_token_signed_with_a_retired_key_is_refused() -> None:
    token = stock("unsubscribe", keys=("retired-key-" + "r" * 32,)).dumps(5)
    with pytest.raises(InvalidToken):
        Tokens(KEYS, LIST_ID).read_unsubscribe(token)


def test_tokens_signed_with_an_older_key_still_read() -> None:
    token = stock("unsubscribe", keys=(KEYS[1],)).dumps(5)
    assert Tokens(KEYS, LIST_ID).read_unsubscribe(token) == 5

"""Signed tokens for unsubscribe, preferences, confirm, draft and bounce addresses.

A token names a subscriber by id, never by address, and is bound to one list and one purpose
by its salt, so an unsubscribe token cannot confirm anyone and a token for one list means
nothing to another. Signatures are HMAC-SHA256 and checked in constant time by itsdangerous.
Unsubscribe and bounce tokens never expire (a reader may act on an old issue); confirmation
tokens do. Several keys may be configured, newest first: the first signs, all verify, so a key
can be rotated without breaking links already sent. Each newsletter is a list of its own,
so `Keyring` holds every newsletter's tokens and tells which one a link belongs to.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from itsdangerous import (
    BadData,
    Serializer,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_encode

from newsletter.config import Settings, check_secret_keys
from newsletter.errors import NewsletterError

T = TypeVar("T")


class InvalidToken(NewsletterError):
    """A token that was altered, truncated, signed with an unknown key, or has expired."""


_SIGNER = {"digest_method": hashlib.sha256}
VERP_PREFIX = "bounces+"
MAX_NONCE = 64


class _UncompressedSerializer(URLSafeSerializer):
    """URL-safe tokens whose payload is never compressed.

    Ours hold a number or two, which zlib practically never shortens (below ten characters it
    cannot), yet trying set up and dropped a whole zlib stream for every message of a send,
    about 7% of the send's processor time when measured. Loading is unchanged, so a
    compressed token still reads, and a token made here reads with any URLSafeSerializer of
    the same keys and salt.
    """

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))


@dataclass(frozen=True)
class Tokens:
    secret_keys: tuple[str, ...]
    list_id: str
    # A send signs a token per message; building the serializer each time cost more than
    # the signature.
    _serializers: dict[str, _UncompressedSerializer] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        check_secret_keys(self.secret_keys)

    def _plain(self, purpose: str) -> _UncompressedSerializer:
        serializer = self._serializers.get(purpose)
        if serializer is None:
            # itsdangerous signs with the last key and accepts any; ours are newest first.
            serializer = _UncompressedSerializer(
                list(reversed(self.secret_keys)),
                salt=f"{purpose}:{self.list_id}",
                signer_kwargs=_SIGNER,
            )
            self._serializers[purpose] = serializer
        return serializer

    def _timed(self, purpose: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(
            list(reversed(self.secret_keys)),
            salt=f"{purpose}:{self.list_id}",
            signer_kwargs=_SIGNER,
        )

    def unsubscribe(self, subscriber_id: int) -> str:
        return str(self._plain("unsubscribe").dumps(subscriber_id))

    def read_unsubscribe(self, token: str) -> int:
        return _int(self._load(self._plain("unsubscribe"), token))

    def preferences(self, subscriber_id: int) -> str:
        """The reader's preferences page: never expires, dies with the key that signed it."""
        return str(self._plain("preferences").dumps(subscriber_id))

    def read_preferences(self, token: str) -> int:
        return _int(self._load(self._plain("preferences"), token))

    def bounce(self, subscriber_id: int, issue_id: int) -> str:
        """For the VERP envelope sender: names the recipient and issue of a returned message."""
        return str(self._plain("bounce").dumps([subscriber_id, issue_id]))

    def read_bounce(self, token: str) -> tuple[int, int]:
        value = self._load(self._plain("bounce"), token)
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int) for v in value)
        ):
            raise InvalidToken("malformed bounce token")
        return value[0], value[1]

    def verp_sender(self, subscriber_id: int, issue_id: int, domain: str) -> str:
        """The per-recipient envelope sender, e.g. `bounces+TOKEN@bounce.example.org`."""
        return f"{VERP_PREFIX}{self.bounce(subscriber_id, issue_id)}@{domain}"

    def read_verp(self, address: str) -> tuple[int, int] | None:
        """The (subscriber id, issue id) named by a VERP address, or None if it is not ours."""
        local = address.strip().strip("<>").rpartition("@")[0]
        if not local.startswith(VERP_PREFIX):
            return None
        try:
            return self.read_bounce(local.removeprefix(VERP_PREFIX))
        except InvalidToken:
            return None

    def confirm(self, subscriber_id: int, issued_at: datetime) -> str:
        return _sign_at(self._timed("confirm"), subscriber_id, issued_at)

    def read_confirm(self, token: str, now: datetime, max_age: timedelta) -> int:
        return self._read_timed("confirm", "confirmation", token, now, max_age)

    def draft(self, issue_id: int, issued_at: datetime) -> str:
        """For the "View in browser" link of test copies: the issue as it stands, before it
        is sent and shows in the archive."""
        return _sign_at(self._timed("draft"), issue_id, issued_at)

    def read_draft(self, token: str, now: datetime, max_age: timedelta) -> int:
        return self._read_timed("draft", "draft", token, now, max_age)

    def _read_timed(
        self, purpose: str, what: str, token: str, now: datetime, max_age: timedelta
    ) -> int:
        """The id a timed token of `purpose` names, if it is ours and not older than
        `max_age`; `what` names the link in the refusal."""
        try:
            value, signed_at = self._timed(purpose).loads(token, return_timestamp=True)
        except BadData:
            raise InvalidToken(f"this {what} link is not valid") from None
        if now - signed_at > max_age:
            raise InvalidToken(f"this {what} link has expired")
        return _int(value)

    def form_challenge(self, issued_at: datetime) -> str:
        """Goes in every subscribe form we serve: proves the form came from us, and when.

        A random nonce makes each served form's challenge its own, so that it can be spent
        once (two readers served in the same second must not share one).
        """
        return _sign_at(self._timed("subscribe-form"), secrets.token_urlsafe(16), issued_at)

    def read_form_challenge(self, token: str) -> tuple[str, datetime]:
        """The nonce of the form carrying `token`, and when that form was served."""
        try:
            nonce, signed_at = self._timed("subscribe-form").loads(token, return_timestamp=True)
        except BadData:
            raise InvalidToken("this form is not one we served") from None
        if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_NONCE:
            raise InvalidToken("this form is not one we served")
        return nonce, cast(datetime, signed_at)

    @staticmethod
    def _load(serializer: URLSafeSerializer, token: str) -> object:
        try:
            return serializer.loads(token)
        except BadData:
            raise InvalidToken("this link is not valid") from None


def _sign_at(serializer: URLSafeTimedSerializer, value: object, at: datetime) -> str:
    """Sign with a timestamp from our clock, not the machine's, so tests can age tokens."""
    signer = serializer.make_signer(serializer.salt)
    assert isinstance(signer, TimestampSigner)
    signer.get_timestamp = lambda: int(at.timestamp())  # type: ignore[method-assign]
    return signer.sign(serializer.dump_payload(value)).decode("ascii")


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidToken("malformed token")
    return value


class Keyring:
    """Every newsletter's tokens, the default newsletter's first.

    Links of the preferences page and the subscribe form's challenge are the default
    newsletter's whichever message or page they came from; every other link is signed by
    the newsletter it concerns.
    """

    def __init__(self, settings: Settings) -> None:
        keys = settings.secrets.secret_keys
        self.by_slug = {
            slug: Tokens(keys, settings.for_newsletter(slug).list_id) for slug in settings.slugs
        }

    @property
    def default(self) -> Tokens:
        return next(iter(self.by_slug.values()))

    def read(self, reader: Callable[[Tokens], T]) -> tuple[str, T]:
        """The newsletter whose tokens `reader` accepts, and what it read.

        Where none does, the most telling refusal is raised: an expired link of one
        newsletter says it expired, rather than that every other newsletter disowns it.
        """
        refusals: list[InvalidToken] = []
        for slug, tokens in self.by_slug.items():
            try:
                return slug, reader(tokens)
            except InvalidToken as error:
                refusals.append(error)
        raise next((e for e in refusals if "expired" in e.message), refusals[0])

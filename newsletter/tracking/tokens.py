"""Signed tokens for the `/c/` (click) and `/o/` (open) links.

An article token names an issue (by week) and an article; it is signed once per render and
shared by every copy. In `per-reader` mode a second, per-reader token names the issue and
the subscriber, so a send signs one token per message rather than one per link; the two must
name the same issue. Each kind has its own salt, so no token of one kind (nor an unsubscribe
token) passes for another. Payloads are short plain text, signed with HMAC-SHA256; several
keys may be configured, newest first: the first signs, all verify.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from itsdangerous import BadSignature, Signer

from newsletter.config import Settings
from newsletter.errors import ConfigError, NewsletterError

_WEEK = re.compile(r"\d{4}-W\d{2}")


class InvalidClick(NewsletterError):
    """A click or open token that was altered, truncated or signed with an unknown key."""


@dataclass(frozen=True)
class ClickTokens:
    secret_keys: tuple[str, ...]
    list_id: str
    _signers: dict[str, Signer] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> ClickTokens:
        if not settings.secrets.secret_keys:
            raise ConfigError(
                "NEWSLETTER_SECRET_KEY is not set; tracked links must be signed",
                hint="set it, or set [tracking] clicks = off",
            )
        return cls(settings.secrets.secret_keys, settings.list_id)

    def _signer(self, purpose: str) -> Signer:
        signer = self._signers.get(purpose)
        if signer is None:
            # itsdangerous signs with the last key and accepts any; ours are newest first.
            signer = Signer(
                list(reversed(self.secret_keys)),
                salt=f"{purpose}:{self.list_id}",
                digest_method=hashlib.sha256,
            )
            self._signers[purpose] = signer
        return signer

    def _sign(self, purpose: str, week: str, number: int) -> str:
        return self._signer(purpose).sign(f"{week}.{number}").decode("ascii")

    def _read(self, purpose: str, token: str) -> tuple[str, int]:
        try:
            value = self._signer(purpose).unsign(token).decode("ascii")
        except (BadSignature, UnicodeError):
            raise InvalidClick("this link is not valid") from None
        week, _, number = value.partition(".")
        if not _WEEK.fullmatch(week) or not number.isdigit():
            raise InvalidClick("malformed link")
        return week, int(number)

    def article(self, week: str, article_id: int) -> str:
        return self._sign("click", week, article_id)

    def read_article(self, token: str) -> tuple[str, int]:
        """The (week, article id) a click token names."""
        return self._read("click", token)

    def reader(self, week: str, subscriber_id: int) -> str:
        return self._sign("click-reader", week, subscriber_id)

    def read_reader(self, token: str) -> tuple[str, int]:
        """The (week, subscriber id) a per-reader token names (0: a test copy, nobody)."""
        return self._read("click-reader", token)

    def opened(self, week: str) -> str:
        return self._sign("open", week, 0)

    def read_opened(self, token: str) -> str:
        return self._read("open", token)[0]

"""The errors a user can cause, each carrying a hint on what to do next.

The command line turns `UsageError` into click's usage error (exit 2) and every other
`NewsletterError` into one line on stderr (exit 1); anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Something the operator can fix; `hint` says how."""

    hint: str = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(NewsletterError):
    """The command was called with values that cannot work (exit status 2)."""


class ConfigError(NewsletterError):
    hint = "check the configuration file or the NEWSLETTER_* environment variables"


class DatabaseError(NewsletterError):
    hint = "check [database] url and that the database server is reachable"


class SchemaOutdatedError(DatabaseError):
    hint = "run `newsletter init` to create or upgrade the database"


class InputError(NewsletterError):
    """A file or value supplied by the operator cannot be read."""


class FeedError(NewsletterError):
    hint = "check the feed's address and that it serves RSS, Atom or JSON Feed"


class NotFoundError(NewsletterError):
    pass


class StateError(NewsletterError):
    """The action does not fit the current state (an issue already sent, a send running)."""


class RenderError(NewsletterError):
    hint = "check the templates named in the message"


class DeliveryError(NewsletterError):
    hint = "check [delivery] transport and the mail server; the send can be resumed"

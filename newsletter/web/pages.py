"""What every reader-facing page shares: the templates, each newsletter's look and tokens,
the error pages, and the same-origin check of the forms that change a reader's choices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import flask
from jinja2 import Environment

from newsletter.app import App
from newsletter.config import NewsletterSettings
from newsletter.mail.tokens import InvalidToken, Keyring

ERROR_TEXT = {
    400: "The request could not be understood. Please use the button on the page.",
    403: "This form can only be sent from its own page. Please open the link from the email "
    "again and use the button there.",
    404: "There is nothing at this address.",
    405: "This page cannot be used that way.",
    413: "The request was too large.",
    410: "An old confirmation link cannot subscribe it again. Please use the form instead.",
    429: "Too many sign-up requests have come from here recently. Please try again later.",
    503: "We could not send the confirmation email just now. Please try again in a few minutes.",
}
# What a browser says about where a form was sent from (Fetch Metadata); a POST from a page
# of our own is "same-origin".
OWN_PAGE = frozenset({"same-origin"})


class Site:
    """The parts of the web application that every page needs."""

    def __init__(self, app: App, templates: Environment) -> None:
        self.app = app
        self.keys = Keyring(app.settings)
        self.templates = templates

    @property
    def default(self) -> NewsletterSettings:
        return self.app.settings.default_newsletter

    def newsletter(self, slug: str | None) -> NewsletterSettings:
        """The newsletter `slug` names (None: the default one); 404 for one that does not
        exist, so a made-up slug in a URL is a page that is not there."""
        if slug is None:
            return self.default
        if slug not in self.app.settings.slugs:
            flask.abort(404)
        return self.app.settings.for_newsletter(slug).newsletter

    def names(self, slugs: Sequence[str]) -> list[str]:
        """The names of the newsletters `slugs` that the settings still describe."""
        known = self.app.settings.slugs
        return [self.app.settings.for_newsletter(s).newsletter.name for s in slugs if s in known]

    def page(
        self,
        name: str,
        status: int = 200,
        *,
        newsletter: NewsletterSettings | None = None,
        **context: Any,
    ) -> flask.Response:
        html = self.templates.get_template(f"web/{name}.html.j2").render(
            newsletter=newsletter or self.default,
            root=flask.request.script_root,
            **context,
        )
        return flask.Response(html, status=status, mimetype="text/html")

    def error(self, status: int, title: str, message: str = "") -> flask.Response:
        return self.page("error", status, title=title, message=message or ERROR_TEXT[status])

    def not_valid(self, error: InvalidToken, status: int = 404) -> flask.Response:
        if "expired" in error.message:
            hours = self.app.settings.web.confirm_hours
            advice = f"Confirmation links work for {hours} hours. Subscribe again for a new one."
        else:
            advice = "It may have been cut short when it was copied: open it again from the email."
        title = error.message[:1].upper() + error.message[1:]
        return self.page("error", status, title=title, message=advice)

    def from_own_page(self) -> bool:
        """Whether a POST came from a page of this site, as far as the browser says.

        The signed token in the URL is what authorises a change; this check adds that
        another site cannot make a reader's browser send one (OWASP's CSRF advice for a
        preference centre). Browsers that send neither Fetch Metadata nor an Origin (or
        send `Origin: null`, which our no-referrer policy asks of them) are let through on
        the token alone. RFC 8058's one-click POST must never be checked this way: a mail
        provider sends it from its own servers.
        """
        request = flask.request
        fetched_from = request.headers.get("Sec-Fetch-Site")
        if fetched_from is not None:
            return fetched_from in OWN_PAGE
        origin = request.headers.get("Origin", "null")
        if origin == "null":
            return True
        ours = {_origin(self.default.base_url), _origin(request.host_url)}
        return _origin(origin) in ours


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()

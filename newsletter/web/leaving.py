"""`/u/TOKEN`: leave the newsletter a message came from, from its page or in one click.

The token says which newsletter signed it, and only that newsletter is left: a reader of
two newsletters who unsubscribes from one message keeps the other. A GET only shows the
page (link scanners follow every link); RFC 8058's one-click POST needs nothing but the URL.
"""

from __future__ import annotations

import flask

from newsletter.mail.tokens import InvalidToken
from newsletter.subscribers import membership
from newsletter.web.pages import Site


class Leaving:
    def __init__(self, site: Site) -> None:
        self.site = site

    def _page(self, name: str, reader: membership.Reader) -> flask.Response:
        others = self.site.names([s for s in reader.joined if s != reader.newsletter])
        return self.site.page(
            name,
            newsletter=self.site.newsletter(reader.newsletter),
            reader=reader,
            others=others if reader.status.value != "bounced" else [],
            preferences=self.site.keys.default.preferences(reader.id),
        )

    def page(self, token: str) -> flask.Response:
        try:
            reader = membership.look_up(self.site.app, self.site.keys, token)
        except InvalidToken as error:
            return self.site.not_valid(error)
        return self._page("unsubscribe", reader)

    def action(self, token: str) -> flask.Response:
        """RFC 8058 one-click (a bare 200, no page) or the landing page's own buttons."""
        app, keys = self.site.app, self.site.keys
        form = flask.request.form
        one_click = form.get("List-Unsubscribe") == "One-Click"
        action = form.get("action", "")
        try:
            if one_click:
                membership.unsubscribe(app, keys, token, source="one-click")
                return flask.Response("Unsubscribed.\n", mimetype="text/plain")
            if action == "unsubscribe":
                reader = membership.unsubscribe(app, keys, token, source="page")
                return self._page("unsubscribed", reader)
            if action == "resubscribe":
                reader = membership.resubscribe(app, keys, token)
                return self._page("resubscribed", reader)
        except InvalidToken as error:
            if one_click:
                return flask.Response("This link is not valid.\n", 404, mimetype="text/plain")
            return self.site.not_valid(error)
        return self.site.error(400, "Nothing to do")

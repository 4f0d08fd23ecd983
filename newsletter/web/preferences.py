"""`/p/TOKEN`: the reader's preferences page, linked from every message.

A GET shows and changes nothing (link scanners open every link). A POST saves: it needs
the signed token of the URL and must come from the page itself (`Site.from_own_page`).
The rules, and every check of what was posted, are in `subscribers.preferences`.
"""

from __future__ import annotations

import flask

from newsletter.errors import InputError
from newsletter.mail.tokens import InvalidToken
from newsletter.subscribers import preferences
from newsletter.web.pages import Site

SECTIONS_PREFIX = "sections-"


class PreferencesPage:
    def __init__(self, site: Site) -> None:
        self.site = site

    def _subscriber_id(self, token: str) -> int:
        return self.site.keys.default.read_preferences(token)

    def _show(self, token: str, shown: preferences.Preferences, notice: str = "") -> flask.Response:
        return self.site.page(
            "preferences", reader=shown, token=token, notice=notice, prefix=SECTIONS_PREFIX
        )

    def _refused(self, token: str, error: InputError) -> flask.Response:
        message = f"{error.message[:1].upper()}{error.message[1:]}."
        if error.hint:
            message = f"{message} {error.hint[:1].upper()}{error.hint[1:]}."
        return self.site.page(
            "refused", 400, title="Nothing was changed", message=message, token=token
        )

    def get(self, token: str) -> flask.Response:
        try:
            shown = preferences.show(self.site.app, self._subscriber_id(token))
        except InvalidToken as error:
            return self.site.not_valid(error, 400)
        except InputError as error:
            return self._refused("", error)
        return self._show(token, shown)

    def post(self, token: str) -> flask.Response:
        if not self.site.from_own_page():
            return self.site.error(403, "Please use the page itself")
        action = flask.request.form.get("action")
        if action not in ("save", "leave"):
            return self.site.error(400, "Nothing to do")
        try:
            subscriber_id = self._subscriber_id(token)
            if action == "leave":
                shown = preferences.leave_everything(self.site.app, subscriber_id)
            else:
                shown = preferences.save(self.site.app, subscriber_id, _wanted())
        except InvalidToken as error:
            return self.site.not_valid(error, 400)
        except preferences.NotOurs as error:
            return self._refused("", error)
        except InputError as error:
            return self._refused(token, error)
        return self._show(token, shown, "left" if action == "leave" else "saved")


def _wanted() -> preferences.Wanted:
    form = flask.request.form
    return preferences.Wanted(
        offered=form.getlist("offered"),
        joined=form.getlist("newsletter"),
        sections={
            key.removeprefix(SECTIONS_PREFIX): form.getlist(key)
            for key in form
            if key.startswith(SECTIONS_PREFIX)
        },
        name=form.get("name"),
    )

"""`/c/TOKEN` (a tracked link) and `/o/TOKEN.gif` (the open-counting image).

Both answer at once and never touch a subscription. A link that is not ours (forged,
truncated, or mixing two issues' tokens) answers 404 and counts nothing.
"""

from __future__ import annotations

import base64
from datetime import datetime

import flask
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.subscribers import throttle
from newsletter.tracking import clicks, opens
from newsletter.tracking.recorder import Recorder
from newsletter.tracking.tokens import ClickTokens

# The smallest transparent GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


class TrackingViews:
    def __init__(self, app: App) -> None:
        self.app = app
        keys = app.settings.secrets.secret_keys
        # Each newsletter signs its own links; the one whose signer reads a link sent it.
        self.tokens = {
            slug: ClickTokens(keys, app.settings.for_newsletter(slug).list_id)
            for slug in app.settings.slugs
        }
        self.secret = app.settings.secrets.secret_keys[0]
        self.links = clicks.Links()
        self.recorder = Recorder(app, self.limiter)

    def limiter(self, session: Session, limit: clicks.Limit, value: str, *, now: datetime) -> bool:
        shared = throttle.Limit(limit.name, limit.hits, limit.window)
        key = throttle.key_for(self.secret, shared, value)
        return throttle.hit(session, key, shared, now=now).allowed

    def click(self, token: str, reader: str = "") -> flask.Response:
        request = flask.request
        found = clicks.resolve(
            self.app,
            self.tokens,
            self.links,
            clicks.Click(
                token=token,
                reader=reader,
                method=request.method,
                user_agent=request.headers.get("User-Agent", ""),
                ip=request.remote_addr or "",
            ),
        )
        if found is None:
            flask.abort(404)
        target, pending = found
        if pending is not None:
            self.recorder.record(pending)
        response = flask.Response(status=302)
        response.headers["Location"] = target
        return response

    def opened(self, token: str) -> flask.Response:
        counted = flask.request.method == "GET"
        if not opens.record(self.app, self.tokens, token, count=counted):
            flask.abort(404)
        return flask.Response(PIXEL, mimetype="image/gif")


def register(web: flask.Flask, app: App) -> None:
    """Add the routes; `web.extensions["newsletter.clicks"]` is the click recorder, whose
    `flush` waits for the clicks queued so far to be counted."""
    views = TrackingViews(app)
    web.extensions["newsletter.clicks"] = views.recorder
    for rule in ("/c/<token>", "/c/<token>/", "/c/<token>/<reader>"):
        web.add_url_rule(rule, view_func=views.click, methods=["GET"])
    web.add_url_rule("/o/<token>.gif", view_func=views.opened, methods=["GET"])

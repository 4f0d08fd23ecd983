"""The reader-facing web endpoints: unsubscribe, subscribe, confirm, and the archive.

Only HTTP lives here; the rules are in `membership`. Nothing sets a cookie and there is no
session: a signed token in the URL is the only authority, which is what lets the one-click
POST from a mail provider work with no context at all (RFC 8058). A GET never changes state,
because link scanners and prefetchers follow every link in a message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import flask
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from waitress import serve as waitress_serve
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import RequestRedirect

from newsletter.app import App
from newsletter.config import load_settings
from newsletter.db.models import Issue, IssueStatus
from newsletter.errors import DeliveryError, InputError, UsageError
from newsletter.issue.contrast import palette
from newsletter.issue.periods import Week
from newsletter.mail.tokens import InvalidToken, Tokens
from newsletter.subscribers import membership
from newsletter.web import tracking

log = logging.getLogger(__name__)

PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' https:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# The archived issue is email HTML: inline styles and remote images, but still no scripts.
ISSUE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; font-src https:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
MAX_REQUEST_BYTES = 64 * 1024
# Test copies' "View in browser" link; an editor checks a draft within days, not months.
DRAFT_LINK_AGE = timedelta(days=30)
HONEYPOT_FIELD = "website"
CHALLENGE_FIELD = "form"
# What the reverse proxies in front say about the reader: the headers ProxyFix reads too.
FORWARDED_HEADERS = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"})


def template_environment(app: App) -> Environment:
    """Operator templates first, then the packaged ones; HTML is always autoescaped."""
    return Environment(
        loader=ChoiceLoader([FileSystemLoader(str(path)) for path in app.templates_dirs]),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2")),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def create_app(app: App | None = None) -> flask.Flask:
    """The WSGI application; with no argument it reads settings from the environment.

    It refuses to start without NEWSLETTER_SECRET_KEY or on an out-of-date database, so a
    misconfigured server fails at start-up rather than on a reader's click.
    """
    settings = app.settings if app is not None else load_settings()
    tokens = Tokens(settings.secrets.secret_keys, settings.list_id)
    if app is None:
        app = App.create(settings)
    app.check_schema()
    views = Views(app, tokens, template_environment(app))
    web = flask.Flask(__name__, static_folder=None)
    web.config.update(MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES, MAX_FORM_MEMORY_SIZE=MAX_REQUEST_BYTES)
    web.before_request(views.public_redirect)
    web.after_request(_security_headers)
    web.register_error_handler(HTTPException, views.http_error)
    web.add_url_rule("/", view_func=views.subscribe_form, methods=["GET"])
    web.add_url_rule("/subscribe", view_func=views.subscribe_form, methods=["GET"])
    web.add_url_rule("/subscribe", view_func=views.subscribe, methods=["POST"])
    web.add_url_rule("/style.css", view_func=views.style, methods=["GET"])
    web.add_url_rule("/favicon.ico", view_func=_no_icon, methods=["GET"])
    web.add_url_rule("/u/<token>", view_func=views.unsubscribe_page, methods=["GET"])
    web.add_url_rule("/u/<token>", view_func=views.unsubscribe_action, methods=["POST"])
    web.add_url_rule("/confirm/<token>", view_func=views.confirm_page, methods=["GET"])
    web.add_url_rule("/confirm/<token>", view_func=views.confirm, methods=["POST"])
    web.add_url_rule("/archive/", view_func=views.archive, methods=["GET"])
    web.add_url_rule("/archive/<week>", view_func=views.archived_issue, methods=["GET"])
    web.add_url_rule("/archive/draft/<token>", view_func=views.draft_issue, methods=["GET"])
    tracking.register(web, app)
    web.extensions["newsletter"] = app
    hops = settings.web.proxy_hops
    if hops:
        # Behind a reverse proxy every request comes from the proxy; trust exactly as many
        # X-Forwarded-* hops as the operator configured, so rate limits see the reader.
        web.wsgi_app = ProxyFix(web.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    return web


def _no_icon() -> flask.Response:
    """Browsers ask for it on every page; an empty answer keeps error logs meaningful."""
    response = flask.Response(status=204)
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


def _security_headers(response: flask.Response) -> flask.Response:
    response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.pop("Set-Cookie", None)
    return response


class Views:
    """One method per endpoint; each translates HTTP into one `membership` call and back."""

    def __init__(self, app: App, tokens: Tokens, templates: Environment) -> None:
        self.app = app
        self.tokens = tokens
        self.templates = templates
        self.site = app.settings.newsletter

    def page(self, name: str, status: int = 200, **context: Any) -> flask.Response:
        html = self.templates.get_template(f"web/{name}.html.j2").render(
            newsletter=self.site, root=flask.request.script_root, **context
        )
        return flask.Response(html, status=status, mimetype="text/html")

    def public_redirect(self) -> flask.Response | None:
        """Send a URL Werkzeug would correct (`/archive` to `/archive/`, doubled slashes) to
        the same place under `base_url`.

        Werkzeug names the host from the request's Host header, which whoever sends the
        request chooses; an absolute URL we give out must name our own site.
        """
        redirect = flask.request.routing_exception
        if not isinstance(redirect, RequestRedirect):
            return None
        target = urlsplit(redirect.new_url)
        path = target.path.removeprefix(flask.request.script_root)
        query = f"?{target.query}" if target.query else ""
        response = flask.Response(status=redirect.code)
        response.headers["Location"] = f"{self.site.base_url.rstrip('/')}{path}{query}"
        return response

    def not_valid(self, error: InvalidToken) -> flask.Response:
        if "expired" in error.message:
            hours = self.app.settings.web.confirm_hours
            advice = f"Confirmation links work for {hours} hours. Subscribe again for a new one."
        else:
            advice = "It may have been cut short when it was copied: open it again from the email."
        title = error.message[:1].upper() + error.message[1:]
        return self.page("error", 404, title=title, message=advice)

    def http_error(self, error: HTTPException) -> flask.Response:
        status = error.code or 500
        return self.page("error", status, title=error.name, message=_ERROR_TEXT.get(status, ""))

    def style(self) -> flask.Response:
        css = self.templates.get_template("web/style.css.j2").render(
            newsletter=self.site, colours=palette(self.site)
        )
        response = flask.Response(css, mimetype="text/css")
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    def unsubscribe_page(self, token: str) -> flask.Response:
        try:
            reader = membership.look_up(self.app, self.tokens, token)
        except InvalidToken as error:
            return self.not_valid(error)
        return self.page("unsubscribe", reader=reader)

    def unsubscribe_action(self, token: str) -> flask.Response:
        """RFC 8058 one-click (a bare 200, no page) or the landing page's own buttons."""
        form = flask.request.form
        one_click = form.get("List-Unsubscribe") == "One-Click"
        action = form.get("action", "")
        try:
            if one_click:
                membership.unsubscribe(self.app, self.tokens, token, source="one-click")
                return flask.Response("Unsubscribed.\n", mimetype="text/plain")
            if action == "unsubscribe":
                reader = membership.unsubscribe(self.app, self.tokens, token, source="page")
                return self.page("unsubscribed", reader=reader)
            if action == "resubscribe":
                reader = membership.resubscribe(self.app, self.tokens, token)
                return self.page("resubscribed", reader=reader)
        except InvalidToken as error:
            if one_click:
                return flask.Response("This link is not valid.\n", 404, mimetype="text/plain")
            return self.not_valid(error)
        return self.page("error", 400, title="Nothing to do", message=_ERROR_TEXT[400])

    def subscribe_form(self) -> flask.Response:
        return self._form(200, form={})

    def _form(
        self, status: int, *, form: dict[str, str], error: str = "", step: bool = False
    ) -> flask.Response:
        return self.page(
            "subscribe",
            status,
            form=form,
            error=error,
            step=step,
            honeypot=HONEYPOT_FIELD,
            challenge_field=CHALLENGE_FIELD,
            challenge=self.tokens.form_challenge(self.app.clock.now()),
        )

    def subscribe(self) -> flask.Response:
        form = flask.request.form
        try:
            result = membership.request_subscription(
                self.app,
                self.tokens,
                self.templates,
                email=form.get("email", ""),
                name=form.get("name", ""),
                ip=flask.request.remote_addr or "",
                honeypot=form.get(HONEYPOT_FIELD, ""),
                challenge=form.get(CHALLENGE_FIELD, ""),
            )
        except InputError as error:
            return self._form(400, form=_echo(form), error=error.message)
        except DeliveryError as error:
            log.error("confirmation not sent: %s", error)
            return self.page("error", 503, title="Please try again later", message=_ERROR_TEXT[503])
        if result.answer is membership.Answer.UNCHALLENGED:
            return self._form(200, form=_echo(form), step=True)
        if result.answer is not membership.Answer.ACCEPTED:
            response = self.page("error", 429, title="Too many requests", message=_ERROR_TEXT[429])
            response.headers["Retry-After"] = str(int(result.retry_after.total_seconds()) + 1)
            return response
        return self.page("subscribed", confirm_hours=self.app.settings.web.confirm_hours)

    def confirm_page(self, token: str) -> flask.Response:
        try:
            reader = membership.check_confirmation(self.app, self.tokens, token)
        except InvalidToken as error:
            return self.not_valid(error)
        return self.page("confirm", reader=reader)

    def confirm(self, token: str) -> flask.Response:
        try:
            reader = membership.confirm(self.app, self.tokens, token)
        except InvalidToken as error:
            return self.not_valid(error)
        if reader.status.suppressed:
            return self.page(
                "error", 404, title="This address has left the list", message=_ERROR_TEXT[410]
            )
        return self.page("confirmed", reader=reader)

    def archive(self) -> flask.Response:
        with self.app.transaction() as session:
            issues = session.execute(
                select(Issue.week, Issue.subject)
                .where(
                    Issue.newsletter == self.app.settings.newsletter.slug,
                    Issue.status == IssueStatus.SENT,
                )
                .order_by(Issue.week.desc())
            ).all()
        entries = [
            {"week": week, "label": Week.parse(week).label(), "subject": subject}
            for week, subject in issues
        ]
        return self.page("archive", issues=entries)

    def archived_issue(self, week: str) -> flask.Response:
        """The issue's web version, which the renderer builds without any personal field."""
        try:
            wanted = str(Week.parse(week))
        except UsageError:
            flask.abort(404)
        with self.app.transaction() as session:
            html = session.scalar(
                select(Issue.web_html).where(
                    Issue.newsletter == self.app.settings.newsletter.slug,
                    Issue.week == wanted,
                    Issue.status == IssueStatus.SENT,
                )
            )
        if not html:
            flask.abort(404)
        response = flask.Response(html, mimetype="text/html")
        response.headers["Content-Security-Policy"] = ISSUE_CSP
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    def draft_issue(self, token: str) -> flask.Response:
        """An issue's web version before it is sent, for whoever holds a test copy's signed
        link; it only reads, and it is never cached or indexed."""
        try:
            issue_id = self.tokens.read_draft(token, self.app.clock.now(), DRAFT_LINK_AGE)
        except InvalidToken as error:
            title = error.message[:1].upper() + error.message[1:]
            advice = "Send yourself a new test copy for a fresh link."
            return self.page("error", 404, title=title, message=advice)
        with self.app.transaction() as session:
            html = session.scalar(select(Issue.web_html).where(Issue.id == issue_id))
        if not html:
            flask.abort(404)
        response = flask.Response(html, mimetype="text/html")
        response.headers["Content-Security-Policy"] = ISSUE_CSP
        response.headers["Cache-Control"] = "private, no-store"
        response.headers["X-Robots-Tag"] = "noindex, nofollow"
        return response


def _echo(form: Mapping[str, str]) -> dict[str, str]:
    """Give the reader back what they typed, so a typo costs one correction, not a form."""
    return {"email": form.get("email", "")[:320], "name": form.get("name", "")[:200]}


_ERROR_TEXT = {
    400: "The request could not be understood. Please use the button on the page.",
    404: "There is nothing at this address.",
    405: "This page cannot be used that way.",
    413: "The request was too large.",
    410: "An old confirmation link cannot subscribe it again. Please use the form instead.",
    429: "Too many sign-up requests have come from here recently. Please try again later.",
    503: "We could not send the confirmation email just now. Please try again in a few minutes.",
}


def serve(application: flask.Flask, *, host: str, port: int, proxy_hops: int = 0) -> None:
    """Run the application with waitress until interrupted.

    Waitress removes X-Forwarded-* from every peer it has not been told to trust, before the
    application sees them: behind `proxy_hops` proxies it must trust that many hops, or every
    reader would share the proxy's address, its rate limit and its consent record.
    """
    trust: dict[str, Any] = {}
    if proxy_hops:
        trust = {
            "trusted_proxy": "*",
            "trusted_proxy_count": proxy_hops,
            "trusted_proxy_headers": FORWARDED_HEADERS,
        }
    waitress_serve(application, host=host, port=port, ident="newsletter", **trust)

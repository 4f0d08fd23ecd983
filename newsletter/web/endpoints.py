"""The reader-facing web application: its routes, headers and server.

Each page lives in a module of its own (`leaving`, `joining`, `preferences`, `archive`,
`tracking`); only HTTP lives in them, and the rules are in `subscribers`. Nothing sets a
cookie and there is no session: a signed token in the URL is the only authority, which is
what lets the one-click POST from a mail provider work with no context at all (RFC 8058).
A GET never changes state, because link scanners and prefetchers follow every link in a
message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import flask
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from waitress import serve as waitress_serve
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import RequestRedirect

from newsletter.app import App
from newsletter.config import check_secret_keys, load_settings
from newsletter.issue.contrast import palette
from newsletter.web import tracking
from newsletter.web.archive import Archive
from newsletter.web.joining import Joining
from newsletter.web.leaving import Leaving
from newsletter.web.pages import ERROR_TEXT, Site
from newsletter.web.preferences import PreferencesPage

PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' https:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
MAX_REQUEST_BYTES = 64 * 1024
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
    check_secret_keys(settings.secrets.secret_keys)
    if app is None:
        app = App.create(settings)
    app.check_schema()
    site = Site(app, template_environment(app))
    shell = Shell(site)
    leaving, joining = Leaving(site), Joining(site)
    archive, choices = Archive(site), PreferencesPage(site)
    web = flask.Flask(__name__, static_folder=None)
    web.config.update(MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES, MAX_FORM_MEMORY_SIZE=MAX_REQUEST_BYTES)
    web.before_request(shell.public_redirect)
    web.after_request(_security_headers)
    web.register_error_handler(HTTPException, shell.http_error)
    routes: list[tuple[str, Callable[..., flask.Response], str]] = [
        ("/", joining.form_page, "GET"),
        ("/subscribe", joining.form_page, "GET"),
        ("/subscribe", joining.subscribe, "POST"),
        ("/style.css", shell.style, "GET"),
        ("/favicon.ico", _no_icon, "GET"),
        ("/u/<token>", leaving.page, "GET"),
        ("/u/<token>", leaving.action, "POST"),
        ("/p/<token>", choices.get, "GET"),
        ("/p/<token>", choices.post, "POST"),
        ("/confirm/<token>", joining.confirm_page, "GET"),
        ("/confirm/<token>", joining.confirm, "POST"),
        ("/archive/", archive.listing, "GET"),
        ("/archive/<week>", archive.issue, "GET"),
        ("/archive/draft/<token>", archive.draft, "GET"),
    ]
    for rule, view, method in routes:
        web.add_url_rule(rule, view_func=view, methods=[method])
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


class Shell:
    """What no single page owns: the stylesheet, error pages, and corrected URLs."""

    def __init__(self, site: Site) -> None:
        self.site = site

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
        response.headers["Location"] = f"{self.site.default.base_url.rstrip('/')}{path}{query}"
        return response

    def http_error(self, error: HTTPException) -> flask.Response:
        status = error.code or 500
        return self.site.page("error", status, title=error.name, message=ERROR_TEXT.get(status, ""))

    def style(self) -> flask.Response:
        site = self.site.default
        css = self.site.templates.get_template("web/style.css.j2").render(
            newsletter=site, colours=palette(site)
        )
        response = flask.Response(css, mimetype="text/css")
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response


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

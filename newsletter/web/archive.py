"""`/archive/`: the issues each newsletter has sent, and a test copy's signed draft page.

The default newsletter's archive is at `/archive/`, as links in messages already sent
expect; another newsletter's is the same path with `?newsletter=SLUG`.
"""

from __future__ import annotations

from datetime import timedelta

import flask
from sqlalchemy import select

from newsletter.db.models import Issue, IssueStatus
from newsletter.errors import UsageError
from newsletter.issue.periods import Week
from newsletter.mail.tokens import InvalidToken
from newsletter.web.pages import Site

# The archived issue is email HTML: inline styles and remote images, but still no scripts.
ISSUE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; font-src https:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# Test copies' "View in browser" link; an editor checks a draft within days, not months.
DRAFT_LINK_AGE = timedelta(days=30)


class Archive:
    def __init__(self, site: Site) -> None:
        self.site = site

    def _chosen(self) -> tuple[str, str]:
        """The newsletter the query names (404 for one that does not exist), and the query
        string that keeps it in the archive's own links."""
        slug = flask.request.args.get("newsletter")
        newsletter = self.site.newsletter(slug)
        query = (
            "" if newsletter.slug == self.site.default.slug else f"?newsletter={newsletter.slug}"
        )
        return newsletter.slug, query

    def listing(self) -> flask.Response:
        slug, query = self._chosen()
        with self.site.app.transaction() as session:
            issues = session.execute(
                select(Issue.week, Issue.subject)
                .where(Issue.newsletter == slug, Issue.status == IssueStatus.SENT)
                .order_by(Issue.week.desc())
            ).all()
        entries = [
            {"week": week, "label": Week.parse(week).label(), "subject": subject}
            for week, subject in issues
        ]
        return self.site.page(
            "archive", newsletter=self.site.newsletter(slug), issues=entries, query=query
        )

    def issue(self, week: str) -> flask.Response:
        """The issue's web version, which the renderer builds without any personal field."""
        slug, _query = self._chosen()
        try:
            wanted = str(Week.parse(week))
        except UsageError:
            flask.abort(404)
        with self.site.app.transaction() as session:
            html = session.scalar(
                select(Issue.web_html).where(
                    Issue.newsletter == slug,
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

    def draft(self, token: str) -> flask.Response:
        """An issue's web version before it is sent, for whoever holds a test copy's signed
        link; it only reads, and it is never cached or indexed."""
        app = self.site.app
        try:
            _slug, issue_id = self.site.keys.read(
                lambda t: t.read_draft(token, app.clock.now(), DRAFT_LINK_AGE)
            )
        except InvalidToken as error:
            title = error.message[:1].upper() + error.message[1:]
            advice = "Send yourself a new test copy for a fresh link."
            return self.site.page("error", 404, title=title, message=advice)
        with app.transaction() as session:
            html = session.scalar(select(Issue.web_html).where(Issue.id == issue_id))
        if not html:
            flask.abort(404)
        response = flask.Response(html, mimetype="text/html")
        response.headers["Content-Security-Policy"] = ISSUE_CSP
        response.headers["Cache-Control"] = "private, no-store"
        response.headers["X-Robots-Tag"] = "noindex, nofollow"
        return response

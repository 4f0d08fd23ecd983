"""An issue's report: the send's outcome, what was read, and how the list moved.

Puts together the delivery figures (`stats`) and the click counts (`tracking.report`); the
page and the JSON are drawn from the one `IssueReport` this returns.
"""

from __future__ import annotations

from sqlalchemy import select

from newsletter.db.models import Issue, IssueStatus
from newsletter.delivery.stats import growth, issue_stats
from newsletter.errors import NotFoundError
from newsletter.issue.periods import Week
from newsletter.runtime import Runtime
from newsletter.tracking import report
from newsletter.tracking.report import IssueReport

GROWTH_WEEKS = 12


def issue_report(app: Runtime, week: Week | None) -> IssueReport:
    """The report of `week`'s issue, or of the latest issue that went out."""
    chosen = str(week) if week is not None else _latest_sent(app)
    stats = issue_stats(app, Week.parse(chosen))[0]
    with app.transaction() as session:
        issue_id = session.scalars(
            select(Issue.id).where(
                Issue.newsletter == app.settings.newsletter.slug, Issue.week == chosen
            )
        ).one()
        articles = report.article_clicks(session, issue_id)
        opened = report.opens(session, issue_id)
    signs = {sign: sum(a.machine_by_sign[sign] for a in articles) for sign in report.MACHINE_SIGNS}
    return IssueReport(
        week=stats.week,
        subject=stats.subject,
        status=stats.status,
        tracking=app.settings.tracking.clicks,
        deliveries={
            "sent": stats.sent,
            "failed": stats.failed,
            "deferred": stats.deferred,
            "uncertain": stats.uncertain,
            "skipped": stats.skipped,
            "not yet sent": stats.pending,
        },
        articles=articles,
        human_clicks=sum(a.human for a in articles),
        machine_clicks=sum(signs.values()),
        machine_by_sign=signs,
        growth=growth(app, GROWTH_WEEKS),
        opens=opened if app.settings.tracking.opens or opened else None,
    )


def _latest_sent(app: Runtime) -> str:
    with app.transaction() as session:
        latest = session.scalar(
            select(Issue.week)
            .where(
                Issue.newsletter == app.settings.newsletter.slug,
                Issue.status.in_([IssueStatus.SENT, IssueStatus.SENDING]),
            )
            .order_by(Issue.week.desc())
            .limit(1)
        )
    if latest is None:
        raise NotFoundError("no issue has been sent yet", hint="name one with --week")
    return latest

"""The week's issue in the database: building the draft, showing it, and editors' overrides.

A draft can be rebuilt any number of times and gives the same result for the same articles
and overrides; once an issue is sending or sent it is a record and is never rebuilt.
Building renders the email once and stores it, so sending never depends on the feed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsletter.db.models import Article, Issue, IssueArticle, IssueStatus, Override, OverrideKind
from newsletter.errors import NotFoundError, RenderError, StateError, UsageError
from newsletter.feeds.store import LOCKED_STATUSES
from newsletter.issue.listing import resolve_week
from newsletter.issue.periods import Week
from newsletter.issue.render import GMAIL_CLIP_BYTES, IssueContent, Teaser, render_issue
from newsletter.issue.selection import Candidate, Decision, Selected, select_articles
from newsletter.issue.templates import templates_digest
from newsletter.runtime import Runtime


# Overrides of the same group replace each other: the newest decision about an article wins.
class Editing(Runtime, Protocol):
    """What building an issue needs beyond the runtime: where templates are looked up."""

    @property
    def templates_dirs(self) -> list[Path]: ...


_INCLUSION = (OverrideKind.FEATURE, OverrideKind.INCLUDE, OverrideKind.EXCLUDE)


@dataclass(frozen=True)
class BuildReport:
    week: Week
    articles: int
    featured: int
    subject: str
    problems: tuple[str, ...]
    html_bytes: int


@dataclass(frozen=True)
class ShownArticle:
    position: int
    article_id: int
    title: str
    section: str
    kicker: str
    published_at: datetime
    featured: bool
    url: str


@dataclass(frozen=True)
class ShownOverride:
    kind: OverrideKind
    article_id: int
    title: str
    position: int | None


@dataclass(frozen=True)
class IssueView:
    week: Week
    status: IssueStatus
    subject: str
    built_at: datetime | None
    articles: tuple[ShownArticle, ...]
    overrides: tuple[ShownOverride, ...]


@dataclass(frozen=True)
class OverrideReport:
    kind: OverrideKind
    article_id: int
    title: str
    build: BuildReport


def build_issue(app: Editing, week: Week | None) -> BuildReport:
    """Create or rebuild the week's draft; an empty week gives an empty draft, not an error."""
    chosen = resolve_week(app, week)
    with app.transaction() as session:
        issue = _editable_issue(session, chosen, app.clock.now())
        return _build(app, session, issue, chosen)


def show_issue(app: Editing, week: Week | None) -> IssueView:
    chosen = resolve_week(app, week)
    with app.transaction() as session:
        issue = _find_issue(session, chosen)
        if issue is None:
            raise NotFoundError(
                f"there is no issue for {chosen} yet",
                hint=f"run `newsletter issue build --week {chosen}`",
            )
        return IssueView(
            week=chosen,
            status=issue.status,
            subject=issue.subject,
            built_at=issue.built_at,
            articles=tuple(
                ShownArticle(
                    position=row.position,
                    article_id=row.article_id,
                    title=row.article.title,
                    section=row.article.section,
                    kicker=row.article.kicker,
                    published_at=row.article.published_at,
                    featured=row.featured,
                    url=row.article.url,
                )
                for row in issue.articles
            ),
            overrides=tuple(
                ShownOverride(o.kind, o.article_id, o.article.title, o.position)
                for o in issue.overrides
            ),
        )


def add_override(
    app: Editing,
    week: Week | None,
    article_ref: str,
    kind: OverrideKind,
    position: int | None = None,
) -> OverrideReport:
    """Record an editor's decision and rebuild the draft with it, in one transaction."""
    if kind is OverrideKind.MOVE and (position is None or position < 1):
        raise UsageError("POSITION must be 1 or more")
    chosen = resolve_week(app, week)
    now = app.clock.now()
    with app.transaction() as session:
        issue = _editable_issue(session, chosen, now)
        article = _find_article(session, article_ref)
        group = _INCLUSION if kind in _INCLUSION else (OverrideKind.MOVE,)
        session.execute(
            delete(Override).where(
                Override.issue_id == issue.id,
                Override.article_id == article.id,
                Override.kind.in_(group),
            )
        )
        session.add(
            Override(
                issue_id=issue.id,
                article_id=article.id,
                kind=kind,
                position=position if kind is OverrideKind.MOVE else None,
                created_at=now,
            )
        )
        session.flush()
        session.expire(issue, ["overrides"])
        report = _build(app, session, issue, chosen)
        return OverrideReport(kind, article.id, article.title, report)


def _find_issue(session: Session, week: Week) -> Issue | None:
    return session.scalars(select(Issue).where(Issue.week == str(week))).one_or_none()


def _editable_issue(session: Session, week: Week, now: datetime) -> Issue:
    issue = _find_issue(session, week)
    if issue is None:
        issue = Issue(week=str(week), status=IssueStatus.DRAFT, created_at=now)
        session.add(issue)
        session.flush()
    elif issue.status is not IssueStatus.DRAFT:
        raise StateError(
            f"the issue for {week} is already {issue.status.value}; it cannot be changed",
            hint="a sent issue is a record of what readers received",
        )
    return issue


def _find_article(session: Session, ref: str) -> Article:
    text = ref.strip()
    article: Article | None = None
    if text.isdigit():
        article = session.get(Article, int(text))
    else:
        article = session.scalars(
            select(Article).where(Article.url == text).order_by(Article.id).limit(1)
        ).one_or_none()
    if article is None:
        raise NotFoundError(
            f"no article with id or URL {text!r}",
            hint="`newsletter articles list --week WEEK` shows ids and URLs",
        )
    return article


def _build(app: Editing, session: Session, issue: Issue, week: Week) -> BuildReport:
    selection, articles = _select(app, session, issue, week)
    content = IssueContent(
        week=week,
        teasers=tuple(_teaser(articles[item.article_id], item.featured) for item in selection),
    )
    rendered = render_issue(content, app.settings, app.templates_dirs)
    if rendered.html_bytes > GMAIL_CLIP_BYTES:
        raise RenderError(
            f"the issue's HTML is {rendered.html_bytes / 1024:.1f} KB, above the "
            f"{GMAIL_CLIP_BYTES // 1024} KB at which Gmail clips it",
            hint="lower [feeds] max_articles or teaser_words, or exclude articles",
        )
    session.execute(delete(IssueArticle).where(IssueArticle.issue_id == issue.id))
    session.add_all(
        IssueArticle(
            issue_id=issue.id,
            article_id=item.article_id,
            position=index,
            featured=item.featured,
        )
        for index, item in enumerate(selection, start=1)
    )
    session.flush()
    session.expire(issue, ["articles"])
    issue.subject = rendered.subject
    issue.preheader = rendered.preheader
    issue.html = rendered.html
    issue.text = rendered.text
    issue.web_html = rendered.web_html
    issue.template_digest = templates_digest(app.templates_dirs)
    issue.built_at = app.clock.now()
    return BuildReport(
        week=week,
        articles=len(selection),
        featured=sum(item.featured for item in selection),
        subject=rendered.subject,
        problems=rendered.problems,
        html_bytes=rendered.html_bytes,
    )


def _select(
    app: Editing, session: Session, issue: Issue, week: Week
) -> tuple[tuple[Selected, ...], dict[int, Article]]:
    start, end = week.bounds(app.settings.newsletter.zone)
    window = session.scalars(
        select(Article).where(Article.published_at >= start, Article.published_at < end)
    ).all()
    overrides = session.scalars(
        select(Override).where(Override.issue_id == issue.id).order_by(Override.id)
    ).all()
    articles = {a.id: a for a in window}
    for override in overrides:
        articles.setdefault(override.article_id, override.article)
    sent = session.scalars(
        select(IssueArticle.article_id)
        .join(Issue, Issue.id == IssueArticle.issue_id)
        .where(Issue.status.in_(LOCKED_STATUSES), Issue.id != issue.id)
    )
    in_window = {a.id for a in window}
    selection = select_articles(
        [_candidate(a) for a in window],
        [_candidate(a) for aid, a in articles.items() if aid not in in_window],
        [Decision(o.article_id, o.kind, o.position) for o in overrides],
        already_sent=frozenset(sent),
        sections=app.settings.feeds.sections,
        max_articles=app.settings.feeds.max_articles,
    )
    return selection, articles


def _candidate(article: Article) -> Candidate:
    return Candidate(article.id, article.section, article.published_at)


def _teaser(article: Article, featured: bool) -> Teaser:
    return Teaser(
        article_id=article.id,
        url=article.url,
        title=article.title,
        kicker=article.kicker,
        section=article.section,
        authors=tuple(filter(None, article.authors.split("\n"))),
        published_at=article.published_at,
        teaser_html=article.teaser_html,
        image_url=article.image_url,
        image_alt=article.image_alt,
        image_credit=article.image_credit,
        featured=featured,
    )

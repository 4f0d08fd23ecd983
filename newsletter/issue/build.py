"""The issue in the database: building the draft and showing it, with every decision made.

A draft can be rebuilt any number of times and gives the same result for the same articles
and overrides; once an issue is sending or sent it is a record and is never rebuilt.
Building renders the email once and stores it, so sending never depends on the feed again.
Both building and showing say what was left out and why, so nothing is dropped unseen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsletter.db.models import Article, Issue, IssueArticle, IssueStatus, Override, OverrideKind
from newsletter.errors import NotFoundError, RenderError, StateError
from newsletter.issue.candidates import Pool, gather, new_since
from newsletter.issue.listing import periods, resolve_week
from newsletter.issue.periods import Week
from newsletter.issue.render import GMAIL_CLIP_BYTES, IssueContent, Teaser, render_issue
from newsletter.issue.selection import (
    Candidate,
    Decision,
    Selected,
    Selection,
    select_articles,
)
from newsletter.issue.templates import templates_digest
from newsletter.runtime import Runtime
from newsletter.tracking.most_read import most_read


class Editing(Runtime, Protocol):
    """What building an issue needs beyond the runtime: where templates are looked up."""

    @property
    def templates_dirs(self) -> list[Path]: ...


@dataclass(frozen=True)
class Note:
    """An article the editors should know about, and why."""

    article_id: int
    title: str
    why: str


@dataclass(frozen=True)
class BuildReport:
    week: Week
    articles: int
    featured: int
    subject: str
    problems: tuple[str, ...]
    html_bytes: int
    left_out: tuple[Note, ...] = ()
    replacements: tuple[Note, ...] = ()
    late: int = 0


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
    late: bool = False


@dataclass(frozen=True)
class ShownOverride:
    kind: str
    article_id: int
    title: str
    position: int | None
    section: str = ""


@dataclass(frozen=True)
class IssueView:
    week: Week
    status: IssueStatus
    subject: str
    built_at: datetime | None
    articles: tuple[ShownArticle, ...]
    overrides: tuple[ShownOverride, ...]
    period: tuple[datetime, datetime] | None = None
    approved_at: datetime | None = None
    withdrawn: str = ""
    new_since_build: int = 0
    left_out: tuple[Note, ...] = ()
    replacements: tuple[Note, ...] = ()


@dataclass(frozen=True)
class Fresh:
    """The selection as it would be made now, with what it was made from."""

    selection: Selection
    pool: Pool
    articles: dict[int, Article]


def build_issue(app: Editing, week: Week | None) -> BuildReport:
    """Create or rebuild the draft; an empty period gives an empty draft, not an error."""
    chosen = resolve_week(app, week)
    with app.transaction() as session:
        issue = editable_issue(session, app.settings.newsletter.slug, chosen, app.clock.now())
        return store(app, session, issue, chosen, select_now(app, session, issue, chosen))


def show_issue(app: Editing, week: Week | None) -> IssueView:
    chosen = resolve_week(app, week)
    with app.transaction() as session:
        issue = find_issue(session, app.settings.newsletter.slug, chosen)
        if issue is None:
            raise NotFoundError(
                f"there is no issue for {chosen} yet",
                hint=f"run `newsletter issue build --week {chosen}`",
            )
        fresh = select_now(app, session, issue, chosen)
        locked = issue.status is not IssueStatus.DRAFT
        sections = {o.article_id: o.section for o in issue.overrides if o.section}
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
                    section=sections.get(row.article_id, row.article.section),
                    kicker=row.article.kicker,
                    published_at=row.article.published_at,
                    featured=row.featured,
                    url=row.article.url,
                    late=row.article_id in fresh.pool.late,
                )
                for row in issue.articles
            ),
            overrides=tuple(
                ShownOverride(o.kind.value, o.article_id, o.article.title, o.position, o.section)
                for o in issue.overrides
            ),
            period=(fresh.pool.start, fresh.pool.end),
            approved_at=issue.approved_at,
            withdrawn="" if locked else withdrawal(issue, fresh.pool),
            new_since_build=0 if locked else len(new_since(fresh.pool, issue.built_at)),
            left_out=() if locked else left_out_notes(fresh),
            replacements=() if locked else replacement_notes(fresh),
        )


def find_issue(session: Session, newsletter: str, week: Week) -> Issue | None:
    return session.scalars(
        select(Issue).where(Issue.newsletter == newsletter, Issue.week == str(week))
    ).one_or_none()


def editable_issue(session: Session, newsletter: str, week: Week, now: datetime) -> Issue:
    issue = find_issue(session, newsletter, week)
    if issue is None:
        issue = Issue(
            newsletter=newsletter, week=str(week), status=IssueStatus.DRAFT, created_at=now
        )
        session.add(issue)
        session.flush()
    elif issue.status is not IssueStatus.DRAFT:
        raise StateError(
            f"the issue for {week} is already {issue.status.value}; it cannot be changed",
            hint="a sent issue is a record of what readers received",
        )
    return issue


def select_now(app: Runtime, session: Session, issue: Issue | None, week: Week) -> Fresh:
    """Select from the articles and overrides as they are now, storing nothing."""
    pool = gather(
        session,
        periods(app),
        week,
        None if issue is None else issue.id,
        newsletter=app.settings.newsletter.slug,
        sections=app.settings.newsletter.sections,
    )
    overrides = (
        session.scalars(
            select(Override).where(Override.issue_id == issue.id).order_by(Override.id)
        ).all()
        if issue is not None
        else []
    )
    articles = {a.id: a for a in pool.window}
    for override in overrides:
        articles.setdefault(override.article_id, override.article)
    in_window = {a.id for a in pool.window}
    selection = select_articles(
        [_candidate(a) for a in pool.window],
        [_candidate(a) for aid, a in articles.items() if aid not in in_window],
        [Decision(o.article_id, o.kind, o.position, o.section) for o in overrides],
        already_sent=pool.already_sent,
        sections=app.settings.sections,
        max_articles=app.settings.feeds.max_articles,
    )
    for article in pool.backdated:
        articles.setdefault(article.id, article)
    return Fresh(selection, pool, articles)


def store(app: Editing, session: Session, issue: Issue, week: Week, fresh: Fresh) -> BuildReport:
    """Render the selection and make it the issue's draft."""
    chosen = fresh.selection.chosen
    teasers = tuple(_teaser(fresh.articles[item.article_id], item) for item in chosen)
    rendered = render_issue(
        IssueContent(
            week=week,
            teasers=teasers,
            most_read=_most_read(app, session, issue, week),
        ),
        app.settings,
        app.templates_dirs,
    )
    if rendered.html_bytes > GMAIL_CLIP_BYTES:
        raise RenderError(
            f"the issue's HTML is {rendered.html_bytes / 1024:.1f} KB, above the "
            f"{GMAIL_CLIP_BYTES // 1024} KB at which Gmail clips it",
            hint="lower [feeds] max_articles or teaser_words, or exclude articles",
        )
    session.execute(delete(IssueArticle).where(IssueArticle.issue_id == issue.id))
    session.add_all(
        IssueArticle(
            issue_id=issue.id, article_id=item.article_id, position=index, featured=item.featured
        )
        for index, item in enumerate(chosen, start=1)
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
        articles=len(chosen),
        featured=sum(item.featured for item in chosen),
        subject=rendered.subject,
        problems=rendered.problems,
        html_bytes=rendered.html_bytes,
        left_out=left_out_notes(fresh),
        replacements=replacement_notes(fresh),
        late=sum(item.article_id in fresh.pool.late for item in chosen),
    )


def issue_content(app: Runtime, session: Session, issue: Issue) -> IssueContent:
    """The stories of a built issue as `store` rendered them, read back from the issue's
    selection and the editors' section overrides: what a reader's copy is cut from.

    An issue's articles are no longer updated from the feed once it is sending; "Most read"
    is ranked again, from the clicks counted by now.
    """
    sections: dict[int, str] = {}
    for override in issue.overrides:  # in the order they were made, as selection applies them
        if override.kind is OverrideKind.SECTION:
            sections[override.article_id] = override.section
    week = Week.parse(issue.week)
    return IssueContent(
        week=week,
        teasers=tuple(
            _teaser(
                row.article,
                Selected(
                    row.article_id,
                    featured=row.featured,
                    section=sections.get(row.article_id, row.article.section),
                ),
            )
            for row in issue.articles  # in order of position
        ),
        most_read=_most_read(app, session, issue, week),
    )


def withdrawal(issue: Issue, pool: Pool) -> str:
    """Why the issue's approval no longer holds, or "" when it does (or there is none)."""
    if issue.approved_at is None:
        return ""
    new = len(new_since(pool, issue.approved_at))
    changed = sum(o.created_at > issue.approved_at for o in issue.overrides)
    reasons = [f"{new} new article(s)" if new else "", f"{changed} override(s)" if changed else ""]
    return " and ".join(r for r in reasons if r) + (
        " since it was approved" if new or changed else ""
    )


def left_out_notes(fresh: Fresh) -> tuple[Note, ...]:
    notes = [
        Note(item.article_id, fresh.articles[item.article_id].title, item.reason.value)
        for item in fresh.selection.left_out
    ]
    notes += [
        Note(a.id, a.title, f"outside the period: published {a.published_at:%Y-%m-%d}, not sent")
        for a in fresh.pool.backdated
    ]
    return tuple(notes)


def replacement_notes(fresh: Fresh) -> tuple[Note, ...]:
    return tuple(
        Note(aid, fresh.articles[aid].title, "came in for an excluded article")
        for aid in fresh.selection.replacements
    )


def _most_read(app: Runtime, session: Session, issue: Issue, week: Week) -> tuple[Teaser, ...]:
    """Last issue's most-clicked articles, less those the editor excluded from this one."""
    wanted = app.settings.issue.most_read
    if not wanted or app.settings.tracking.clicks == "off":
        return ()
    excluded = set(
        session.scalars(
            select(Override.article_id).where(
                Override.issue_id == issue.id, Override.kind == OverrideKind.EXCLUDE
            )
        )
    )
    ranked = most_read(session, issue.newsletter, str(week), wanted + len(excluded))
    kept = [article_id for article_id in ranked if article_id not in excluded][:wanted]
    articles = [session.get_one(Article, article_id) for article_id in kept]
    return tuple(_teaser(a, Selected(a.id, featured=False, section=a.section)) for a in articles)


def _candidate(article: Article) -> Candidate:
    return Candidate(article.id, article.section, article.published_at)


def _teaser(article: Article, item: Selected) -> Teaser:
    return Teaser(
        article_id=article.id,
        url=article.url,
        title=article.title,
        kicker=article.kicker,
        section=item.section,
        authors=tuple(filter(None, article.authors.split("\n"))),
        published_at=article.published_at,
        teaser_html=article.teaser_html,
        image_url=article.image_url,
        image_alt=article.image_alt,
        image_credit=article.image_credit,
        image_width=article.image_width,
        featured=item.featured,
    )

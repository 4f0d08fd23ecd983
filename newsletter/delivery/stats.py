"""What happened to each send, and how the list grows: read from the ledger and the events.

Nothing here writes. Counts come from the delivery ledger (one row per issue and subscriber)
and from the subscriber events, which carry the issue a bounce or complaint was about.
Failures are grouped by the server's status code rather than by reply text, because every
reply names its own recipient and would otherwise make a group of one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.db.models import Delivery, DeliveryStatus, Event, EventKind, Issue
from newsletter.delivery.variants import NOTHING_IN_SECTIONS, combination, label
from newsletter.errors import NotFoundError
from newsletter.issue.periods import Week
from newsletter.runtime import Runtime
from newsletter.tracking.report import WeekGrowth

UNSUBSCRIBE_WINDOW = timedelta(days=7)
_REPLY = re.compile(r"^\s*([245]\d\d)[\s-]+(?:([245]\.\d{1,3}\.\d{1,3})\b)?")
# RFC 3463 codes an operator meets most, named so a report reads without the RFC at hand.
_MEANING = {
    "5.1.1": "mailbox does not exist",
    "5.1.2": "domain does not exist",
    "5.1.10": "recipient not found",
    "5.2.1": "mailbox disabled",
    "5.2.2": "mailbox full",
    "5.4.1": "no answer from host",
    "5.4.4": "unable to route",
    "5.7.1": "refused by policy",
    "5.7.26": "failed authentication (DMARC)",
    "5.7.515": "sender authentication required",
}


@dataclass(frozen=True)
class SectionsFigures:
    """The deliveries of the readers who chose one combination of sections."""

    sections: str  # "Europe · Africa", or "all sections"
    recipients: int
    sent: int
    skipped: int


@dataclass(frozen=True)
class IssueStats:
    week: str
    subject: str
    status: str
    recipients: int
    sent: int
    failed: int
    failed_by_reason: dict[str, int]
    deferred: int
    uncertain: int
    skipped: int
    pending: int
    hard_bounces: int
    soft_bounces: int
    complaints: int
    unsubscribed_7d: int
    started_at: datetime | None
    finished_at: datetime | None
    rate_per_second: float | None
    # Of `skipped`, the readers whose sections had nothing in the issue.
    nothing_in_sections: int = 0
    by_sections: list[SectionsFigures] = field(default_factory=list)


@dataclass(frozen=True)
class StatsReport:
    issues: list[IssueStats]
    growth: list[WeekGrowth] = field(default_factory=list)


def stats_report(app: Runtime, week: Week | None, growth_weeks: int) -> StatsReport:
    """Per-issue figures (one week, or every issue) and the list's growth over recent weeks."""
    return StatsReport(issue_stats(app, week), growth(app, growth_weeks))


def issue_stats(app: Runtime, week: Week | None) -> list[IssueStats]:
    """Newest issue first; a named week that has no issue is an error, not an empty report."""
    with app.transaction() as session:
        query = (
            select(Issue)
            .where(Issue.newsletter == app.settings.newsletter.slug)
            .order_by(Issue.week.desc())
        )
        if week is not None:
            query = query.where(Issue.week == str(week))
        issues = list(session.scalars(query))
        if week is not None and not issues:
            raise NotFoundError(f"there is no issue for {week}", hint="build it with `issue build`")
        known = app.settings.feeds.sections
        return [_one(session, issue, known) for issue in issues]


def _one(session: Session, issue: Issue, known: Sequence[str]) -> IssueStats:
    counts: Counter[DeliveryStatus] = Counter(
        dict(
            session.execute(
                select(Delivery.status, func.count())
                .where(Delivery.issue_id == issue.id)
                .group_by(Delivery.status)
            ).all()
        )
    )
    replies = session.execute(
        select(Delivery.last_reply, func.count())
        .where(Delivery.issue_id == issue.id, Delivery.status == DeliveryStatus.FAILED)
        .group_by(Delivery.last_reply)
    ).all()
    reasons: Counter[str] = Counter()
    for reply, count in replies:
        reasons[failure_reason(reply)] += count
    events: Counter[EventKind] = Counter(
        dict(
            session.execute(
                select(Event.kind, func.count(func.distinct(Event.subscriber_id)))
                .where(Event.issue_id == issue.id)
                .group_by(Event.kind)
            ).all()
        )
    )
    last_sent = session.scalar(
        select(func.max(Delivery.sent_at)).where(Delivery.issue_id == issue.id)
    )
    finished = issue.sent_at or last_sent
    sent = counts[DeliveryStatus.SENT]
    return IssueStats(
        week=issue.week,
        subject=issue.subject,
        status=issue.status.value,
        recipients=sum(counts.values()),
        sent=sent,
        failed=counts[DeliveryStatus.FAILED],
        failed_by_reason=dict(reasons.most_common()),
        deferred=counts[DeliveryStatus.DEFERRED],
        uncertain=counts[DeliveryStatus.UNCERTAIN],
        skipped=counts[DeliveryStatus.SKIPPED],
        pending=counts[DeliveryStatus.QUEUED] + counts[DeliveryStatus.SENDING],
        hard_bounces=events[EventKind.BOUNCED],
        soft_bounces=events[EventKind.SOFT_BOUNCE],
        complaints=events[EventKind.COMPLAINED],
        unsubscribed_7d=_unsubscribed_after(session, issue),
        started_at=issue.send_started_at,
        finished_at=finished,
        rate_per_second=_rate(sent, issue.send_started_at, last_sent),
        nothing_in_sections=count_nothing_in_sections(session, issue.id),
        by_sections=_by_sections(session, issue.id, known),
    )


def count_nothing_in_sections(session: Session, issue_id: int) -> int:
    """The issue's readers who were sent nothing because their sections had no story."""
    count = session.scalar(
        select(func.count()).where(
            Delivery.issue_id == issue_id,
            Delivery.status == DeliveryStatus.SKIPPED,
            Delivery.last_reply == NOTHING_IN_SECTIONS,
        )
    )
    return int(count or 0)


def _by_sections(session: Session, issue_id: int, known: Sequence[str]) -> list[SectionsFigures]:
    """The issue's deliveries by the combination of sections their readers chose, the
    readers of every section first, then the largest combinations. Combinations stored in
    another order or spelling are counted together, as the send gives them one copy."""
    rows = session.execute(
        select(Delivery.sections, Delivery.status, func.count())
        .where(Delivery.issue_id == issue_id)
        .group_by(Delivery.sections, Delivery.status)
    ).all()
    tally: dict[tuple[str, ...], Counter[DeliveryStatus]] = {}
    for packed, status, count in rows:
        tally.setdefault(combination(packed, known), Counter())[DeliveryStatus(status)] += count
    ordered = sorted(tally.items(), key=lambda item: (item[0] != (), -item[1].total(), item[0]))
    return [
        SectionsFigures(
            sections=label(key),
            recipients=counts.total(),
            sent=counts[DeliveryStatus.SENT],
            skipped=counts[DeliveryStatus.SKIPPED],
        )
        for key, counts in ordered
    ]


def failure_reason(reply: str) -> str:
    """`550 5.1.1 <a@b>: User unknown` -> `550 5.1.1 mailbox does not exist`."""
    match = _REPLY.match(reply)
    if not match:
        return " ".join(reply.split())[:60] or "no reply recorded"
    code, status = match[1], match[2]
    if not status:
        return code
    meaning = _MEANING.get(status)
    return f"{code} {status} {meaning}" if meaning else f"{code} {status}"


def _unsubscribed_after(session: Session, issue: Issue) -> int:
    """Recipients of this issue who left its newsletter (or everything) within a week of its
    start, by whatever door."""
    if issue.send_started_at is None:
        return 0
    recipients = select(Delivery.subscriber_id).where(
        Delivery.issue_id == issue.id, Delivery.status == DeliveryStatus.SENT
    )
    count = session.scalar(
        select(func.count(func.distinct(Event.subscriber_id))).where(
            Event.kind == EventKind.UNSUBSCRIBED,
            Event.newsletter.in_((issue.newsletter, "")),
            Event.at >= issue.send_started_at,
            Event.at < issue.send_started_at + UNSUBSCRIBE_WINDOW,
            Event.subscriber_id.in_(recipients),
        )
    )
    return count or 0


def _rate(sent: int, start: datetime | None, end: datetime | None) -> float | None:
    if not sent or start is None or end is None or end <= start:
        return None
    return sent / (end - start).total_seconds()


_GROWTH_KINDS = {
    EventKind.SUBSCRIBED: "added",
    EventKind.CONFIRMED: "confirmed",
    EventKind.UNSUBSCRIBED: "unsubscribed",
    EventKind.BOUNCED: "bounced",
}


def growth(app: Runtime, weeks: int) -> list[WeekGrowth]:
    """The last `weeks` ISO weeks in the publication's time zone, oldest first, this week last:
    the changes of the newsletter's subscriptions, and those of whole addresses (a bounce, a
    confirmation, leaving everything), which count for every newsletter."""
    if weeks < 1:
        return []
    zone = app.settings.newsletter.zone
    last = Week.containing(app.clock.now(), zone)
    span = [last]
    while len(span) < weeks:
        span.insert(0, span[0].previous())
    start, end = span[0].bounds(zone)[0], last.bounds(zone)[1]
    tally: dict[str, Counter[str]] = {str(w): Counter() for w in span}
    with app.transaction() as session:
        rows = session.execute(
            select(Event.kind, Event.at)
            .where(
                Event.kind.in_(list(_GROWTH_KINDS)),
                Event.newsletter.in_((app.settings.newsletter.slug, "")),
                Event.at >= start,
                Event.at < end,
            )
            .execution_options(yield_per=5000)
        )
        for kind, at in rows:
            tally[str(Week.containing(at, zone))][_GROWTH_KINDS[kind]] += 1
    return [
        WeekGrowth(
            week=week,
            added=counts["added"],
            confirmed=counts["confirmed"],
            unsubscribed=counts["unsubscribed"],
            bounced=counts["bounced"],
        )
        for week, counts in tally.items()
    ]

"""Opens: loads of the tracking image, counted per issue and never per reader.

They are unreliable and reports say so: Apple Mail Privacy Protection loads every image of
every message it receives, and many clients load none. Nothing else uses them.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from newsletter.db.models import Issue, IssueStatus, OpenCount
from newsletter.runtime import Runtime
from newsletter.tracking.tokens import ClickTokens, InvalidClick

UNRELIABLE = (
    "Opens are not reliable: Apple Mail Privacy Protection loads every image of every "
    "message (so it counts as opened unread mail), and clients that block images count "
    "nothing. They are shown for completeness and used for nothing else."
)


def _read(tokens: Mapping[str, ClickTokens], token: str) -> tuple[str, str] | None:
    """(newsletter, week) of an open token: the newsletter whose signer reads it sent it."""
    for newsletter, signer in tokens.items():
        try:
            return newsletter, signer.read_opened(token.removesuffix(".gif"))
        except InvalidClick:
            continue
    return None


def record(app: Runtime, tokens: Mapping[str, ClickTokens], token: str, *, count: bool) -> bool:
    """Count one open of the issue `token` names; false if the token is not ours.

    `tokens` holds each newsletter's signer, by slug."""
    read = _read(tokens, token)
    if read is None:
        return False
    newsletter, week = read
    with app.transaction() as session:
        issue = session.scalars(
            select(Issue).where(Issue.newsletter == newsletter, Issue.week == week)
        ).one_or_none()
        if issue is None:
            return False
        if count and app.settings.tracking.opens and issue.status is not IssueStatus.DRAFT:
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            session.execute(
                insert(OpenCount)
                .values(issue_id=issue.id, opens=1)
                .on_conflict_do_update(
                    index_elements=[OpenCount.issue_id], set_={"opens": OpenCount.opens + 1}
                )
            )
    return True

"""The issue as a subscriber would see it, for a look before sending.

The draft is live, so preview first re-selects it (as `send` will) and says what changed;
an approved issue is shown as approved. What is shown is then exactly what is stored, so what
the editors look at is what goes out; only the personal fields are filled with harmless
sample values.

An approved draft is not re-selected, so it would keep its old render after a template
change and the editor would take the change for broken: it is rendered again, with the same
selection, when the email templates differ from those it was rendered with. A sent issue is
a record and is never re-rendered.
"""

from __future__ import annotations

from newsletter.db.models import IssueStatus
from newsletter.errors import StateError
from newsletter.issue.build import Editing, find_issue, select_now, store
from newsletter.issue.listing import resolve_week
from newsletter.issue.live import Refresh, refresh_draft
from newsletter.issue.periods import Week
from newsletter.issue.personal import personalise, sample_fields
from newsletter.issue.templates import templates_digest


def preview_issue(
    app: Editing, week: Week | None, *, text: bool = False
) -> tuple[Week, str, Refresh, bool]:
    """The issue's rendered HTML (or text part), personalised for a sample reader, and
    whether it was rendered again because its templates had changed."""
    chosen = resolve_week(app, week)
    refresh = refresh_draft(app, chosen, reselect_approved=False)
    rerendered = _rerender_if_templates_changed(app, chosen)
    with app.transaction() as session:
        issue = find_issue(session, app.settings.newsletter.slug, chosen)
        stored = None if issue is None or issue.built_at is None else (issue.text, issue.html)
    if stored is None:
        raise StateError(
            f"the issue for {chosen} has no articles yet",
            hint=f"run `newsletter issue build --week {chosen}` to see the empty draft",
        )
    template = stored[0] if text else stored[1]
    content = personalise(template, sample_fields(app.settings), html=not text)
    return chosen, content, refresh, rerendered


def _rerender_if_templates_changed(app: Editing, week: Week) -> bool:
    """Render a draft again when its email templates changed; an unknown digest (a render
    older than the digest column) counts as unchanged rather than re-rendering unasked."""
    current = templates_digest(app.templates_dirs)
    with app.transaction() as session:
        issue = find_issue(session, app.settings.newsletter.slug, week)
        if issue is None or issue.status is not IssueStatus.DRAFT:
            return False
        if not issue.template_digest or issue.template_digest == current:
            return False
        store(app, session, issue, week, select_now(app, session, issue, week))
        return True

"""Per-reader click events are kept `[tracking] retention_days` and then deleted.

The per-article counters are not personal and stay, so reports of old issues keep their
figures. `newsletter stats` and `newsletter report` run this each time.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from newsletter.db.models import ClickEvent
from newsletter.runtime import Runtime


def purge(app: Runtime) -> int:
    """Delete the events older than the retention period; how many went."""
    cutoff = app.clock.now() - timedelta(days=app.settings.tracking.retention_days)
    with app.transaction() as session:
        result = session.execute(delete(ClickEvent).where(ClickEvent.at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)

"""The tracked addresses written into an issue when it is rendered (once per render)."""

from __future__ import annotations

from collections.abc import Iterable

from newsletter.config import Settings
from newsletter.tracking.tokens import ClickTokens


def article_links(settings: Settings, week: str, article_ids: Iterable[int]) -> dict[int, str]:
    """Each article's `/c/` address, or nothing at all when clicks are not tracked.

    In `per-reader` mode the renderer appends `/` and the reader's own token.
    """
    if settings.tracking.clicks == "off":
        return {}
    tokens = ClickTokens.from_settings(settings)
    base = settings.newsletter.base_url.rstrip("/")
    return {aid: f"{base}/c/{tokens.article(week, aid)}" for aid in article_ids}


def open_pixel(settings: Settings, week: str) -> str:
    """The `/o/` image address, or "" when opens are not counted."""
    if not settings.tracking.opens:
        return ""
    base = settings.newsletter.base_url.rstrip("/")
    return f"{base}/o/{ClickTokens.from_settings(settings).opened(week)}.gif"

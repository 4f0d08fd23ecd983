"""The reader-facing web application: unsubscribe, subscribe, confirm and the archive."""

from newsletter.web.endpoints import create_app

__all__ = ["create_app"]

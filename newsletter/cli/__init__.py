"""The `newsletter` command: a thin shell over the library.

Each module here adds its commands to `main`; importing them is what registers them.
"""

from newsletter.cli import (
    articles,
    bounces,
    database,
    demo,
    issue,
    preview,
    reports,
    sending,
    subscribers,
    web,
)
from newsletter.cli.root import main

__all__ = [
    "articles",
    "bounces",
    "database",
    "demo",
    "issue",
    "main",
    "preview",
    "reports",
    "sending",
    "subscribers",
    "web",
]

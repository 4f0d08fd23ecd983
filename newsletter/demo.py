"""The whole weekly job on the bundled example data, in a folder of its own.

It is what a newcomer runs first: a configuration file, a SQLite database, the example
subscribers and feed, one built issue and its messages in an outbox, all in one folder that
can be looked through and thrown away. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from newsletter.app import App
from newsletter.config import load_settings
from newsletter.db.session import upgrade
from newsletter.delivery.send import SendOptions, SendReport, send_issue
from newsletter.errors import InputError
from newsletter.feeds.store import fetch_sources
from newsletter.issue.build import BuildReport, build_issue
from newsletter.issue.periods import Week
from newsletter.issue.preview import preview_issue
from newsletter.subscribers.csv import ImportReport, import_csv

DEMO_WEEK = Week(2024, 47)
MARKER = "# Written by `newsletter demo`."
CONFIG = (
    MARKER
    + """ Every key is explained in newsletter.example.toml.
[newsletter]
name = "The Weekly Round-up"
from = "Example Magazine <newsletter@example.org>"
reply_to = "editors@example.org"
base_url = "http://127.0.0.1:8025"
timezone = "America/New_York"

[database]
url = {database}

[delivery]
transport = "outbox:outbox"
rate = 0
connections = 2
"""
)
# What an earlier demo run leaves behind, removed before a new run.
_PREVIOUS = (
    "newsletter.db",
    "newsletter.db-wal",
    "newsletter.db-shm",
    "newsletter.db.send-lock",
    "outbox",
)


@dataclass(frozen=True)
class DemoReport:
    folder: Path
    generated_key: bool
    subscribers: ImportReport
    articles: int
    issue: BuildReport
    send: SendReport
    preview_html: Path
    preview_text: Path
    outbox: Path


def run_demo(folder: Path, *, secret_key: str = "") -> DemoReport:
    """Run init, import, fetch, build, send and preview in `folder`.

    Without `secret_key` a random one is made for this run only: the demo needs signed
    unsubscribe links, not links that stay valid after it.
    """
    folder = folder.resolve()
    _prepare(folder)
    config = folder / "newsletter.toml"
    # An absolute path: SQLite resolves a relative one against the working directory.
    config.write_text(
        CONFIG.replace("{database}", json.dumps(f"sqlite:///{folder / 'newsletter.db'}")),
        encoding="utf-8",
    )
    settings = load_settings(config, environ={})
    key = secret_key or secrets.token_urlsafe(32)
    settings = replace(settings, secrets=replace(settings.secrets, secret_keys=(key,)))
    app = App.create(settings)
    try:
        upgrade(app.engine, app.settings.default_newsletter.slug)
        data = resources.files("newsletter") / "data"
        with resources.as_file(data / "subscribers.example.csv") as csv_path:
            imported = import_csv(app, csv_path)
        with resources.as_file(data / "feed.xml") as feed_path:
            feeds = fetch_sources(app, [str(feed_path)])
        failed = [f.error for f in feeds if f.error]
        if failed:
            raise InputError(f"the bundled feed could not be read: {failed[0]}")
        built = build_issue(app, DEMO_WEEK)
        sent = send_issue(app, DEMO_WEEK, SendOptions(rate=0))
        html, text = folder / "preview.html", folder / "preview.txt"
        html.write_text(preview_issue(app, DEMO_WEEK)[1], encoding="utf-8")
        text.write_text(preview_issue(app, DEMO_WEEK, text=True)[1], encoding="utf-8")
    finally:
        app.close()
    return DemoReport(
        folder=folder,
        generated_key=not secret_key,
        subscribers=imported,
        articles=sum(f.new + f.updated + f.unchanged for f in feeds),
        issue=built,
        send=sent,
        preview_html=html,
        preview_text=text,
        outbox=folder / "outbox",
    )


def _prepare(folder: Path) -> None:
    """A fresh folder, or one an earlier demo wrote (cleared); never anyone else's files."""
    config = folder / "newsletter.toml"
    if folder.exists() and any(folder.iterdir()):
        if not (config.is_file() and config.read_text(encoding="utf-8").startswith(MARKER)):
            raise InputError(
                f"{folder} is not empty and was not made by `newsletter demo`",
                hint="choose another folder with --dir",
            )
        for name in _PREVIOUS:
            path = folder / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {folder}: {exc.strerror}") from None

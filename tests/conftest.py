"""Shared fixtures: a migrated database per test (SQLite, and PostgreSQL when configured),
settings pointing at it, a wired `App`, and the real command line.

Every database test runs once on SQLite and once on PostgreSQL. PostgreSQL runs only when
NEWSLETTER_TEST_DATABASE_URL names a server; without it those cases skip with that reason.
Each test gets a database of its own, copied from one migrated by Alembic at session start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from newsletter.app import App
from newsletter.cli import main
from newsletter.clock import FixedClock
from newsletter.config import (
    DatabaseSettings,
    DeliverySettings,
    NewsletterSettings,
    Secrets,
    Settings,
)
from newsletter.db.session import make_engine, upgrade

PG_ENV = "NEWSLETTER_TEST_DATABASE_URL"
SECRET_KEY = "test-secret-key-not-for-production"
REPO = Path(__file__).resolve().parent.parent
SHARED_FEEDS = REPO.parent / "shared" / "feeds"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite the files in tests/golden/ from what the code produces now",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when the run was asked to rewrite golden files rather than compare with them."""
    return bool(request.config.getoption("--update-golden"))


def pytest_report_header() -> str:
    url = os.environ.get(PG_ENV)
    return f"postgresql: {url}" if url else f"postgresql: skipped ({PG_ENV} is not set)"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(
            f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1/test)"
        )
    name = f"nl_template_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(url).set(database=name).render_as_string(hide_password=False))
    upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated, empty database of its own for this test."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "newsletter.db"
        shutil.copyfile(template, target)
        yield f"sqlite:///{target}"
        return
    template_name: str = request.getfixturevalue("postgres_template")
    base = os.environ[PG_ENV]
    name = f"nl_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"'))
    yield make_url(base).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        newsletter=NewsletterSettings(
            name="The Weekly Round-up",
            sender="Example Magazine <newsletter@example.org>",
            reply_to="editors@example.org",
            base_url="https://news.example.org",
            timezone="America/New_York",
        ),
        database=DatabaseSettings(url=database_url),
        delivery=replace(DeliverySettings(), transport=f"outbox:{tmp_path / 'outbox'}"),
        secrets=Secrets(secret_keys=(SECRET_KEY,)),
        source="tests",
        base_dir=tmp_path,
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2024, 11, 20, 15, 0, tzinfo=UTC))


@pytest.fixture
def app(settings: Settings, clock: FixedClock) -> Iterator[App]:
    application = App.create(settings, clock=clock)
    yield application
    application.close()


@contextmanager
def with_brief(app: App, sections: tuple[str, ...]) -> Iterator[App]:
    """`app`'s database and clock with a second newsletter, `brief`, carrying `sections`."""
    settings = replace(
        app.settings,
        newsletters=(app.settings.newsletter, NewsletterSettings(slug="brief", sections=sections)),
    )
    application = App.create(settings, clock=app.clock)
    try:
        yield application
    finally:
        application.close()


@dataclass
class Cli:
    """The real `newsletter` command, run in-process against this test's database."""

    env: dict[str, str]
    cwd: Path
    clock: FixedClock | None = None  # the commands' clock; the system's when None

    def __call__(
        self, *args: str, input: str | None = None, env: Mapping[str, str] | None = None
    ) -> Result:
        runner = CliRunner()
        old = Path.cwd()
        os.chdir(self.cwd)
        try:
            return runner.invoke(
                main,
                list(args),
                input=input,
                env={**self.env, **(env or {})},
                catch_exceptions=False,
                obj=self.clock,
            )
        finally:
            os.chdir(old)


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Cli:
    """Runs commands in tmp_path with no config file and this test's database."""
    return Cli(
        env={
            "NEWSLETTER_CONFIG": "",
            "NEWSLETTER_DATABASE_URL": database_url,
            "NEWSLETTER_DELIVERY_TRANSPORT": f"outbox:{tmp_path / 'outbox'}",
            "NEWSLETTER_NEWSLETTER_BASE_URL": "https://news.example.org",
            "NEWSLETTER_SECRET_KEY": SECRET_KEY,
        },
        cwd=tmp_path,
    )


@contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """`folder` as a tmpfs of `size` ("4m", "512k"): a disk that really fills up (as root,
    permissions would stop no write). Skips the test where mounting is not allowed."""
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    mounted = subprocess.run(mount, capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"a full disk is simulated by mounting a small tmpfs: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if os.path.ismount(folder):
            subprocess.run(["umount", str(folder)], check=True, timeout=30)

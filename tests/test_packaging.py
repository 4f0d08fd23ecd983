"""A plain, non-editable install carries its templates, migrations and demo data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "TMPDIR": str(build)},
    )
    return target


def test_wheel_ships_templates_migrations_and_data(installed: Path) -> None:
    package = installed / "newsletter"
    assert (package / "templates" / "email" / "roundup.mjml.j2").is_file()
    assert not (package / "templates").is_symlink()
    assert (package / "db" / "migrations" / "versions" / "0001_initial_schema.py").is_file()
    assert (package / "db" / "migrations" / "script.py.mako").is_file()
    assert (package / "data" / "feed.xml").stat().st_size > 1000
    assert (package / "data" / "subscribers.example.csv").stat().st_size > 100


def test_installed_package_runs_the_demo_outside_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("NEWSLETTER_")}
    env["PYTHONPATH"] = str(installed)
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "demo", "--dir", str(tmp_path / "demo")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (
        str(installed)
        in subprocess.run(
            [sys.executable, "-c", "import newsletter; print(newsletter.__file__)"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    emails = list((tmp_path / "demo").rglob("*.eml"))
    assert len(emails) == 23  # the example list's active subscribers


def test_what_normal_use_leaves_behind_is_ignored_by_git() -> None:
    left = [
        "newsletter.db",
        "newsletter.db-wal",
        "newsletter.db-shm",
        "newsletter.db.send-lock",
        "newsletter-demo/outbox/1.eml",
    ]
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *left],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert sorted(result.stdout.split()) == sorted(left), result.stderr

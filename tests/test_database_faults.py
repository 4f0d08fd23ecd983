"""A database that cannot take a write: read-only, or on a full disk. Each command ends with
one line and exit status 1, and what was stored before is still there afterwards."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from .conftest import SECRET_KEY, Cli, small_tmpfs


def _errors(output: str) -> list[str]:
    assert "Traceback" not in output
    return [line for line in output.splitlines() if line.startswith("Error")]


def _read_only(url: str) -> str:
    """The same database opened so that it refuses every write."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite:///file:{parsed.database}?mode=ro&uri=true"
    options = "-c default_transaction_read_only=on"
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


def test_a_read_only_database_is_one_line(cli: Cli, database_url: str) -> None:
    assert cli("subscribers", "add", "ann@example.org").exit_code == 0
    read_only = {"NEWSLETTER_DATABASE_URL": _read_only(database_url)}
    result = cli("subscribers", "add", "bob@example.org", env=read_only)
    assert result.exit_code == 1, result.output
    [error] = _errors(result.output)
    assert error.startswith("Error: the database is read-only: ")
    listed = cli("subscribers", "list", env=read_only)
    assert listed.exit_code == 0
    assert "ann@example.org" in listed.output
    assert "bob@example.org" not in listed.output


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB disk that really fills up."""
    with small_tmpfs(tmp_path / "disk", "4m") as folder:
        yield folder


def test_a_full_sqlite_disk_is_one_line_and_loses_nothing(
    sqlite_template: Path, small_disk: Path, tmp_path: Path
) -> None:
    """SQLite only: filling a PostgreSQL server's disk is not something a test may do."""
    database = small_disk / "newsletter.db"
    shutil.copyfile(sqlite_template, database)
    cli = Cli(
        env={
            "NEWSLETTER_CONFIG": "",
            "NEWSLETTER_DATABASE_URL": f"sqlite:///{database}",
            "NEWSLETTER_SECRET_KEY": SECRET_KEY,
        },
        cwd=tmp_path,
    )
    assert cli("subscribers", "add", "ann@example.org").exit_code == 0
    listing = tmp_path / "list.csv"
    listing.write_text(
        "email,name\n" + "".join(f"reader{n}@example.org,Reader {n}\n" for n in range(4000))
    )
    # All but 128 KiB taken: the import's writes cannot all fit.
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 128 * 1024))
    result = cli("subscribers", "import", str(listing))
    assert result.exit_code == 1, result.output
    [error] = _errors(result.output)
    assert error.startswith("Error: the database is full: ")
    listed = cli("subscribers", "list")
    assert "ann@example.org" in listed.output
    assert "1 subscriber(s)" in listed.output
    # Space made, the same import goes through whole.
    (small_disk / "filler").unlink()
    again = cli("subscribers", "import", str(listing))
    assert again.exit_code == 0, again.output
    assert "added 4000" in again.output

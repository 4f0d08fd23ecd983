from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.app import App
from newsletter.db.models import Event, EventKind, Subscriber, SubscriberStatus
from newsletter.errors import InputError
from newsletter.subscribers.csv import import_csv
from newsletter.subscribers.export import export_csv
from newsletter.subscribers.rules import add_address, unsubscribe_address

from .conftest import REPO, Cli

EXAMPLE = REPO / "subscribers.example.csv"


def _count(app: App) -> int:
    with app.sessions() as session:
        return session.scalar(select(func.count()).select_from(Subscriber)) or 0


def _status(app: App, email: str) -> SubscriberStatus:
    with app.sessions() as session:
        return session.scalars(select(Subscriber.status).where(Subscriber.email == email)).one()


def _write(tmp_path: Path, text: str | bytes, name: str = "list.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def test_example_file_imports_and_reimport_changes_nothing(app: App) -> None:
    first = import_csv(app, EXAMPLE)
    assert (first.added, first.invalid, first.updated) == (25, 0, 0)
    assert _status(app, "hannah.weber@example.de") is SubscriberStatus.UNSUBSCRIBED
    assert _status(app, "robert.king@example.com") is SubscriberStatus.BOUNCED
    with app.sessions() as session:
        events_before = session.scalar(select(func.count()).select_from(Event))
    second = import_csv(app, EXAMPLE)
    assert (second.added, second.updated, second.unchanged, second.suppressed) == (0, 0, 25, 0)
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == events_before


def test_dry_run_writes_nothing_but_reports_the_same(app: App) -> None:
    report = import_csv(app, EXAMPLE, dry_run=True)
    assert report.added == 25
    assert report.dry_run
    assert _count(app) == 0


def test_suppressed_addresses_stay_suppressed(app: App, tmp_path: Path) -> None:
    add_address(app, "Gone@Example.org", "Gone")
    unsubscribe_address(app, "gone@example.org")
    path = _write(tmp_path, "email,name,status\ngone@example.org,Gone Again,active\n")
    report = import_csv(app, path)
    assert report.suppressed == 1
    assert _status(app, "gone@example.org") is SubscriberStatus.UNSUBSCRIBED


def test_status_and_name_updates_record_events(app: App, tmp_path: Path) -> None:
    add_address(app, "reader@example.org", "Reader")
    path = _write(
        tmp_path,
        "email,name,status\nreader@example.org,Reader Renamed,unsubscribed\n",
    )
    report = import_csv(app, path)
    assert report.updated == 1
    assert _status(app, "reader@example.org") is SubscriberStatus.UNSUBSCRIBED
    with app.sessions() as session:
        kinds = session.scalars(select(Event.kind).order_by(Event.id)).all()
    assert kinds == [EventKind.SUBSCRIBED, EventKind.UNSUBSCRIBED]


def test_invalid_rows_are_reported_by_line_and_the_rest_imported(app: App, tmp_path: Path) -> None:
    data = (
        b"email,name,status,subscribed_at,favourite_colour\n"
        b"good@example.org,Good,active,2024-01-02T03:04:05Z,blue\n"
        b"not-an-address,Bad,active,,red\n"
        b"status@example.org,Bad Status,paused,,\n"
        b"date@example.org,Bad Date,active,yesterday,\n"
        b"latin@example.org,Jos\xe9,active,,\n"
        b'"multi@example.org","Line\none",active,,\n'
        b"long@example.org," + b"x" * 10_000 + b",active,,\n"
        b"=cmd()@example.org,Formula,active,,\n"
        b"GOOD@example.org,Duplicate,active,,\n"
        b"\n"
        b"last@example.org,,,,\n"
    )
    report = import_csv(app, _write(tmp_path, data))
    lines = dict(report.reasons)
    assert set(lines) == {3, 4, 5, 9, 10}, report.reasons
    assert "not a valid address" in lines[3]
    assert "paused" in lines[4]
    assert "ISO 8601" in lines[5]
    assert "longer than 200" in lines[9]
    assert "not a valid address" in lines[10]
    assert report.merged == 1
    assert report.notices == ["ignored column(s): favourite_colour"]
    assert report.added == 4  # good, latin (the file is not UTF-8: cp1252), multi, last
    assert report.encoding == "cp1252 (detected)"
    assert _count(app) == 4


def test_semicolons_and_byte_order_mark_are_understood(app: App, tmp_path: Path) -> None:
    path = _write(tmp_path, "\ufeffEmail;Name\nzoe@example.fr;Zoé Martin\n")
    report = import_csv(app, path)
    assert report.added == 1
    with app.sessions() as session:
        assert session.scalars(select(Subscriber.name)).one() == "Zoé Martin"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"someone@example.org,Someone\n", "looks like an address"),
        (b"name,status\nSomeone,active\n", "no `email` column"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        (b"email\nsomeone@example.org\x00\n", "binary file"),
    ],
)
def test_unreadable_files_are_refused_whole(
    app: App, tmp_path: Path, content: bytes, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        import_csv(app, _write(tmp_path, content))
    assert _count(app) == 0


def test_a_broken_row_late_in_the_file_leaves_nothing_half_applied(
    app: App, tmp_path: Path
) -> None:
    rows = "".join(f"reader{n}@example.org,Reader {n}\n" for n in range(5000))
    path = _write(tmp_path, "email,name\n" + rows + 'broken@example.org,"unterminated\n')
    with pytest.raises(InputError, match=r"line 5002"):
        import_csv(app, path)
    assert _count(app) == 0


def test_export_defuses_formula_cells(app: App, tmp_path: Path) -> None:
    path = _write(tmp_path, 'email,name\nsheet@example.org,=HYPERLINK("x")\n')
    import_csv(app, path)
    out = io.StringIO()
    assert export_csv(app, out) == 1
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["name"] == '\'=HYPERLINK("x")'
    assert rows[0]["status"] == "active"
    assert list(rows[0]) == [
        "email",
        "name",
        "status",
        "subscribed_at",
        "confirmed_at",
        "unsubscribed_at",
        "consent_source",
        "consent_ip",
        "consent_text",
        "newsletters",
        "sections",
    ]
    assert (rows[0]["newsletters"], rows[0]["sections"]) == ("weekly", "")


def test_cli_import_report_and_errors(cli: Cli, tmp_path: Path) -> None:
    result = cli("subscribers", "import", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert "added 25, updated 0, unchanged 0, suppressed 0, invalid 0" in result.output
    again = cli("subscribers", "import", str(EXAMPLE))
    assert "added 0, updated 0, unchanged 25, suppressed 0, invalid 0" in again.output

    bad = _write(tmp_path, "email\nnope\nzoe@example.org\n", "bad.csv")
    result = cli("subscribers", "import", str(bad), "--dry-run")
    assert result.exit_code == 0
    assert "line 2:" in result.output
    assert "Dry run, nothing written" in result.output

    missing = cli("subscribers", "import", str(tmp_path / "missing.csv"))
    assert missing.exit_code == 1
    assert "cannot open" in missing.output
    assert "Traceback" not in missing.output


def test_cli_add_unsubscribe_list_export(cli: Cli, tmp_path: Path) -> None:
    assert cli("subscribers", "add", "Ana@Example.org", "--name", "Ana").exit_code == 0
    listed = cli("subscribers", "list", "--status", "active")
    assert "ana@example.org" in listed.output
    assert cli("subscribers", "unsubscribe", "ana@example.org").output.startswith("Unsubscribed")
    assert "nothing changed" in cli("subscribers", "unsubscribe", "ana@example.org").output
    readd = cli("subscribers", "add", "ana@example.org", "--name", "Someone Else")
    assert "unsubscribed; left unchanged" in readd.output
    out = tmp_path / "out.csv"
    assert cli("subscribers", "export", "-o", str(out)).exit_code == 0
    assert "ana@example.org,Ana,unsubscribed" in out.read_text()
    dash = cli("subscribers", "export", "-o", "-")
    assert "ana@example.org,Ana,unsubscribed" in dash.output
    assert not (tmp_path / "-").exists()
    bad = cli("subscribers", "add", "not an address")
    assert bad.exit_code == 1
    assert "not a valid address" in bad.output
    unknown = cli("subscribers", "unsubscribe", "nobody@example.org")
    assert unknown.exit_code == 1
    usage = cli("subscribers", "list", "--status", "sleeping")
    assert usage.exit_code == 2


def test_bare_carriage_returns_are_a_clear_error(app: App, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="line 1: a line break inside an unquoted field"):
        import_csv(app, _write(tmp_path, b"email\r\x01"))
    path = _write(tmp_path, b"email,name\nok@example.org,A\rB\n")
    with pytest.raises(InputError, match="line 2: a line break inside an unquoted field"):
        import_csv(app, path)
    assert _count(app) == 0


@pytest.mark.parametrize("dry_run", [False, True], ids=["import", "dry-run"])
def test_a_file_without_one_valid_row_exits_1(cli: Cli, tmp_path: Path, dry_run: bool) -> None:
    bad = _write(tmp_path, "email,name\nnope,A\n@example.org,B\n", "wrong.csv")
    result = cli("subscribers", "import", str(bad), *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 1, result.output
    assert "line 2:" in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert errors == [f"Error: {bad}: no valid row was found; nothing was imported"]
    assert "Traceback" not in result.output
    assert "0 subscriber(s)" in cli("subscribers", "list").output

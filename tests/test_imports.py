"""Lists exported by other tools, files in other encodings, and our own export read back."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from newsletter.app import App
from newsletter.config import FeedSettings
from newsletter.db.models import Event, Subscriber, SubscriberStatus, Subscription
from newsletter.subscribers.addresses import clean_name, normalise_email
from newsletter.subscribers.csv import import_csv
from newsletter.subscribers.export import export_csv
from newsletter.subscribers.rules import add_address
from newsletter.subscribers.subscriptions import STARTS_AS, pack_sections

from .conftest import REPO, Cli, with_brief

IMPORTS = REPO / "tests" / "data" / "imports"
ACTIVE, UNSUBSCRIBED, BOUNCED = (
    SubscriberStatus.ACTIVE,
    SubscriberStatus.UNSUBSCRIBED,
    SubscriberStatus.BOUNCED,
)


def _held(app: App) -> dict[str, tuple[str, SubscriberStatus, datetime]]:
    with app.sessions() as session:
        return {
            s.email: (s.name, s.status, s.subscribed_at)
            for s in session.scalars(select(Subscriber))
        }


@pytest.mark.parametrize(
    ("source", "expected", "mapped"),
    [
        (
            "mailchimp",
            {
                "amara.okafor@example.com": ("Amara Okafor", ACTIVE),
                "jonas.lindqvist@example.net": ("Jonas Lindqvist", ACTIVE),
                "hannah.weber@example.de": ("Hannah Weber", UNSUBSCRIBED),
                "robert.king@example.com": ("Robert King", BOUNCED),
            },
            "Email Address -> email, First Name -> name (first part), "
            "Last Name -> name (last part), Email Marketing Status -> status, "
            "OPTIN_TIME -> subscribed_at, CONFIRM_TIME -> confirmed_at, CONFIRM_IP -> consent_ip",
        ),
        (
            "substack",
            {
                "amara.okafor@example.com": ("", ACTIVE),
                "jonas.lindqvist@example.net": ("", ACTIVE),
                "hannah.weber@example.de": ("", UNSUBSCRIBED),
            },
            "email_disabled -> status (true: unsubscribed), created_at -> subscribed_at",
        ),
        (
            "listmonk",
            {
                "amara.okafor@example.com": ("Amara Okafor", ACTIVE),
                "jonas.lindqvist@example.net": ("Jonas Lindqvist", ACTIVE),
                "hannah.weber@example.de": ("Hannah Weber", UNSUBSCRIBED),
            },
            "created_at -> subscribed_at",
        ),
        (
            "buttondown",
            {
                "amara.okafor@example.com": ("", ACTIVE),
                "jonas.lindqvist@example.net": ("", ACTIVE),
                "hannah.weber@example.de": ("", UNSUBSCRIBED),
                "robert.king@example.com": ("", BOUNCED),
            },
            "subscriber_type -> status, creation_date -> subscribed_at",
        ),
        (
            "ghost",
            {
                "amara.okafor@example.com": ("Amara Okafor", ACTIVE),
                "jonas.lindqvist@example.net": ("Jonas Lindqvist", ACTIVE),
                "hannah.weber@example.de": ("Hannah Weber", UNSUBSCRIBED),
            },
            "subscribed_to_emails -> status, created_at -> subscribed_at",
        ),
    ],
)
def test_other_tools_exports_import_as_they_are(
    cli: Cli, app: App, source: str, expected: dict[str, tuple[str, SubscriberStatus]], mapped: str
) -> None:
    result = cli("subscribers", "import", str(IMPORTS / f"{source}.csv"))
    assert result.exit_code == 0, result.output
    assert f"Columns: {mapped}." in result.output
    held = _held(app)
    assert {email: (name, status) for email, (name, status, _) in held.items()} == expected
    # Every sample has Amara joining at 14:12 UTC (Mailchimp's times, without offset, are UTC).
    assert held["amara.okafor@example.com"][2] == datetime(2023, 2, 14, 14, 12, tzinfo=UTC)


def test_a_contact_who_never_subscribed_is_not_imported(cli: Cli, app: App) -> None:
    result = cli("subscribers", "import", str(IMPORTS / "mailchimp.csv"))
    assert "line 6: status 'Non-Subscribed': never subscribed, so not imported" in result.output
    assert "lead.only@example.org" not in _held(app)
    with app.sessions() as session:
        amara = session.scalars(
            select(Subscriber).where(Subscriber.email == "amara.okafor@example.com")
        ).one()
    assert amara.consent_ip == "198.51.100.7"
    assert amara.confirmed_at == datetime(2023, 2, 14, 14, 14, 31, tzinfo=UTC)


def test_a_windows_code_page_file_is_detected_and_named(cli: Cli, app: App, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    text = (
        "email;name\n"
        "helene@example.fr;Hélène Lefèvre\n"
        "jerome@example.fr;Jérôme Bérard à Noël\n"
        "juergen@example.de;Jürgen Groß\n"
    )
    path.write_bytes(text.encode("cp1252"))
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "Read as cp1252 (detected)." in result.output
    names = {name for name, _, _ in _held(app).values()}
    assert names == {"Hélène Lefèvre", "Jérôme Bérard à Noël", "Jürgen Groß"}


@pytest.mark.parametrize(
    ("encoding", "label"),
    [("utf-16", "UTF-16 (byte order mark)"), ("utf-8-sig", "UTF-8 (byte order mark)")],
)
def test_byte_order_marks_decide(
    cli: Cli, app: App, tmp_path: Path, encoding: str, label: str
) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes("email,name\r\nzoe@example.fr,Zoé 田中\r\n".encode(encoding))
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert f"Read as {label}." in result.output
    assert _held(app)["zoe@example.fr"][0] == "Zoé 田中"


def test_an_exported_list_reads_back_unchanged(cli: Cli, app: App, tmp_path: Path) -> None:
    """The formula escaping is undone exactly and every column is read."""
    add_address(app, "-lead@example.org", "=SUM(A1)")
    add_address(app, "plain@example.org", "'tis I")
    out = tmp_path / "out.csv"
    assert cli("subscribers", "export", "-o", str(out)).exit_code == 0
    assert "'-lead@example.org,'=SUM(A1)" in out.read_text(encoding="utf-8")
    again = cli("subscribers", "import", str(out))
    assert "added 0, updated 0, unchanged 2, suppressed 0, invalid 0" in again.output
    assert set(_held(app)) == {"-lead@example.org", "plain@example.org"}


def test_consent_columns_are_read_for_new_addresses(app: App, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "email,status,subscribed_at,confirmed_at,unsubscribed_at,consent_source,consent_ip,"
        "consent_text\n"
        "web@example.org,unsubscribed,2024-01-01T10:00:00+00:00,2024-01-01T10:05:00+00:00,"
        "2024-06-01T00:00:00+00:00,web,192.0.2.1,3f2a9c\n",
        encoding="utf-8",
    )
    import_csv(app, path)
    with app.sessions() as session:
        s = session.scalars(select(Subscriber)).one()
    assert (s.consent_source, s.consent_ip, s.consent_text) == ("web", "192.0.2.1", "3f2a9c")
    assert s.confirmed_at == datetime(2024, 1, 1, 10, 5, tzinfo=UTC)
    assert s.unsubscribed_at == datetime(2024, 6, 1, tzinfo=UTC)


BRIEF_SECTIONS = ("Middle East", "Europe")


@pytest.fixture
def two(app: App) -> Iterator[App]:
    """The same database with two newsletters: `weekly` (every section) and `brief`."""
    with with_brief(app, BRIEF_SECTIONS) as both:
        yield both


# Local parts that spreadsheets would take for formulas, and ordinary ones.
_LOCAL = st.from_regex(r"[-=+a-z0-9'][a-z0-9'+=-]{0,10}", fullmatch=True)
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=30)
_MOMENT = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)
_SUBSCRIBER = st.fixed_dictionaries(
    {
        "local": _LOCAL,
        "name": _TEXT.map(lambda t: clean_name(t[:200])),
        "status": st.sampled_from(list(SubscriberStatus)),
        "subscribed_at": _MOMENT,
        "confirmed_at": st.none() | _MOMENT,
        "unsubscribed_at": st.none() | _MOMENT,
        "consent_source": st.sampled_from(["web", "cli", "import", "=cmd", "-x", "'@x"]),
        "consent_ip": st.sampled_from(["", "192.0.2.1", "2001:db8::1", "@evil"]),
        # A digest of the wording in practice; any printable text holds too.
        "consent_text": st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
        # The sections chosen in each newsletter the reader gets (None: not subscribed).
        "weekly": st.none() | st.lists(st.sampled_from(FeedSettings().sections), unique=True),
        "brief": st.none() | st.lists(st.sampled_from(BRIEF_SECTIONS), unique=True),
    }
)


def _subscriptions(row: dict[str, object]) -> dict[str, list[str]]:
    """The live subscriptions a generated reader has: those chosen, or the default one when
    none is (an address with no newsletter left is unsubscribed as a whole)."""
    if row["status"] is UNSUBSCRIBED:
        return {"weekly": []}
    chosen = {
        slug: list(cast(list[str], row[slug]))
        for slug in ("weekly", "brief")
        if row[slug] is not None
    }
    return chosen or {"weekly": []}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(_SUBSCRIBER, max_size=6, unique_by=lambda r: r["local"].lower()))
def test_export_then_import_is_exact(two: App, rows: list[dict[str, object]]) -> None:
    app = two
    now = app.clock.now()
    with app.transaction() as session:
        session.execute(delete(Event))
        session.execute(delete(Subscription))
        session.execute(delete(Subscriber))
        for row in rows:
            fields = {k: v for k, v in row.items() if k not in ("local", "weekly", "brief")}
            email = normalise_email(f"{row['local']}@example.org")
            subscriber = Subscriber(email=email, created_at=now, updated_at=now, **fields)
            session.add(subscriber)
            session.flush()
            for slug, sections in _subscriptions(row).items():
                session.add(
                    Subscription(
                        subscriber_id=subscriber.id,
                        newsletter=slug,
                        status=STARTS_AS[subscriber.status],
                        sections=pack_sections(sections),
                        created_at=now,
                        updated_at=now,
                    )
                )
    first = io.StringIO()
    export_csv(app, first)

    path = Path(app.settings.base_dir) / "roundtrip.csv"
    path.write_text(first.getvalue(), encoding="utf-8")
    again = import_csv(app, path)
    assert (again.unchanged, again.added, again.updated, again.invalid) == (len(rows), 0, 0, 0)

    with app.transaction() as session:
        session.execute(delete(Event))
        session.execute(delete(Subscription))
        session.execute(delete(Subscriber))
    fresh = import_csv(app, path)
    assert (fresh.added, fresh.invalid) == (len(rows), 0)
    second = io.StringIO()
    export_csv(app, second)
    assert second.getvalue() == first.getvalue()

"""Settings: built-in defaults, then the TOML file, then NEWSLETTER_SECTION_KEY variables.

Secrets never come from the file: the SMTP password, the signing keys and the DKIM key path
are read from the environment only, so a configuration file can be committed safely.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import time
from pathlib import Path
from typing import Any, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.errors import ConfigError

DEFAULT_CONFIG_FILE = "newsletter.toml"
ENV_PREFIX = "NEWSLETTER_"
# A short signing key can be guessed offline from any one signed link; 32 bytes cannot.
MIN_SECRET_KEY_BYTES = 32
NEW_KEY_ADVICE = 'make one with `python3 -c "import secrets; print(secrets.token_urlsafe(32))"`'
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOSES = re.compile(r"^([A-Za-z]+)\s+(\d{1,2}):(\d{2})$")
DEFAULT_SLUG = "weekly"
# A slug names a newsletter in URLs, tokens, List-Ids and the database: short and plain.
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


@dataclass(frozen=True)
class NewsletterSettings:
    """One newsletter: `[newsletter]` for the default one, `[newsletters.SLUG]` for others."""

    slug: str = DEFAULT_SLUG
    name: str = "The Weekly Round-up"
    sender: str = "Example Magazine <newsletter@example.org>"
    reply_to: str = "editors@example.org"
    base_url: str = "http://127.0.0.1:8025"
    postal_address: str = "1 Example Street, Washington, DC 20001, USA"
    timezone: str = "America/New_York"
    templates_dir: str = ""
    list_id: str = ""
    subject: str = "{name}: {week_label}"
    logo_url: str = ""
    brand_color: str = "#a4161a"
    text_color: str = "#1a1a1a"
    background_color: str = "#f4f1ea"
    heading_font: str = "Georgia, 'Times New Roman', serif"
    body_font: str = "Helvetica, Arial, sans-serif"
    muted_color: str = "#5c574f"
    logo_width: int = 220
    tagline: str = "The week's essential reading on world affairs"
    website_url: str = ""
    # When each issue's seven-day period closes, in `timezone`; the default gives ISO weeks.
    issue_closes: str = "Monday 00:00"
    # Which of the feed sections this newsletter carries; empty: all of them.
    sections: tuple[str, ...] = ()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def closes(self) -> tuple[int, time]:
        """`issue_closes` as (weekday, 0 for Monday; local time of day)."""
        match = _CLOSES.match(self.issue_closes.strip())
        day = match[1].casefold()[:3] if match else ""
        if not match or day not in _WEEKDAYS or int(match[2]) > 23 or int(match[3]) > 59:
            raise ValueError(self.issue_closes)
        return _WEEKDAYS.index(day), time(int(match[2]), int(match[3]))


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///newsletter.db"


@dataclass(frozen=True)
class FeedSettings:
    urls: tuple[str, ...] = ()
    sections: tuple[str, ...] = (
        "Europe",
        "Middle East",
        "Asia-Pacific",
        "Americas",
        "Africa",
        "Global",
    )
    # URL path prefix -> section, e.g. {"/europe/" = "Europe"}; wins over the categories.
    section_paths: tuple[tuple[str, str], ...] = ()
    max_articles: int = 12
    teaser_words: int = 40
    timeout: float = 20.0
    max_bytes: int = 20_000_000


@dataclass(frozen=True)
class DeliverySettings:
    transport: str = "outbox:outbox"
    rate: float = 14.0
    connections: int = 4
    timeout: float = 60.0
    max_attempts: int = 5
    retry_base_seconds: float = 60.0
    lease_seconds: float = 600.0
    messages_per_connection: int = 1000
    bounce_domain: str = ""
    soft_bounce_limit: int = 3
    dkim_selector: str = ""
    dkim_domain: str = ""
    feedback_sender_id: str = "newsletter"
    unsubscribe_mailto: str = ""


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8025
    subscribe_per_ip_per_hour: int = 5
    confirm_hours: int = 48
    proxy_hops: int = 0


@dataclass(frozen=True)
class TrackingSettings:
    clicks: str = "off"  # off | aggregate | per-reader
    opens: bool = False
    retention_days: int = 90


@dataclass(frozen=True)
class IssueSettings:
    most_read: int = 0


CLICK_MODES = ("off", "aggregate", "per-reader")


@dataclass(frozen=True)
class Secrets:
    """Read from the environment only; never printed or stored."""

    smtp_password: str = field(default="", repr=False)
    secret_keys: tuple[str, ...] = field(default=(), repr=False)
    dkim_private_key_path: str = ""
    imap_password: str = field(default="", repr=False)


@dataclass(frozen=True)
class Settings:
    newsletter: NewsletterSettings = field(default_factory=NewsletterSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    feeds: FeedSettings = field(default_factory=FeedSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    web: WebSettings = field(default_factory=WebSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    issue: IssueSettings = field(default_factory=IssueSettings)
    secrets: Secrets = field(default_factory=Secrets)
    source: str = "built-in defaults"
    base_dir: Path = field(default_factory=Path.cwd)
    # Every newsletter of the install, the default one first. `newsletter` above is the one
    # the caller acts on: the default, or the one `for_newsletter` chose.
    newsletters: tuple[NewsletterSettings, ...] = ()

    def __post_init__(self) -> None:
        if not self.newsletters:
            object.__setattr__(self, "newsletters", (self.newsletter,))

    @property
    def default_newsletter(self) -> NewsletterSettings:
        return self._current_or(self.newsletters[0])

    @property
    def slugs(self) -> tuple[str, ...]:
        return tuple(n.slug for n in self.newsletters)

    def _current_or(self, newsletter: NewsletterSettings) -> NewsletterSettings:
        """`newsletter`, or the current one where they share a slug: a test or a caller that
        replaced `newsletter` is not undone by a look-up."""
        return self.newsletter if newsletter.slug == self.newsletter.slug else newsletter

    def for_newsletter(self, slug: str | None) -> Settings:
        """The same settings acting on the newsletter `slug` (None: the default one)."""
        wanted = self.newsletters[0].slug if slug is None else slug
        for newsletter in self.newsletters:
            if newsletter.slug == wanted:
                return replace(self, newsletter=self._current_or(newsletter))
        raise ConfigError(
            f"there is no newsletter {slug!r}",
            hint=f"the newsletters are: {', '.join(self.slugs)}",
        )

    @property
    def sections(self) -> tuple[str, ...]:
        """The feed sections the current newsletter carries, in the feed's order."""
        carried = {s.casefold() for s in self.newsletter.sections}
        if not carried:
            return self.feeds.sections
        return tuple(s for s in self.feeds.sections if s.casefold() in carried)

    @property
    def list_id(self) -> str:
        """RFC 2919 list identifier on a domain the sender controls."""
        if self.newsletter.list_id:
            return self.newsletter.list_id
        domain = self.newsletter.sender.rpartition("@")[2].strip(" >") or "localhost"
        return f"{self.newsletter.slug}.{domain}"

    @property
    def unsubscribe_mailto(self) -> str:
        """The List-Unsubscribe mailto address: `unsubscribe@` the From domain unless set."""
        if self.delivery.unsubscribe_mailto:
            return self.delivery.unsubscribe_mailto
        domain = self.newsletter.sender.rpartition("@")[2].strip(" >") or "localhost"
        return f"unsubscribe@{domain}"


# TOML keys that differ from the attribute names (`from` is a Python keyword).
_KEY_ALIASES = {("newsletter", "from"): "sender"}
_SECTIONS: dict[str, type[Any]] = {
    "newsletter": NewsletterSettings,
    "database": DatabaseSettings,
    "feeds": FeedSettings,
    "delivery": DeliverySettings,
    "web": WebSettings,
    "tracking": TrackingSettings,
    "issue": IssueSettings,
}


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load settings; an explicitly named file must exist, the default one may be absent."""
    env = os.environ if environ is None else environ
    explicit = path is not None or bool(env.get("NEWSLETTER_CONFIG"))
    config_path = Path(path or env.get("NEWSLETTER_CONFIG") or DEFAULT_CONFIG_FILE)
    data: dict[str, Any] = {}
    source = "built-in defaults"
    if config_path.is_file():
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{config_path}: cannot read: {exc.strerror}") from None
        source = str(config_path)
    elif explicit:
        raise ConfigError(
            f"{config_path}: no such configuration file",
            hint="create it from newsletter.example.toml or omit --config",
        )
    base_dir = config_path.resolve().parent if config_path.is_file() else Path.cwd()
    sections = {
        name: _build_section(name, cls, data.get(name, {}), env, source)
        for name, cls in _SECTIONS.items()
    }
    unknown = sorted(set(data) - set(_SECTIONS) - {"newsletters"})
    if unknown:
        raise ConfigError(f"{source}: unknown section [{unknown[0]}]")
    others = _other_newsletters(
        data.get("newsletters", {}), data.get("newsletter", {}), env, source
    )
    settings = Settings(
        secrets=_secrets(env),
        source=source,
        base_dir=base_dir,
        newsletters=(sections["newsletter"], *others),
        **sections,
    )
    _validate(settings)
    return settings


def _family(section: str) -> str:
    """`newsletters.brief` takes the keys of `newsletter`, with their aliases and ranges."""
    return "newsletter" if section.startswith("newsletters.") else section


def _other_newsletters(
    tables: Any, default: Any, env: Mapping[str, str], source: str
) -> list[NewsletterSettings]:
    """`[newsletters.SLUG]` tables: each starts from `[newsletter]` and changes what it names.

    The environment overrides only the default newsletter, whose variables they are.
    """
    if not isinstance(tables, dict) or not isinstance(default, dict):
        raise ConfigError(f"{source}: [newsletters] must hold tables such as [newsletters.brief]")
    shared = {k: v for k, v in default.items() if k not in ("slug", "list_id")}
    others = []
    for slug, values in tables.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [newsletters.{slug}] must be a table")
        if "slug" in values:
            raise ConfigError(f"{source}: newsletters.{slug}.slug: the table's name is its slug")
        merged = {**shared, **values, "slug": slug}
        others.append(_build_section(f"newsletters.{slug}", NewsletterSettings, merged, {}, source))
    return others


def _build_section(
    section: str,
    cls: type[Any],
    values: Any,
    env: Mapping[str, str],
    source: str,
) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: [{section}] must be a table")
    by_attr: dict[str, Any] = {}
    names = {f.name for f in fields(cls)}
    types = get_type_hints(cls)
    for key, value in values.items():
        attr = _KEY_ALIASES.get((_family(section), key), key)
        if attr not in names:
            raise ConfigError(f"{source}: unknown key {section}.{key}")
        by_attr[attr] = _coerce(section, key, types[attr], value, source)
    for attr in names:
        key = next((k for (s, k), a in _KEY_ALIASES.items() if s == section and a == attr), attr)
        # `[newsletter]` keys only: a [newsletters.SLUG] table has no variables of its own.
        env_name = f"{ENV_PREFIX}{section}_{key}".upper()
        if env_name in env:
            by_attr[attr] = _coerce(section, key, types[attr], env[env_name], f"${env_name}")
    return replace(cls(), **by_attr)


@dataclass(frozen=True)
class _Range:
    """The numbers a key accepts: `low` (excluded when `open_low`) up to `high`."""

    low: float = 0
    high: float = math.inf
    open_low: bool = False

    def admits(self, number: float) -> bool:
        above = number > self.low if self.open_low else number >= self.low
        return above and number <= self.high

    def describe(self) -> str:
        if self.high != math.inf:
            return f"from {self.low:g} to {self.high:g}"
        return f"greater than {self.low:g}" if self.open_low else f"at least {self.low:g}"


# Every number is finite and at least 0 unless listed here; ports, counts and durations
# that 0 would break ask for more.
_AT_LEAST_1 = _Range(1)
_POSITIVE = _Range(0, open_low=True)
_RANGES: dict[tuple[str, str], _Range] = {
    ("newsletter", "logo_width"): _AT_LEAST_1,
    ("feeds", "max_articles"): _AT_LEAST_1,
    ("feeds", "teaser_words"): _AT_LEAST_1,
    ("feeds", "timeout"): _POSITIVE,
    ("feeds", "max_bytes"): _AT_LEAST_1,
    ("delivery", "connections"): _AT_LEAST_1,
    ("delivery", "timeout"): _POSITIVE,
    ("delivery", "max_attempts"): _AT_LEAST_1,
    ("delivery", "lease_seconds"): _POSITIVE,
    ("delivery", "messages_per_connection"): _AT_LEAST_1,
    ("delivery", "soft_bounce_limit"): _AT_LEAST_1,
    ("web", "port"): _Range(1, 65535),
    ("web", "confirm_hours"): _AT_LEAST_1,
    ("tracking", "retention_days"): _AT_LEAST_1,
}


def _coerce(section: str, key: str, kind: Any, value: Any, source: str) -> Any:
    """Convert a TOML or environment value to the field's declared type, or say which key is
    off: a TOML `true` is no port and 1.5 no count, whatever Python would make of them."""
    where = f"{source}: {section}.{key}"
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "0", "false", "no"}:
            return value.lower() in {"1", "true", "yes"}
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    if kind is int or kind is float:
        number = _number(kind, value)
        limits = _RANGES.get((_family(section), key), _Range())
        noun = "a whole number" if kind is int else "a number"
        if number is None:
            raise ConfigError(f"{where} must be {noun}, not {value!r}")
        if not limits.admits(number):
            raise ConfigError(f"{where} must be {limits.describe()}, not {value!r}")
        return number
    if kind == tuple[tuple[str, str], ...]:
        return _table(where, value)
    if kind == tuple[str, ...]:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings")
        return tuple(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {value!r}")
    return value


def _number(kind: type[int] | type[float], value: Any) -> int | float | None:
    """`value` as a finite `kind`, or None: TOML gives typed values, the environment text."""
    if isinstance(value, str):
        try:
            value = int(value) if kind is int else float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if kind is int:
        return value if isinstance(value, int) else None
    return float(value) if math.isfinite(value) else None


def check_secret_keys(keys: tuple[str, ...]) -> None:
    """Refuse a missing or short signing key before it signs a single link."""
    if not keys:
        raise ConfigError("NEWSLETTER_SECRET_KEY is not set", hint=NEW_KEY_ADVICE)
    for position, key in enumerate(keys, 1):
        size = len(key.encode())
        if size < MIN_SECRET_KEY_BYTES:
            raise ConfigError(
                f"NEWSLETTER_SECRET_KEY: key {position} of {len(keys)} is {size} bytes long; "
                f"each key must be at least {MIN_SECRET_KEY_BYTES} bytes",
                hint=NEW_KEY_ADVICE,
            )


def _table(where: str, value: Any) -> tuple[tuple[str, str], ...]:
    """A TOML table of strings, or `key=value, key=value` from the environment, in order."""
    if isinstance(value, str):
        pairs = [part.partition("=") for part in value.split(",") if part.strip()]
        if any(not sep for _k, sep, _v in pairs):
            raise ConfigError(f"{where} must be written as prefix=Section, prefix=Section")
        value = {k.strip(): v.strip() for k, _sep, v in pairs}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{where} must be a table of strings")
    return tuple(value.items())


def _secrets(env: Mapping[str, str]) -> Secrets:
    keys = tuple(k for k in env.get("NEWSLETTER_SECRET_KEY", "").replace(",", " ").split() if k)
    if keys:
        check_secret_keys(keys)
    return Secrets(
        smtp_password=env.get("NEWSLETTER_SMTP_PASSWORD", ""),
        secret_keys=keys,
        dkim_private_key_path=env.get("NEWSLETTER_DKIM_PRIVATE_KEY", ""),
        imap_password=env.get("NEWSLETTER_IMAP_PASSWORD", ""),
    )


# A bare address that can sit inside `<mailto:...?subject=...>` without escaping.
_MAILBOX = re.compile(r"[A-Za-z0-9._+=-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def _validate(settings: Settings) -> None:
    seen: set[str] = set()
    for newsletter in settings.newsletters:
        if newsletter.slug in seen:
            raise ConfigError(f"{settings.source}: two newsletters are called {newsletter.slug!r}")
        seen.add(newsletter.slug)
        _validate_newsletter(replace(settings, newsletter=newsletter))
    _validate_shared(settings)


def _validate_newsletter(settings: Settings) -> None:
    src = settings.source
    n = settings.newsletter
    key = "newsletter" if n is settings.default_newsletter else f"newsletters.{n.slug}"
    if not _SLUG.match(n.slug):
        raise ConfigError(
            f"{src}: newsletter slug {n.slug!r} must be up to 40 lower-case letters, digits and -"
        )
    known = {s.casefold() for s in settings.feeds.sections}
    for section in n.sections:
        if section.casefold() not in known:
            raise ConfigError(
                f"{src}: {key}.sections: {section!r} is not one of feeds.sections "
                f"({', '.join(settings.feeds.sections)})"
            )
    try:
        n.zone  # noqa: B018 - resolving the zone is the check
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{src}: {key}.timezone {n.timezone!r} is not a known time zone"
        ) from None
    try:
        n.closes  # noqa: B018 - parsing it is the check
    except ValueError:
        raise ConfigError(
            f"{src}: {key}.issue_closes {n.issue_closes!r} is not a "
            'weekday and a time such as "Thursday 07:00"'
        ) from None
    if "@" not in n.sender:
        raise ConfigError(f"{src}: {key}.from must contain an email address")
    if not n.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{src}: {key}.base_url must start with https://")


def _validate_shared(settings: Settings) -> None:
    src = settings.source
    mailto = settings.delivery.unsubscribe_mailto
    if mailto and not _MAILBOX.fullmatch(mailto):
        raise ConfigError(
            f"{src}: delivery.unsubscribe_mailto must be a bare address such as "
            f"unsubscribe@example.org, not {mailto!r}"
        )
    known = {s.casefold() for s in settings.feeds.sections}
    for prefix, section in settings.feeds.section_paths:
        if section.casefold() not in known or not prefix.startswith("/"):
            raise ConfigError(
                f"{src}: feeds.section_paths {prefix!r} = {section!r}: the prefix must start "
                "with / and the section must be one of feeds.sections"
            )
    if settings.tracking.clicks not in CLICK_MODES:
        raise ConfigError(
            f"{src}: tracking.clicks must be one of {', '.join(CLICK_MODES)}, "
            f"not {settings.tracking.clicks!r}"
        )
    if settings.secrets.dkim_private_key_path and not (
        settings.delivery.dkim_selector and settings.delivery.dkim_domain
    ):
        raise ConfigError(
            f"{src}: NEWSLETTER_DKIM_PRIVATE_KEY is set but delivery.dkim_selector or "
            "delivery.dkim_domain is missing"
        )

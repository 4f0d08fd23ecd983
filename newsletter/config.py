"""Settings: built-in defaults, then the TOML file, then NEWSLETTER_SECTION_KEY variables.

Secrets never come from the file: the SMTP password, the signing keys and the DKIM key path
are read from the environment only, so a configuration file can be committed safely.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.errors import ConfigError

DEFAULT_CONFIG_FILE = "newsletter.toml"
ENV_PREFIX = "NEWSLETTER_"


@dataclass(frozen=True)
class NewsletterSettings:
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

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


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
    max_articles: int = 12
    teaser_words: int = 90
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


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8025
    subscribe_per_ip_per_hour: int = 5
    confirm_hours: int = 48
    proxy_hops: int = 0


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
    secrets: Secrets = field(default_factory=Secrets)
    source: str = "built-in defaults"
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def list_id(self) -> str:
        """RFC 2919 list identifier on a domain the sender controls."""
        if self.newsletter.list_id:
            return self.newsletter.list_id
        domain = self.newsletter.sender.rpartition("@")[2].strip(" >") or "localhost"
        return f"weekly.{domain}"


# TOML keys that differ from the attribute names (`from` is a Python keyword).
_KEY_ALIASES = {("newsletter", "from"): "sender"}
_SECTIONS: dict[str, type[Any]] = {
    "newsletter": NewsletterSettings,
    "database": DatabaseSettings,
    "feeds": FeedSettings,
    "delivery": DeliverySettings,
    "web": WebSettings,
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
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: unknown section [{unknown[0]}]")
    settings = Settings(secrets=_secrets(env), source=source, base_dir=base_dir, **sections)
    _validate(settings)
    return settings


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
        attr = _KEY_ALIASES.get((section, key), key)
        if attr not in names:
            raise ConfigError(f"{source}: unknown key {section}.{key}")
        by_attr[attr] = _coerce(section, key, types[attr], value, source)
    for attr in names:
        key = next((k for (s, k), a in _KEY_ALIASES.items() if s == section and a == attr), attr)
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
        limits = _RANGES.get((section, key), _Range())
        noun = "a whole number" if kind is int else "a number"
        if number is None:
            raise ConfigError(f"{where} must be {noun}, not {value!r}")
        if not limits.admits(number):
            raise ConfigError(f"{where} must be {limits.describe()}, not {value!r}")
        return number
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


def _secrets(env: Mapping[str, str]) -> Secrets:
    keys = tuple(k for k in env.get("NEWSLETTER_SECRET_KEY", "").replace(",", " ").split() if k)
    return Secrets(
        smtp_password=env.get("NEWSLETTER_SMTP_PASSWORD", ""),
        secret_keys=keys,
        dkim_private_key_path=env.get("NEWSLETTER_DKIM_PRIVATE_KEY", ""),
        imap_password=env.get("NEWSLETTER_IMAP_PASSWORD", ""),
    )


def _validate(settings: Settings) -> None:
    src = settings.source
    try:
        settings.newsletter.zone  # noqa: B018 - resolving the zone is the check
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{src}: newsletter.timezone {settings.newsletter.timezone!r} is not a known time zone"
        ) from None
    if "@" not in settings.newsletter.sender:
        raise ConfigError(f"{src}: newsletter.from must contain an email address")
    if not settings.newsletter.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{src}: newsletter.base_url must start with https://")
    if settings.secrets.dkim_private_key_path and not (
        settings.delivery.dkim_selector and settings.delivery.dkim_domain
    ):
        raise ConfigError(
            f"{src}: NEWSLETTER_DKIM_PRIVATE_KEY is set but delivery.dkim_selector or "
            "delivery.dkim_domain is missing"
        )

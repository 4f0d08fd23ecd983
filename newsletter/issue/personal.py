"""The personal fields of a message, and how a rendered issue holds their places.

An issue is rendered once, with a marker where each reader's own value goes (their
unsubscribe and preferences links, address, name, click token); each copy then fills the
markers, escaped for where each one sits: text, an attribute or a URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import quote

from newsletter.config import Settings

ANONYMOUS_NAME = "reader"


@dataclass(frozen=True)
class PersonalFields:
    unsubscribe_url: str
    email: str
    name: str
    # The reader's click token, in `[tracking] clicks = "per-reader"` mode only.
    reader: str = ""
    # The reader's preferences page (newsletters, sections, name).
    preferences_url: str = ""


MARKERS = PersonalFields(
    unsubscribe_url="NLP-UNSUBSCRIBE_URL-0D1C",
    email="NLP-EMAIL-0D1C",
    name="NLP-NAME-0D1C",
    reader="NLP-READER-0D1C",
    preferences_url="NLP-PREFERENCES_URL-0D1C",
)
# Where a personal field sits in the rendered template; public so the message builder can
# find the same places when it splits the MIME template around them.
PERSONAL_MARKER = re.compile(
    r"NLP-(UNSUBSCRIBE_URL|EMAIL|NAME|READER|PREFERENCES_URL)-0D1C(?:-(S?ATTR|S?URI))?"
)
_TAG = re.compile(r"<[a-zA-Z][^>]*>")
# lxml quotes a value with ' when it contains " (and no '), so both quotings occur.
_ATTRIBUTE = re.compile(r"""([\w:.-]+)=("[^"]*"|'[^']*')""")
# The attributes lxml serialises as URLs (percent-encoding what is not ASCII).
_URL_ATTRIBUTES = frozenset({"href", "src", "action"})
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


def personalise(template: str, fields: PersonalFields, *, html: bool) -> str:
    """Fill a rendered template's markers with one subscriber's values, escaped for HTML
    the way lxml serialises them, or verbatim for the text part."""
    reader = shown(fields)
    values = {
        "UNSUBSCRIBE_URL": reader.unsubscribe_url,
        "EMAIL": reader.email,
        "NAME": reader.name,
        "READER": reader.reader,
        "PREFERENCES_URL": reader.preferences_url,
    }

    def fill(match: re.Match[str]) -> str:
        value = values[match[1]]
        context = match[2]
        if not html:
            return value
        if not context:
            return _escape_text(value)
        if context.endswith("URI"):
            value = quote(value.lstrip(" \t\n\r\f"), safe=_URL_SAFE)
        if context.startswith("S"):
            return _escape_text(value).replace("'", "&#39;")
        return _escape_attribute(value)

    return PERSONAL_MARKER.sub(fill, template)


def sample_fields(settings: Settings) -> PersonalFields:
    """Harmless values for previews and checks, shaped like a real subscriber's."""
    base = settings.newsletter.base_url.rstrip("/")
    return PersonalFields(
        unsubscribe_url=f"{base}/u/preview-only-not-a-real-token",
        email="reader@example.org",
        name="Sample Reader",
        preferences_url=f"{base}/p/preview-only-not-a-real-token",
    )


def shown(fields: PersonalFields) -> PersonalFields:
    """What the templates show: a subscriber without a name is greeted as a reader."""
    return replace(fields, name=fields.name.strip() or ANONYMOUS_NAME)


def _escape_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attribute(value: str) -> str:
    return _escape_text(value).replace('"', "&quot;")


def tag_contexts(html: str) -> str:
    """Mark each marker that sits inside a tag as an attribute (or URL attribute) value."""

    def in_attribute(match: re.Match[str]) -> str:
        kind = "URI" if match[1].lower() in _URL_ATTRIBUTES else "ATTR"
        if match[2].startswith("'"):
            kind = f"S{kind}"
        value = PERSONAL_MARKER.sub(lambda m: f"{m[0]}-{kind}", match[2])
        return f"{match[1]}={value}"

    def in_tag(match: re.Match[str]) -> str:
        tag = match[0]
        return _ATTRIBUTE.sub(in_attribute, tag) if "NLP-" in tag else tag

    return _TAG.sub(in_tag, html)

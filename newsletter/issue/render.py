"""The round-up email: Jinja2 -> MJML -> mjml-python -> premailer, once per issue.

Rendering is the expensive part of a message (MJML compilation and CSS inlining take
milliseconds), so it happens once per issue with markers where the personal fields go. The
markers are plain ASCII words that Jinja, MJML and lxml all leave alone; after inlining, each
one is tagged with the context it ended up in (text, attribute, or URL attribute), so that
`personalise` can escape a subscriber's values exactly as a full render would have done and
fill them in with one pass of string substitution.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import mjml
from markupsafe import Markup

from newsletter.config import Settings
from newsletter.errors import ConfigError, RenderError
from newsletter.issue.checks import GMAIL_CLIP_BYTES, audit
from newsletter.issue.contrast import palette
from newsletter.issue.periods import Week
from newsletter.issue.personal import (
    MARKERS,
    PersonalFields,
    personalise,
    sample_fields,
    shown,
    tag_contexts,
)
from newsletter.issue.text import html_to_text, wrap
from newsletter.tracking.links import article_links, open_pixel

__all__ = [
    "GMAIL_CLIP_BYTES",
    "IssueContent",
    "RenderedIssue",
    "SectionsEmail",
    "Teaser",
    "archive_url",
    "draft_url",
    "render_for_sections",
    "render_issue",
]

HTML_TEMPLATE = "email/roundup.mjml.j2"
TEXT_TEMPLATE = "email/roundup.txt.j2"
CSS_TEMPLATE = "email/roundup.css.j2"
PREHEADER_MIN = 40
PREHEADER_MAX = 100


@dataclass(frozen=True)
class Teaser:
    article_id: int
    url: str
    title: str
    kicker: str
    section: str
    authors: tuple[str, ...]
    published_at: datetime
    teaser_html: str
    image_url: str
    image_alt: str
    image_credit: str
    featured: bool
    image_width: int = 0  # natural width in pixels; 0 when unknown


@dataclass(frozen=True)
class IssueContent:
    week: Week
    teasers: tuple[Teaser, ...]
    most_read: tuple[Teaser, ...] = ()  # "Most read last week", at the top

    def only(self, sections: Sequence[str]) -> IssueContent:
        """The stories of these sections alone (the top story and those of "Most read" too,
        only when in one of them): what a reader who chose them receives."""
        wanted = {s.casefold() for s in sections}
        return IssueContent(
            week=self.week,
            teasers=tuple(t for t in self.teasers if t.section.casefold() in wanted),
            most_read=tuple(t for t in self.most_read if t.section.casefold() in wanted),
        )


@dataclass(frozen=True)
class RenderedIssue:
    subject: str
    preheader: str
    html: str
    text: str
    web_html: str
    problems: tuple[str, ...]
    html_bytes: int


@dataclass(frozen=True)
class SectionsEmail:
    """The email of the readers who chose some sections: their stories alone, with the
    masthead saying which sections they follow."""

    html: str
    text: str
    stories: int


_BLANK_RUNS = re.compile(r"\n{3,}")
_IMG_WITHOUT_BORDER = re.compile(r"<img\b(?![^>]*\bborder=)")
_IGNORE = ' data-premailer="ignore"'
_PLAIN_STYLE = re.compile(r"<style(?![^>]*\bmedia=)([^>]*)>")


def render_issue(
    content: IssueContent,
    settings: Settings,
    templates_dirs: Sequence[Path],
    *,
    recipient: PersonalFields | None = None,
) -> RenderedIssue:
    """Render the issue once, with markers for the personal fields.

    With `recipient`, the HTML and text parts are that subscriber's copy rendered in full
    instead: the slow path that `personalise` is checked against.
    """
    env = _environment(tuple(Path(d) for d in templates_dirs))
    subject = _subject(content.week, settings)
    preheader = _preheader(content, settings)
    css = _render_template(env, CSS_TEMPLATE, _context(content, settings, subject, preheader))

    def html_for(who: PersonalFields | None) -> str:
        context = _context(content, settings, subject, preheader, recipient=who)
        return _inline(_compile(_render_template(env, HTML_TEMPLATE, context)), css)

    person = shown(recipient) if recipient is not None else MARKERS
    html = _with_pixel(html_for(person), open_pixel(settings, str(content.week)))
    if recipient is None:
        html = tag_contexts(html)
    text = _tidy_text(
        _render_template(
            env, TEXT_TEMPLATE, _context(content, settings, subject, preheader, recipient=person)
        )
    )
    web_html = html_for(None)
    sample = personalise(html, sample_fields(settings), html=True)
    return RenderedIssue(
        subject=subject,
        preheader=preheader,
        html=html,
        text=text,
        web_html=web_html,
        problems=(*audit(sample), *_most_read_problem(settings)),
        html_bytes=len(html.encode("utf-8")),
    )


def render_for_sections(
    content: IssueContent,
    settings: Settings,
    templates_dirs: Sequence[Path],
    sections: Sequence[str],
) -> SectionsEmail | None:
    """The email parts, with markers, for readers who chose `sections`; None when the issue
    has no story in any of them (such a reader gets no message this week).

    Rendered like the full issue, less the web edition and the checks, which are the full
    issue's business: one of these is made per combination of sections a send meets.
    """
    chosen = content.only(sections)
    if not chosen.teasers:
        return None
    env = _environment(tuple(Path(d) for d in templates_dirs))
    subject = _subject(chosen.week, settings)
    preheader = _preheader(chosen, settings)
    shown = tuple(sections)
    context = {
        **_context(chosen, settings, subject, preheader, recipient=MARKERS),
        "reader_sections": shown,
    }
    css = _render_template(env, CSS_TEMPLATE, context)
    html = _inline(_compile(_render_template(env, HTML_TEMPLATE, context)), css)
    html = tag_contexts(_with_pixel(html, open_pixel(settings, str(chosen.week))))
    text = _tidy_text(_render_template(env, TEXT_TEMPLATE, context))
    return SectionsEmail(html, text, len(chosen.teasers))


@functools.lru_cache(maxsize=8)
def _environment(dirs: tuple[Path, ...]) -> jinja2.Environment:
    """One environment per template search path, so compiled templates are reused."""
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(d) for d in dirs]),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("mjml.j2", "html.j2", "mjml", "html"),
            disabled_extensions=("txt.j2", "css.j2"),
            default_for_string=True,
            default=True,
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        href=_href,
        byline=_byline,
        css=_css_value,
        longdate=_long_date,
        teaser_text=html_to_text,
        wrap=wrap,
    )
    return env


def _context(
    content: IssueContent,
    settings: Settings,
    subject: str,
    preheader: str,
    *,
    recipient: PersonalFields | None = None,
) -> dict[str, Any]:
    brand = settings.newsletter
    base = brand.base_url.rstrip("/")
    regular = (t for t in content.teasers if not t.featured)
    featured = [t for t in content.teasers if t.featured]
    groups = [(name, list(group)) for name, group in itertools.groupby(regular, _section)]
    return {
        "brand": brand,
        "colours": palette(brand),
        "publication": parseaddr(brand.sender)[0] or brand.name,
        "subject": subject,
        "preheader": preheader,
        "week": str(content.week),
        "week_label": content.week.label(),
        "zone": brand.zone,
        "story_count": len(content.teasers),
        "featured": featured,
        "sections": [
            (name or _unfiled_heading(alone=len(groups) == 1 and not featured), teasers)
            for name, teasers in groups
        ],
        "links": {
            "home": brand.website_url or base,
            "browser": archive_url(settings, content.week),
            "subscribe": f"{base}/subscribe",
        },
        "recipient": recipient,
        "most_read": content.most_read,
        # Tracked addresses go in the email only, never in the web edition.
        "tracked": {} if recipient is None else _tracked(content, settings),
        "per_reader": settings.tracking.clicks == "per-reader",
        # The sections a reader chose, for their copy's masthead; none in the full issue.
        "reader_sections": (),
    }


def archive_url(settings: Settings, week: Week) -> str:
    """Where "View in browser" points: the issue's page in the archive, once it is sent.
    Another newsletter than the default names itself, as the archive's pages expect."""
    url = f"{settings.newsletter.base_url.rstrip('/')}/archive/{week}"
    if settings.newsletter.slug != settings.default_newsletter.slug:
        url += f"?newsletter={settings.newsletter.slug}"
    return url


def draft_url(settings: Settings, token: str) -> str:
    """The signed page of an issue not yet sent, for test copies' "View in browser"."""
    return f"{settings.newsletter.base_url.rstrip('/')}/archive/draft/{token}"


def _most_read_problem(settings: Settings) -> tuple[str, ...]:
    if settings.issue.most_read and settings.tracking.clicks == "off":
        return (
            "[issue] most_read is set but [tracking] clicks is off: "
            "there are no clicks to rank, so the issue has no 'Most read last week'",
        )
    return ()


def _with_pixel(html: str, pixel: str) -> str:
    """The email with its open-counting image last in the body, when opens are counted."""
    if not pixel:
        return html
    image = f'<img src="{pixel}" width="1" height="1" alt="" style="display:block;border:0">'
    head, found, tail = html.rpartition("</body>")
    return f"{head}{image}{found}{tail}" if found else html + image


def _tracked(content: IssueContent, settings: Settings) -> dict[int, str]:
    return article_links(settings, str(content.week), (t.article_id for t in content.teasers))


@jinja2.pass_context
def _href(context: jinja2.runtime.Context, teaser: Teaser) -> str:
    """Where a link to `teaser` points: the article itself, or its `/c/` address when clicks
    are tracked (followed, per reader, by the reader's own token)."""
    tracked = context.get("tracked") or {}
    link = tracked.get(teaser.article_id)
    if link is None:
        return teaser.url
    recipient = context.get("recipient")
    if context.get("per_reader") and recipient is not None:
        return f"{link}/{recipient.reader}"
    return str(link)


def _section(teaser: Teaser) -> str:
    return teaser.section


def _unfiled_heading(*, alone: bool) -> str:
    """The heading of the stories in no section, which selection puts last: "Also" only
    reads well when something came before."""
    return "This week" if alone else "Also this week"


def _render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or exc.name or name
        raise RenderError(f"{where}, line {exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"{name}: template {exc.name!r} not found") from None
    except jinja2.TemplateError as exc:
        raise RenderError(f"{_failing_template(exc, name)}: {exc.message}") from None


def _failing_template(exc: BaseException, default: str) -> str:
    """The innermost template in the traceback (Jinja rewrites frames to template lines)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    return f"{frames[-1].filename}, line {frames[-1].lineno}" if frames else default


def _compile(source: str) -> str:
    try:
        return str(mjml.mjml2html(source, fonts={}))
    except (ValueError, RuntimeError) as exc:
        raise RenderError(f"{HTML_TEMPLATE} (or a template it includes): MJML: {exc}") from None


def _inline(html: str, css: str) -> str:
    """Inline the template's own CSS; MJML's head styles and media queries stay in <head>."""
    html = _PLAIN_STYLE.sub(rf"<style{_IGNORE}\1>", html)
    html = html.replace("<!doctype html>", "<!DOCTYPE html>", 1)
    # Imported when an issue is rendered: with cssutils and requests it is a third of a
    # send's memory, and a send whose issue is already rendered never needs it.
    from premailer import Premailer  # noqa: PLC0415

    premailer = Premailer(
        html,
        css_text=[css],
        strip_important=False,
        remove_classes=False,
        allow_network=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inlined = str(premailer.transform(pretty_print=False))
    # Styles inside Outlook's conditional comments are text to lxml and keep the mark.
    inlined = inlined.replace(_IGNORE, "")
    # Old clients draw a link border around linked images unless the attribute says not to.
    return _IMG_WITHOUT_BORDER.sub('<img border="0"', inlined)


def _tidy_text(text: str) -> str:
    """Trailing spaces off and at most one blank line in a row, whatever the template did."""
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)) + "\n"


def _subject(week: Week, settings: Settings) -> str:
    template = settings.newsletter.subject
    try:
        return template.format(name=settings.newsletter.name, week_label=week.label())
    except (KeyError, IndexError, ValueError):
        raise ConfigError(
            f"newsletter.subject {template!r} is not a valid format",
            hint="use {name} and {week_label}, e.g. '{name}: {week_label}'",
        ) from None


def _preheader(content: IssueContent, settings: Settings) -> str:
    """40-100 characters that repeat what the reader will see first: the lead headline."""
    brand = settings.newsletter
    if not content.teasers:
        text = f"{brand.name}, {content.week.label()}: no new stories this week"
    else:
        lead = next((t for t in content.teasers if t.featured), content.teasers[0])
        others = len(content.teasers) - 1
        text = lead.title
        if others:
            text += f", and {others} more {'story' if others == 1 else 'stories'} this week"
    if len(text) < PREHEADER_MIN:
        text = f"{text} | {brand.name}, {content.week.label()}"
    if len(text) > PREHEADER_MAX:
        text = text[: PREHEADER_MAX - 1].rsplit(" ", 1)[0].rstrip(",;:") + "\u2026"
    return text


def _byline(authors: Sequence[str]) -> str:
    names = [a for a in authors if a.strip()]
    if not names:
        return ""
    if len(names) == 1:
        return f"By {names[0]}"
    return f"By {', '.join(names[:-1])} and {names[-1]}"


def _long_date(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return f"{local.day} {local:%B %Y}"


_CSS_UNSAFE = re.compile(r"[<>{};\\]")


def _css_value(value: object) -> Markup:
    """A settings value (colour, font list) made safe to place in CSS or an MJML attribute.

    Autoescaping would turn the quotes of a font list into entities, which CSS inside a
    <style> element does not decode; instead, the characters that could end the value or
    the element are removed.
    """
    cleaned = _CSS_UNSAFE.sub("", str(value)).replace('"', "'")
    return Markup(cleaned)  # noqa: S704 - cleaned of everything that could break out

"""The round-up email: one render per issue, personalised by substitution, checked for what
mail clients punish."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from newsletter.config import NewsletterSettings, Settings
from newsletter.errors import ConfigError, RenderError
from newsletter.issue.checks import GMAIL_CLIP_BYTES, inventory
from newsletter.issue.render import (
    IssueContent,
    PersonalFields,
    RenderedIssue,
    Teaser,
    personalise,
    render_issue,
)
from tests.sample_issue import WEEK, sample_issue, sample_teasers

PACKAGED = Path(__file__).resolve().parent.parent / "templates"
MARKER = re.compile(r"NLP-[A-Z_]+-0D1C")

SUBSCRIBERS = [
    PersonalFields(
        "https://news.example.org/u/MQ.abc-DEF_123",
        "jane@example.org",
        "Jane Doe",
        preferences_url="https://news.example.org/p/MQ.ghi",
    ),
    PersonalFields(
        "https://news.example.org/u/Mg.x?list=weekly&ref=mail",
        "o'brien+news&co@example.org",
        'Seán O\'Brien & "Sons" <Ltd>',
        preferences_url="https://news.example.org/p/Mg.y?a=1&b=2",
    ),
    PersonalFields(
        "https://news.example.org/u/été token",
        "zoë@exämple.org",
        "Zoë Ñúñez 李",
        preferences_url="https://news.example.org/p/été token",
    ),
    PersonalFields(
        "https://news.example.org/u/Mw.q",
        "anon@example.org",
        "   ",
        preferences_url="https://news.example.org/p/Mw.r",
    ),
]


@pytest.fixture(scope="module")
def brand() -> Settings:
    return Settings(
        newsletter=NewsletterSettings(
            name="The Weekly Round-up",
            sender="Example Magazine <newsletter@example.org>",
            base_url="https://news.example.org",
            website_url="https://www.example.org",
        )
    )


@pytest.fixture(scope="module")
def rendered(brand: Settings) -> RenderedIssue:
    return render_issue(sample_issue(), brand, [PACKAGED])


@pytest.mark.parametrize("fields", SUBSCRIBERS, ids=["plain", "escaping", "non-ascii", "no-name"])
def test_personalising_the_single_render_equals_a_full_render(
    brand: Settings, rendered: RenderedIssue, fields: PersonalFields
) -> None:
    full = render_issue(sample_issue(), brand, [PACKAGED], recipient=fields)
    assert personalise(rendered.html, fields, html=True) == full.html
    assert personalise(rendered.text, fields, html=False) == full.text
    assert MARKER.search(full.html) is None


def test_personalised_copy_carries_the_subscribers_values_in_both_parts(
    rendered: RenderedIssue,
) -> None:
    fields = SUBSCRIBERS[1]
    html = personalise(rendered.html, fields, html=True)
    text = personalise(rendered.text, fields, html=False)
    assert MARKER.search(html) is None
    assert MARKER.search(text) is None
    assert fields.unsubscribe_url in inventory(html).links
    assert 'Seán O\'Brien &amp; "Sons" &lt;Ltd&gt;' in html
    assert f"\n{fields.unsubscribe_url}\n" in text
    assert f"\n{fields.email}\n" in text
    assert 'Dear Seán O\'Brien & "Sons" <Ltd>,' in text


def test_a_subscriber_without_a_name_is_greeted_as_a_reader(rendered: RenderedIssue) -> None:
    html = personalise(rendered.html, SUBSCRIBERS[3], html=True)
    assert "Dear reader," in html
    assert "Dear reader," in personalise(rendered.text, SUBSCRIBERS[3], html=False)


def test_subject_and_preheader(rendered: RenderedIssue) -> None:
    assert rendered.subject == "The Weekly Round-up: Week of 18 November 2024"
    assert 40 <= len(rendered.preheader) <= 100
    lead = sample_teasers()[0].title
    assert rendered.preheader.startswith(lead)
    hidden = re.search(r'<div class="nl-preheader" style="([^"]*)">([^<]*)</div>', rendered.html)
    assert hidden is not None
    style = hidden[1].replace(" ", "")
    for rule in ("display:none", "max-height:0", "overflow:hidden", "mso-hide:all"):
        assert rule in style
    assert hidden[2] == rendered.preheader
    body_after = rendered.html[hidden.end() :]
    assert lead.replace("'", "'") in body_after


def test_every_image_is_absolute_https_with_alt_width_and_no_border(
    rendered: RenderedIssue,
) -> None:
    images = re.findall(r"<img\b[^>]*>", rendered.html)
    assert len(images) == 12
    for tag in images:
        assert re.search(r'\bsrc="https://[^"]+"', tag), tag
        assert re.search(r'\balt="[^"]+"', tag), tag
        width = re.search(r'\bwidth="(\d+)"', tag)
        assert width is not None, tag
        assert int(width[1]) <= 600, tag
        assert 'border="0"' in tag, tag


def test_layout_is_at_most_600_pixels_wide_and_declares_dark_mode(
    rendered: RenderedIssue,
) -> None:
    widths = [int(w) for w in re.findall(r"max-width:(\d+)px", rendered.html)]
    assert widths
    assert max(widths) <= 600
    assert '<meta name="color-scheme" content="light dark">' in rendered.html
    assert '<meta name="supported-color-schemes" content="light dark">' in rendered.html
    assert rendered.html.startswith("<!DOCTYPE html>")
    assert 'lang="en"' in rendered.html


def test_css_is_inlined_but_media_queries_and_their_classes_survive(
    rendered: RenderedIssue,
) -> None:
    html = rendered.html
    assert "@media only screen and (max-width: 479px)" in html
    assert "prefers-color-scheme: dark" in html
    assert 'class="nl-headline"' in html
    assert "nl-photo" in html
    headline = re.search(r'<h2 class="nl-headline" style="([^"]*)"', html)
    assert headline is not None
    assert "margin:0" in headline[1].replace(" ", "")
    assert "data-premailer" not in html


def test_html_stays_well_under_the_gmail_clip(rendered: RenderedIssue) -> None:
    assert rendered.html_bytes == len(rendered.html.encode())
    assert rendered.html_bytes < GMAIL_CLIP_BYTES * 0.95
    assert rendered.problems == ()


def test_text_part_reads_at_72_columns_with_every_story(rendered: RenderedIssue) -> None:
    text = personalise(rendered.text, SUBSCRIBERS[0], html=False)
    for line in text.splitlines():
        assert len(line) <= 72 or " " not in line.strip("<>"), line
    for teaser in sample_teasers():
        assert teaser.title in text
        assert teaser.url in text
        assert teaser.authors[-1] in text
    assert "NATO's eastern flank." in text
    assert "arbitration & bilateral deals" in text
    assert "1 Example Street, Washington, DC 20001, USA" in text
    assert "<p>" not in text


def test_every_link_in_the_html_is_in_the_text(rendered: RenderedIssue) -> None:
    html = personalise(rendered.html, SUBSCRIBERS[0], html=True)
    text = personalise(rendered.text, SUBSCRIBERS[0], html=False)
    links = set(inventory(html).links)
    assert len(links) > 12
    missing = [link for link in links if link not in text]
    assert missing == []


def test_web_edition_has_no_personal_data(rendered: RenderedIssue) -> None:
    web = rendered.web_html
    assert MARKER.search(web) is None
    assert "/u/" not in web
    assert "Unsubscribe" not in web
    assert "https://news.example.org/subscribe" in inventory(web).links
    assert "Dear" not in web


def test_hostile_text_is_escaped_and_teaser_html_is_kept(brand: Settings) -> None:
    teaser = replace(
        sample_teasers(1)[0],
        title='<script>alert("x")</script> & co',
        image_alt='"><img src=x onerror=alert(1)>',
        authors=("<b>Mallory</b>",),
        teaser_html="<p>Safe <em>emphasis</em></p>",
    )
    result = render_issue(IssueContent(WEEK, (teaser,)), brand, [PACKAGED])
    assert "<script>" not in result.html
    assert '&lt;script&gt;alert("x")&lt;/script&gt; &amp; co' in result.html
    assert "<b>Mallory</b>" not in result.html
    assert not _attribute_names(result.html) & {"onerror", "onload"}
    assert "<em" in result.html
    assert "<script>" in result.text  # the text part is not HTML; nothing to escape there


def _attribute_names(html: str) -> set[str]:
    names: set[str] = set()

    class Collector(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            names.update(name for name, _ in attrs)

    Collector().feed(html)
    return names


def test_problems_name_insecure_links_and_images_without_alt(brand: Settings) -> None:
    teaser = replace(
        sample_teasers(1)[0],
        url="http://www.example.org/plain",
        image_url="https://images.example.org/a.jpg",
        teaser_html='<p>See <a href="/relative">this</a>.</p>',
    )
    overrides = brand.newsletter
    settings = replace(
        brand, newsletter=replace(overrides, logo_url="http://cdn.example.org/l.png")
    )
    result = render_issue(IssueContent(WEEK, (teaser,)), settings, [PACKAGED])
    problems = "\n".join(result.problems)
    assert "link is not an absolute https URL: http://www.example.org/plain" in problems
    assert "link is not an absolute https URL: /relative" in problems
    assert "image is not loaded from an absolute https URL: http://cdn.example.org/l.png" in (
        problems
    )


def test_an_image_without_alt_text_is_reported(brand: Settings, tmp_path: Path) -> None:
    email = tmp_path / "email"
    email.mkdir()
    featured = (PACKAGED / "email" / "_featured.mjml.j2").read_text()
    (email / "_featured.mjml.j2").write_text(
        featured.replace('alt="{{ teaser.image_alt or teaser.title }}"', 'alt=""')
    )
    result = render_issue(sample_issue(1), brand, [tmp_path, PACKAGED])
    assert any(p.startswith("image has no alt text:") for p in result.problems)


def test_an_issue_above_the_gmail_clip_is_reported(brand: Settings) -> None:
    long = "<p>" + "A sentence of analysis that goes on. " * 60 + "</p>"
    teasers = tuple(replace(t, teaser_html=long) for t in sample_teasers(20))
    result = render_issue(IssueContent(WEEK, teasers), brand, [PACKAGED])
    assert result.html_bytes > GMAIL_CLIP_BYTES
    assert "Gmail clips" in result.problems[0]


def test_operator_templates_override_the_packaged_ones_file_by_file(
    brand: Settings, tmp_path: Path
) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "_section.mjml.j2").write_text(
        "<mj-section><mj-column><mj-text>Desk: {{ name|upper }}</mj-text></mj-column>"
        "</mj-section>\n"
    )
    result = render_issue(sample_issue(), brand, [tmp_path, PACKAGED])
    assert "Desk: MIDDLE EAST" in result.html
    assert "Keep reading" in result.html.title() or "KEEP READING" in result.html


def test_a_template_syntax_error_names_the_template(brand: Settings, tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "_teaser.mjml.j2").write_text("<mj-section>{% if %}</mj-section>\n")
    with pytest.raises(RenderError, match=r"_teaser\.mjml\.j2, line 1"):
        render_issue(sample_issue(), brand, [tmp_path, PACKAGED])


def test_an_undefined_variable_names_the_template(brand: Settings, tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "_footer.mjml.j2").write_text(
        "<mj-section><mj-column><mj-text>{{ brand.no_such_key }}</mj-text></mj-column>"
        "</mj-section>\n"
    )
    with pytest.raises(RenderError, match=r"_footer\.mjml\.j2.*no_such_key"):
        render_issue(sample_issue(), brand, [tmp_path, PACKAGED])


def test_broken_mjml_names_the_layout(brand: Settings, tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "_footer.mjml.j2").write_text("<mj-section><mj-column>\n")
    with pytest.raises(RenderError, match=r"roundup\.mjml\.j2.*MJML"):
        render_issue(sample_issue(), brand, [tmp_path, PACKAGED])


def test_a_bad_subject_format_is_a_configuration_error(brand: Settings) -> None:
    settings = replace(brand, newsletter=replace(brand.newsletter, subject="{nmae} weekly"))
    with pytest.raises(ConfigError, match=r"newsletter\.subject"):
        render_issue(sample_issue(), settings, [PACKAGED])


def test_an_empty_week_still_renders(brand: Settings) -> None:
    result = render_issue(IssueContent(WEEK, ()), brand, [PACKAGED])
    assert "No new stories were published this week." in result.html
    assert "No new stories were published this week." in result.text
    assert 40 <= len(result.preheader) <= 100


def test_a_story_without_photo_or_byline(brand: Settings) -> None:
    bare = replace(sample_teasers(2)[1], image_url="", image_credit="", authors=())
    result = render_issue(IssueContent(WEEK, (bare,)), brand, [PACKAGED])
    assert "<img" not in result.html
    assert "By " not in result.text
    assert bare.title in result.text


def test_rendering_is_deterministic(brand: Settings, rendered: RenderedIssue) -> None:
    assert render_issue(sample_issue(), brand, [PACKAGED]) == rendered


def test_long_preheader_is_cut_at_a_word(brand: Settings) -> None:
    lead = replace(sample_teasers(1)[0], title="Word " * 40)
    teaser = Teaser(**{**lead.__dict__})
    result = render_issue(IssueContent(WEEK, (teaser,)), brand, [PACKAGED])
    assert len(result.preheader) <= 100
    assert result.preheader.endswith("Word\u2026")


@pytest.mark.parametrize("fields", SUBSCRIBERS, ids=["plain", "escaping", "non-ascii", "no-name"])
def test_personal_fields_in_attributes_match_a_full_render(
    brand: Settings, tmp_path: Path, fields: PersonalFields
) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "_footer.mjml.j2").write_text(
        "<mj-section><mj-column><mj-text>"
        '<a href="{{ recipient.unsubscribe_url if recipient else links.subscribe }}"'
        " title=\"For {{ recipient.name if recipient else 'all' }}\">Leave</a>"
        "<img src=\"https://img.example.org/p.gif?e={{ recipient.email if recipient else '' }}\""
        ' alt="{{ recipient.email if recipient else \'\' }}" width="1">'
        "</mj-text></mj-column></mj-section>\n"
    )
    once = render_issue(sample_issue(1), brand, [tmp_path, PACKAGED])
    full = render_issue(sample_issue(1), brand, [tmp_path, PACKAGED], recipient=fields)
    assert personalise(once.html, fields, html=True) == full.html


def _kickers(html: str) -> list[str]:
    """The text of each kicker line, tags gone."""
    cells = re.findall(r'<td[^>]*class="nl-kicker"[^>]*><div[^>]*>(.*?)</div>', html, re.S)
    return [" ".join(re.sub(r"<[^>]+>|\u00b7", " ", c).split()) for c in cells]


def test_a_kicker_never_repeats_the_section_heading_above_it(brand: Settings) -> None:
    lead, *rest = sample_teasers(4)
    same = replace(rest[0], kicker=rest[0].section.upper())  # a kicker naming its section
    issue = IssueContent(WEEK, (lead, same, *rest[1:]))
    result = render_issue(issue, brand, [PACKAGED])
    kickers = _kickers(result.html)[1:]  # the first is the masthead's folio
    assert kickers[0] == f"Top story {lead.section} {lead.kicker}".strip()
    for teaser, kicker in zip(rest[1:], kickers[1:], strict=True):
        assert kicker == teaser.kicker
    assert f"\nTOP STORY | {lead.section.upper()} | {lead.kicker.upper()}\n" in result.text
    for teaser in rest:
        assert f"\n{teaser.section.upper()} | " not in result.text


def test_stories_in_no_section_are_headed_to_read_well_alone_or_last(brand: Settings) -> None:
    lead, *rest = (replace(t, section="") for t in sample_teasers(3))
    alone = render_issue(IssueContent(WEEK, tuple(rest)), brand, [PACKAGED])
    assert "This week</p>" in alone.html
    assert "Also this week" not in alone.html
    assert "\nTHIS WEEK\n" in alone.text
    after_lead = render_issue(IssueContent(WEEK, (lead, *rest)), brand, [PACKAGED])
    assert "Also this week</p>" in after_lead.html
    assert "\nALSO THIS WEEK\n" in after_lead.text
    # The top story in no section says just that, with no dangling separator.
    assert "\nTOP STORY | " + lead.kicker.upper() + "\n" in after_lead.text


def test_a_small_image_keeps_its_natural_width(brand: Settings) -> None:
    lead, other = sample_teasers(2)
    small = IssueContent(WEEK, (replace(lead, image_width=70), replace(other, image_width=120)))
    html = render_issue(small, brand, [PACKAGED]).html
    widths = re.findall(r'<img[^>]*\bwidth="(\d+)"', html)
    assert widths == ["70", "120"]
    big = IssueContent(WEEK, (replace(lead, image_width=1200), replace(other, image_width=1200)))
    assert re.findall(r'<img[^>]*\bwidth="(\d+)"', render_issue(big, brand, [PACKAGED]).html) == [
        "600",
        "228",
    ]


def test_the_text_part_opens_cleanly(brand: Settings, rendered: RenderedIssue) -> None:
    intro = rendered.text.split("View this issue in a browser:")[0]
    assert rendered.preheader not in " ".join(intro.split())
    assert "chosen by the editors: 12 stories." in " ".join(intro.split())
    # No rule straight under a section heading.
    assert "=" * 72 + "\n\n" + "-" * 72 not in rendered.text

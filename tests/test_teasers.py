"""Teaser sanitising and cutting, and lead-image extraction, on hostile and ordinary HTML."""

from __future__ import annotations

import re

import pytest

from newsletter.feeds.teasers import (
    MediaImage,
    choose_image,
    first_content_image,
    is_tracking_pixel,
    make_teaser,
    plain_text,
    safe_url,
)

BASE = "https://www.example.org/2024/11/story/"


def _tags(html: str) -> set[str]:
    return {m.lower() for m in re.findall(r"</?([a-zA-Z0-9]+)", html)}


@pytest.mark.parametrize(
    "hostile",
    [
        '<p>Hi <script>alert("x")</script>there.</p>',
        "<p>Hi <style>p{color:red}</style>there.</p>",
        '<p onclick="steal()">Hi there.</p>',
        '<p>Hi <a href="javascript:alert(1)">there</a>.</p>',
        '<p>Hi <a href=" JaVaScRiPt:alert(1)">there</a>.</p>',
        '<p>Hi <a href="java&#x09;script:alert(1)">there</a>.</p>',
        '<p>Hi <a href="data:text/html;base64,PHNjcmlwdD4=">there</a>.</p>',
        '<p>Hi <img src="x" onerror="alert(1)">there.</p>',
        '<p>Hi <iframe src="https://evil.example"></iframe>there.</p>',
        "<p>Hi <svg><script>alert(1)</script></svg>there.</p>",
        '<p>Hi <img src="https://t.example/p.gif" width="1" height="1">there.</p>',
        "<p>Hi <!-- a comment -->there.</p>",
        '<p>Hi <form action="https://evil.example"><input name="x"></form>there.</p>',
    ],
)
def test_hostile_markup_never_survives(hostile: str) -> None:
    teaser = make_teaser(hostile, BASE, 50)
    assert _tags(teaser) <= {"p", "a", "em", "strong"}
    for needle in ("script", "alert", "style", "onclick", "onerror", "javascript", "data:"):
        assert needle not in teaser.lower()
    assert "Hi" in teaser
    assert "there." in teaser


def test_only_paragraphs_links_and_emphasis_remain() -> None:
    html = (
        '<div class="x"><h2>Heading</h2><p>One <b>bold</b> and <i>italic</i> and '
        '<span style="color:red">span</span> and <u>under</u>.</p>'
        "<ul><li>Item one.</li></ul></div>"
    )
    teaser = make_teaser(html, BASE, 100)
    assert teaser == (
        "<p>Heading</p><p>One <strong>bold</strong> and <em>italic</em> and span and under.</p>"
        "<p>Item one.</p>"
    )


def test_relative_links_are_resolved_against_the_base() -> None:
    teaser = make_teaser(
        '<p>See <a href="../other/">this</a> and <a href="/x">that</a>.</p>', BASE, 50
    )
    assert 'href="https://www.example.org/2024/11/other/"' in teaser
    assert 'href="https://www.example.org/x"' in teaser


def test_at_most_three_paragraphs() -> None:
    html = "".join(f"<p>Paragraph {n}.</p>" for n in range(1, 6))
    assert (
        make_teaser(html, BASE, 100) == "<p>Paragraph 1.</p><p>Paragraph 2.</p><p>Paragraph 3.</p>"
    )


def test_cut_at_a_sentence_boundary_within_the_budget() -> None:
    html = "<p>One two three. Four five six. Seven eight nine ten.</p><p>Next paragraph.</p>"
    assert make_teaser(html, BASE, 7) == "<p>One two three. Four five six.</p>"
    assert make_teaser(html, BASE, 3) == "<p>One two three.</p>"


def test_a_paragraph_that_does_not_fit_is_dropped_after_the_first() -> None:
    html = "<p>Short first one.</p><p>A much longer second paragraph without any end</p>"
    assert make_teaser(html, BASE, 6) == "<p>Short first one.</p>"


def test_a_first_sentence_longer_than_the_budget_is_cut_at_a_word_with_an_ellipsis() -> None:
    html = '<p>Alpha <a href="/a">beta <em>gamma delta</em> epsilon</a> zeta eta.</p>'
    teaser = make_teaser(html, BASE, 3)
    assert teaser == (
        '<p>Alpha <a href="https://www.example.org/a">beta <em>gamma</em></a>\u2026</p>'
    )


def test_never_cuts_mid_tag_whatever_the_budget() -> None:
    html = (
        '<p>The <a href="/a">first <strong>linked <em>and emphasised</em></strong> words</a> '
        "end here. Then a <em>second sentence</em> follows! And a third?</p>"
        "<p>Another <b>paragraph</b> with text.</p>"
    )
    for budget in range(1, 30):
        teaser = make_teaser(html, BASE, budget)
        opened = re.findall(r"<(p|a|em|strong)[ >]", teaser)
        closed = re.findall(r"</(p|a|em|strong)>", teaser)
        assert sorted(opened) == sorted(closed), (budget, teaser)
        words = len(re.sub(r"<[^>]+>", " ", teaser).replace("\u2026", " ").split())
        assert words <= budget, (budget, teaser)


def test_plain_text_descriptions_become_a_paragraph() -> None:
    assert make_teaser("Keys are yesterday's tech &amp; more.", BASE, 20) == (
        "<p>Keys are yesterday's tech &amp; more.</p>"
    )


def test_read_more_boilerplate_is_skipped() -> None:
    html = '<p>Real text.</p><p><a href="/a">Continue reading</a></p><p>More text.</p>'
    assert make_teaser(html, BASE, 50) == "<p>Real text.</p><p>More text.</p>"


def test_plain_text_strips_tags_and_script_content() -> None:
    assert plain_text('A &amp; <b>B</b><script>alert("x")</script> &lt;i&gt;') == "A & B <i>"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/img/a.jpg", "https://www.example.org/img/a.jpg"),
        ("b.jpg", "https://www.example.org/2024/11/story/b.jpg"),
        ("javascript:alert(1)", ""),
        ("data:image/png;base64,AAAA", ""),
        ("https://cdn.example.org/c.jpg", "https://cdn.example.org/c.jpg"),
        ("https://x\r\ny", ""),
    ],
)
def test_safe_url(value: str, expected: str) -> None:
    assert safe_url(value, BASE) == expected


def test_tracking_pixels() -> None:
    assert is_tracking_pixel("1", "1")
    assert is_tracking_pixel("0", "")
    assert is_tracking_pixel("1px", "300")
    assert not is_tracking_pixel("600", "400")
    assert not is_tracking_pixel("", "")


def test_media_content_comes_first_with_its_alt_and_credit() -> None:
    image = choose_image(
        [MediaImage("/m.jpg", "image/jpeg"), MediaImage("https://x.example/t.jpg")],
        ['<p><img src="/content.jpg" alt="content"></p>'],
        BASE,
        alt="Harbour at dawn",
        credit="Jo Doe / Agency",
    )
    assert image is not None
    assert (image.url, image.alt, image.credit) == (
        "https://www.example.org/m.jpg",
        "Harbour at dawn",
        "Jo Doe / Agency",
    )


def test_non_image_media_and_pixels_are_passed_over() -> None:
    image = choose_image(
        [
            MediaImage("https://x.example/v.mp4", "video/mp4"),
            MediaImage("https://x.example/a.jpg", medium="video"),
            MediaImage("https://x.example/p.gif", width="1", height="1"),
            MediaImage("data:image/png;base64,AAAA"),
            MediaImage("https://x.example/thumb.jpg"),
        ],
        [],
        BASE,
    )
    assert image is not None
    assert image.url == "https://x.example/thumb.jpg"


def test_first_image_in_content_with_figure_caption_as_credit() -> None:
    html = (
        '<p><img src="https://t.example/pixel.gif" width="1" height="1"></p>'
        '<img src="data:image/gif;base64,AAAA">'
        '<figure><img src="../photo.jpg" alt="  Ships   at anchor "><figcaption>Photo: '
        "<em>Ana Ruiz</em> / Agency</figcaption></figure>"
        '<img src="/second.jpg" alt="second">'
    )
    image = first_content_image(html, BASE)
    assert image is not None
    assert image.url == "https://www.example.org/2024/11/photo.jpg"
    assert image.alt == "Ships at anchor"
    assert image.credit == "Photo: Ana Ruiz / Agency"


def test_no_image_at_all() -> None:
    assert choose_image([], ["<p>No pictures here.</p>"], BASE) is None

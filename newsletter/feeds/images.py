"""Lead images: the feed's own media first, else the first real image in the article HTML.

Whatever is found is resolved to an absolute http(s) address, passed over when it is a
tracking pixel, and kept with its natural width when the feed or the <img> tag states it, so
that the email never stretches a small picture.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from html.parser import HTMLParser

from newsletter.feeds.teasers import IMAGE_SCHEMES, one_line, safe_url

# What cameras and phones name their files (DSC_4550, IMG_1234.jpg, P1010123, PXL_2023...),
# or any bare image file name: an alt text that says nothing to a reader.
_FILE_NAME_ALT = re.compile(
    r"^(?:(?:dsc[nf]?|img|pict?|dcim|gopr|mvi|pxl|dji|cimg|sam|p|photo|image)[ _-]?\d[\w-]*"
    r"(?:\.[a-z0-9]{3,4})?|[\w .-]+\.(?:jpe?g|png|gif|webp|heic|tiff?|avif))$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Image:
    url: str
    alt: str = ""
    credit: str = ""
    width: int = 0  # natural width in pixels, when the feed or the <img> tag says


@dataclass(frozen=True)
class MediaImage:
    """An image named by the feed itself (media:content, media:thumbnail or an enclosure)."""

    url: str
    mime_type: str = ""
    medium: str = ""
    width: str = ""
    height: str = ""


def pixels(value: str) -> int:
    """A width or height attribute ("640", "640px") in pixels; 0 when it says otherwise."""
    digits = value.strip().lower().removesuffix("px").strip()
    return int(digits) if digits.isdigit() and len(digits) <= 5 else 0


def is_tracking_pixel(width: str, height: str) -> bool:
    def tiny(value: str) -> bool:
        return value.strip().lower().removesuffix("px").isdigit() and pixels(value) <= 2

    return tiny(width) or tiny(height)


def describe(alt: str, headline: str) -> str:
    """The alt text to keep: the headline instead of a camera's file name."""
    return headline if _FILE_NAME_ALT.match(alt.strip()) else alt


def _is_image(media: MediaImage) -> bool:
    if media.medium and media.medium.lower() != "image":
        return False
    return not media.mime_type or media.mime_type.lower().startswith("image/")


def _is_emoji(css_class: str, url: str) -> bool:
    """Blogs draw emoji as inline images (WordPress's wp-smiley); never a lead picture."""
    names = css_class.lower().split()
    return "wp-smiley" in names or "emoji" in names or "/emoji/" in url


class _FirstImage(HTMLParser):
    """Finds the first real image in article HTML, with its alt text and figure caption."""

    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.found: Image | None = None
        self._in_figure = 0
        self._figure_image: Image | None = None
        self._caption: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "figure":
            self._in_figure += 1
        elif tag == "figcaption" and self._figure_image is not None:
            self._caption = []
        elif tag == "img" and self.found is None and self._figure_image is None:
            url = safe_url(values.get("src", ""), self.base, IMAGE_SCHEMES)
            if (
                not url
                or is_tracking_pixel(values.get("width", ""), values.get("height", ""))
                or _is_emoji(values.get("class", ""), url)
            ):
                return
            image = Image(
                url, one_line(values.get("alt", "")), width=pixels(values.get("width", ""))
            )
            if self._in_figure:
                self._figure_image = image
            else:
                self.found = image

    def handle_endtag(self, tag: str) -> None:
        if tag == "figcaption" and self._caption is not None and self._figure_image:
            caption = one_line("".join(self._caption))
            self._figure_image = replace(self._figure_image, credit=caption)
            self._caption = None
        elif tag == "figure" and self._in_figure:
            self._in_figure -= 1
            if self._figure_image is not None and self.found is None:
                self.found = self._figure_image
            self._figure_image = None

    def handle_data(self, data: str) -> None:
        if self._caption is not None:
            self._caption.append(data)

    def close(self) -> None:
        super().close()
        if self.found is None:
            self.found = self._figure_image


def first_content_image(fragment: str, base: str) -> Image | None:
    reader = _FirstImage(base)
    reader.feed(fragment)
    reader.close()
    return reader.found


def choose_image(
    media: Sequence[MediaImage],
    content_fragments: Sequence[str],
    base: str,
    *,
    alt: str = "",
    credit: str = "",
    headline: str = "",
) -> Image | None:
    """The lead image: the feed's own media first (in the order given), else the first image
    in the content. `alt` and `credit` come from media:description and media:credit; a
    figure's alt text and caption fill whatever they leave empty. An alt text that is only a
    file name becomes the `headline`."""
    for item in media:
        url = safe_url(item.url, base, IMAGE_SCHEMES)
        if url and _is_image(item) and not is_tracking_pixel(item.width, item.height):
            return Image(url, describe(alt, headline), credit, pixels(item.width))
    for fragment in content_fragments:
        found = first_content_image(fragment, base)
        if found is not None:
            return Image(
                found.url, describe(alt or found.alt, headline), credit or found.credit, found.width
            )
    return None

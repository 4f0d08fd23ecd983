"""Getting a feed's bytes: from a file, or over HTTP with conditional GET.

The weekly fetch should cost the publisher a 304 when nothing changed, so the validators
(ETag, Last-Modified) of each feed are remembered by the caller and handed back here.
Everything that can go wrong on the way becomes a `FeedError` with one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import httpx

from newsletter import __version__
from newsletter.errors import FeedError

MAX_REDIRECTS = 5


@dataclass(frozen=True)
class Validators:
    etag: str = ""
    last_modified: str = ""


@dataclass(frozen=True)
class Fetched:
    """`body` is None when the server answered 304 Not Modified."""

    body: bytes | None
    url: str  # where the bytes finally came from: the base for relative links
    validators: Validators


class Fetcher(Protocol):
    def fetch(self, source: str, validators: Validators) -> Fetched: ...


def is_url(source: str) -> bool:
    return urlsplit(source).scheme.lower() in {"http", "https"}


class HttpFetcher:
    """httpx with a timeout, our User-Agent, bounded redirects and a size cap."""

    def __init__(self, *, timeout: float, max_bytes: int) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.user_agent = f"newsletter/{__version__}"

    def fetch(self, source: str, validators: Validators) -> Fetched:
        if is_url(source):
            return self._get(source, validators)
        return Fetched(self._read(source), source, Validators())

    def _read(self, source: str) -> bytes:
        parts = urlsplit(source)
        path = Path(unquote(parts.path)) if parts.scheme == "file" else Path(source)
        try:
            with path.open("rb") as handle:
                data = handle.read(self.max_bytes + 1)
        except OSError as exc:
            raise FeedError(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(data) > self.max_bytes:
            raise FeedError(f"the feed is larger than {self.max_bytes} bytes")
        return data

    def _get(self, url: str, validators: Validators) -> Fetched:
        headers = {
            "User-Agent": self.user_agent,
            "Accept": (
                "application/rss+xml, application/atom+xml, application/feed+json, "
                "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
            ),
        }
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        try:
            with (
                httpx.Client(
                    timeout=self.timeout,
                    follow_redirects=True,
                    max_redirects=MAX_REDIRECTS,
                    headers=headers,
                ) as client,
                client.stream("GET", url) as response,
            ):
                final = str(response.url)
                if response.status_code == httpx.codes.NOT_MODIFIED:
                    return Fetched(None, final, validators)
                if response.status_code >= 400:
                    raise FeedError(f"the server answered {response.status_code}")
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise FeedError(f"the feed is larger than {self.max_bytes} bytes")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) > self.max_bytes:
                        raise FeedError(f"the feed is larger than {self.max_bytes} bytes")
                fresh = Validators(
                    etag=response.headers.get("ETag", ""),
                    last_modified=response.headers.get("Last-Modified", ""),
                )
                return Fetched(bytes(body), final, fresh)
        except httpx.TimeoutException:
            raise FeedError(f"no answer within {self.timeout:g} seconds") from None
        except httpx.TooManyRedirects:
            raise FeedError(f"more than {MAX_REDIRECTS} redirects") from None
        except httpx.HTTPError as exc:
            raise FeedError(f"cannot fetch: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

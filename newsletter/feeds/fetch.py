"""Getting a feed's bytes: from a file, or over HTTP with conditional GET.

The weekly fetch should cost the publisher a 304 when nothing changed, so the validators
(ETag, Last-Modified) of each feed are remembered by the caller and handed back here.
Everything that can go wrong on the way becomes a `FeedError` with one line.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import httpx

from newsletter import __version__
from newsletter.errors import FeedError
from newsletter.feeds.teasers import one_line

MAX_REDIRECTS = 5
# A host name to the addresses it stands for; raises OSError when it cannot say.
Resolver = Callable[[str], Sequence[str]]
# The deprecated IPv4-compatible IPv6 addresses (::127.0.0.1), which Python counts as public.
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


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


def system_resolver(host: str) -> list[str]:
    """The addresses the system would connect to for `host`."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)]


def _is_internal(address: str) -> bool:
    """Loopback, link-local, private and every other non-public address, IPv4 or IPv6; an
    IPv4-mapped address (::ffff:127.0.0.1) is judged as the IPv4 address it carries."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _IPV4_COMPATIBLE:
            return True
    return not ip.is_global


def _points_inside(host: str, resolver: Resolver) -> bool | None:
    """Whether `host` stands for a non-public address; None when it cannot be resolved."""
    try:
        addresses = [host] if _is_address(host) else list(resolver(host))
        return any(_is_internal(a) for a in addresses) if addresses else None
    except (OSError, UnicodeError, ValueError):
        return None


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def may_follow(original_url: str, target_url: str, resolver: Resolver) -> bool:
    """Whether a feed configured as `original_url` may be redirected to `target_url`.

    A feed's server is a stranger, and its Location header must not make us a probe of the
    machines beside us (the database port, an admin page). So only http(s) targets whose
    host resolves to public addresses only are followed, unless the configured URL itself
    points at a non-public address: then the operator chose that network. A target that
    cannot be resolved is refused, as it is no better known than a private one.
    """
    target = urlsplit(target_url)
    if target.scheme.lower() not in {"http", "https"} or not target.hostname:
        return False
    if _points_inside(urlsplit(original_url).hostname or "", resolver):
        return True
    return _points_inside(target.hostname, resolver) is False


class HttpFetcher:
    """httpx with a deadline, our User-Agent, checked redirects and a size cap."""

    def __init__(
        self, *, timeout: float, max_bytes: int, resolver: Resolver = system_resolver
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.resolver = resolver
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
        """The whole fetch, redirects and body included, within `timeout` seconds.

        httpx's own timeouts apply to each read, so a server sending a byte a second could
        hold the fetch for as long as it liked; cancelling the task at the deadline cannot
        be outwaited.
        """
        try:
            return asyncio.run(self._download(url, validators))
        except (TimeoutError, httpx.TimeoutException):
            raise FeedError(f"no complete answer within {self.timeout:g} seconds") from None
        except httpx.HTTPError as exc:
            raise FeedError(f"cannot fetch: {_first_line(exc)}") from None

    async def _download(self, url: str, validators: Validators) -> Fetched:
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
        async with (
            asyncio.timeout(self.timeout),
            httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=False, headers=headers
            ) as client,
        ):
            request = client.build_request("GET", url)
            for _ in range(MAX_REDIRECTS + 1):
                response = await client.send(request, stream=True)
                try:
                    if response.next_request is None:
                        return await self._body(response, validators)
                    request = response.next_request
                finally:
                    await response.aclose()
                if not may_follow(url, str(request.url), self.resolver):
                    host = one_line(request.url.raw_host.decode("ascii", "replace"))
                    raise FeedError(f"refused a redirect to {host}: not a public address")
            raise FeedError(f"more than {MAX_REDIRECTS} redirects")

    async def _body(self, response: httpx.Response, validators: Validators) -> Fetched:
        final = str(response.url)
        if response.status_code == httpx.codes.NOT_MODIFIED:
            return Fetched(None, final, validators)
        if response.status_code >= 400:
            raise FeedError(f"the server answered {response.status_code}")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise FeedError(f"the feed is larger than {self.max_bytes} bytes")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body.extend(chunk)
            if len(body) > self.max_bytes:
                raise FeedError(f"the feed is larger than {self.max_bytes} bytes")
        fresh = Validators(
            etag=response.headers.get("ETag", ""),
            last_modified=response.headers.get("Last-Modified", ""),
        )
        return Fetched(bytes(body), final, fresh)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

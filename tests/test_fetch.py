"""Fetching over HTTP: the deadline for a whole fetch and the redirects it may follow."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from newsletter.errors import FeedError
from newsletter.feeds.fetch import HttpFetcher, Validators, may_follow

from .feedserver import FeedServer, Route, feed_server

PUBLIC = "93.184.215.14"
ADDRESSES = {
    "feeds.example.org": [PUBLIC],
    "cdn.example.net": ["2606:2800:21f:cb07:6820:80da:af6b:8b2c", PUBLIC],
    "intranet.example.org": ["10.0.0.5"],
    "mixed.example.org": [PUBLIC, "192.168.1.1"],
    "mapped.example.org": ["::ffff:127.0.0.1"],
    "scoped.example.org": ["fe80::1%eth0"],
    "localhost": ["127.0.0.1", "::1"],
}


def resolver(host: str) -> list[str]:
    """Answers from the table above, and like a failed look-up for anything else."""
    if host not in ADDRESSES:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return ADDRESSES[host]


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("https://feeds.example.org/new", True),
        ("http://cdn.example.net/feed.xml", True),
        (f"http://{PUBLIC}/feed", True),
        ("http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/feed", True),
        ("http://127.0.0.1:5432/", False),
        ("http://127.8.9.10/", False),
        ("http://localhost/", False),
        ("http://0.0.0.0:5432/", False),
        ("http://10.1.2.3/", False),
        ("http://172.16.0.1/", False),
        ("http://192.168.0.1/", False),
        ("http://100.64.0.1/", False),
        ("http://169.254.169.254/latest/meta-data/", False),
        ("http://[::1]:5432/", False),
        ("http://[::]/", False),
        ("http://[fe80::1]/", False),
        ("http://[fc00::1]/", False),
        ("http://[fd12:3456::1]/", False),
        ("http://[::ffff:127.0.0.1]/", False),
        ("http://[::ffff:a01:203]/", False),  # ::ffff:10.1.2.3
        ("http://[::127.0.0.1]/", False),
        ("http://intranet.example.org/", False),
        ("http://mixed.example.org/", False),
        ("http://mapped.example.org/", False),
        ("http://scoped.example.org/", False),
        ("http://unknown.example.org/", False),
        ("ftp://feeds.example.org/feed", False),
        ("file:///etc/passwd", False),
        ("http:///no-host", False),
    ],
)
def test_a_public_feed_may_not_be_redirected_inside(target: str, allowed: bool) -> None:
    assert may_follow("https://feeds.example.org/rss", target, resolver) is allowed


@pytest.mark.parametrize(
    ("original", "target", "allowed"),
    [
        ("http://127.0.0.1:8080/feed", "http://127.0.0.1:8081/feed", True),
        ("http://localhost/feed", "http://[::1]/feed", True),
        ("http://[::1]/feed", "http://192.168.1.20/feed", True),
        ("https://intranet.example.org/feed", "http://10.0.0.9/feed", True),
        ("https://mixed.example.org/feed", "https://feeds.example.org/feed", True),
        ("http://127.0.0.1:8080/feed", "file:///etc/passwd", False),
        ("http://unknown.example.org/feed", "http://10.0.0.9/feed", False),
    ],
)
def test_a_feed_configured_inside_may_be_redirected_inside(
    original: str, target: str, allowed: bool
) -> None:
    assert may_follow(original, target, resolver) is allowed


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as running:
        running.routes["/old"] = Route(status=302, headers={"Location": f"{running.base}/private"})
        running.routes["/private"] = Route(b"<rss>what only this machine should see</rss>")
        yield running


def test_a_redirect_from_a_public_host_to_loopback_is_refused(server: FeedServer) -> None:
    """The resolver says `localhost` is public, as a stranger's host name would be."""
    told_public = {**ADDRESSES, "localhost": [PUBLIC]}
    fetcher = HttpFetcher(timeout=5, max_bytes=100_000, resolver=told_public.__getitem__)
    original = server.url("/old").replace("127.0.0.1", "localhost")
    with pytest.raises(FeedError, match=r"refused a redirect to 127\.0\.0\.1: not a public"):
        fetcher.fetch(original, Validators())
    assert [path for path, _ in server.requests] == ["/old"]


def test_a_loopback_feed_may_redirect_to_loopback(server: FeedServer) -> None:
    fetcher = HttpFetcher(timeout=5, max_bytes=100_000)
    original = server.url("/old").replace("127.0.0.1", "localhost")
    fetched = fetcher.fetch(original, Validators())
    assert fetched.body == b"<rss>what only this machine should see</rss>"
    assert fetched.url == server.url("/private")


def test_the_timeout_is_a_deadline_for_the_whole_fetch(server: FeedServer) -> None:
    """A server sending one byte every 50 ms answers every read in time, for 7 seconds."""
    server.routes["/drip"] = Route(b"<rss>" + b" " * 100 + b"</rss>", drip=0.05)
    fetcher = HttpFetcher(timeout=1, max_bytes=100_000)
    started = time.monotonic()
    with pytest.raises(FeedError, match="no complete answer within 1 seconds"):
        fetcher.fetch(server.url("/drip"), Validators())
    assert time.monotonic() - started < 2.5


def test_a_redirect_loop_ends_after_five_redirects(server: FeedServer) -> None:
    server.routes["/loop"] = Route(status=307, headers={"Location": "/loop"})
    fetcher = HttpFetcher(timeout=5, max_bytes=100_000)
    with pytest.raises(FeedError, match="more than 5 redirects"):
        fetcher.fetch(server.url("/loop"), Validators())
    assert len(server.requests) == 6

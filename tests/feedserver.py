"""A real HTTP server on 127.0.0.1 for feed-fetching tests, run in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str = ""
    last_modified: str = ""
    delay: float = 0.0
    drip: float = 0.0  # seconds between the bytes of the whole response, status line included


@dataclass
class FeedServer:
    base: str
    routes: dict[str, Route]
    requests: list[tuple[str, dict[str, str]]]
    release: threading.Event

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@contextmanager
def feed_server() -> Iterator[FeedServer]:
    routes: dict[str, Route] = {}
    requests: list[tuple[str, dict[str, str]]] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if route.delay:
                release.wait(route.delay)
            if route.drip:
                self.drip(route)
                return
            matches_etag = route.etag and self.headers.get("If-None-Match") == route.etag
            matches_date = (
                route.last_modified and self.headers.get("If-Modified-Since") == route.last_modified
            )
            if matches_etag or matches_date:
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            if route.etag:
                self.send_header("ETag", route.etag)
            if route.last_modified:
                self.send_header("Last-Modified", route.last_modified)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)

        def drip(self, route: Route) -> None:
            """One byte at a time; stops when the client leaves or the server shuts down."""
            head = f"HTTP/1.1 {route.status} OK\r\nContent-Length: {len(route.body)}\r\n\r\n"
            self.close_connection = True
            for byte in head.encode() + route.body:
                if release.wait(route.drip):
                    return
                try:
                    self.wfile.write(bytes([byte]))
                except OSError:  # the client gave up
                    return

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield FeedServer(f"http://{host!s}:{port}", routes, requests, release)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

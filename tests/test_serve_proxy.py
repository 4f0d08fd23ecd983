"""`newsletter serve` behind a reverse proxy, as run in production: the real command in its
own process, a small forwarding proxy in front of it, and readers connecting to the proxy
from different loopback addresses. With `[web] proxy_hops = 1` each reader must get a rate
limit and a consent record of their own, not the proxy's.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import create_engine, select

from newsletter.config import Settings
from newsletter.db.models import Subscriber
from newsletter.mail.tokens import Tokens
from tests.conftest import SECRET_KEY

START_SECONDS = 30.0
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host"}


class ForwardingProxy(BaseHTTPRequestHandler):
    """Passes each request on to the upstream port and appends the peer to X-Forwarded-For,
    as nginx's `$proxy_add_x_forwarded_for` does."""

    upstream_port = 0

    def do_GET(self) -> None:
        self.forward()

    def do_POST(self) -> None:
        self.forward()

    def forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        earlier = self.headers.get("X-Forwarded-For")
        peer = self.client_address[0]
        headers["X-Forwarded-For"] = f"{earlier}, {peer}" if earlier else peer
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=20)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            content = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in HOP_BY_HOP | {"content-length", "date", "server"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the answers, not a log."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_listening(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, errors = process.communicate()
            pytest.fail(f"newsletter serve exited with {process.returncode}: {errors}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"newsletter serve did not listen on port {port} within {START_SECONDS}s")


@dataclass
class Site:
    proxy_port: int
    database_url: str

    def subscribe(self, reader_ip: str, address: str, forged_for: str = "") -> int:
        """Post a served form through the proxy, connecting from `reader_ip`."""
        challenge = Tokens((SECRET_KEY,), Settings().list_id).form_challenge(
            datetime.now(UTC) - timedelta(seconds=30)
        )
        body = urlencode({"email": address, "name": "", "form": challenge})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if forged_for:
            headers["X-Forwarded-For"] = forged_for
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.proxy_port, timeout=20, source_address=(reader_ip, 0)
        )
        try:
            connection.request("POST", "/subscribe", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def consent_ips(self) -> dict[str, str]:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(select(Subscriber.email, Subscriber.consent_ip))
                return dict(rows.all())
        finally:
            engine.dispose()


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    """`newsletter serve` on a free loopback port, with the proxy in front of it."""
    port = free_port()
    env = {
        **os.environ,
        "NEWSLETTER_CONFIG": "",
        "NEWSLETTER_DATABASE_URL": database_url,
        "NEWSLETTER_DELIVERY_TRANSPORT": f"outbox:{tmp_path / 'outbox'}",
        "NEWSLETTER_NEWSLETTER_BASE_URL": "https://news.example.org",
        "NEWSLETTER_SECRET_KEY": SECRET_KEY,
        "NEWSLETTER_WEB_PROXY_HOPS": "1",
        "NEWSLETTER_WEB_SUBSCRIBE_PER_IP_PER_HOUR": "1",
    }
    command = [sys.executable, "-m", "newsletter", "serve", "--host", "127.0.0.1"]
    server = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    handler = type("Proxy", (ForwardingProxy,), {"upstream_port": port})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    proxy.daemon_threads = True
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        wait_until_listening(server, port)
        yield Site(proxy.server_address[1], database_url)
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=10)
        server.terminate()
        try:
            server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


def test_readers_behind_the_proxy_get_limits_and_consent_records_of_their_own(
    site: Site,
) -> None:
    assert site.subscribe("127.0.0.2", "first@example.org") == 200
    assert site.subscribe("127.0.0.3", "second@example.org") == 200
    # Each reader's one request an hour is now used; a forged header buys no other.
    assert site.subscribe("127.0.0.2", "again@example.org") == 429
    assert site.subscribe("127.0.0.2", "forged@example.org", forged_for="198.51.100.66") == 429

    assert site.consent_ips() == {
        "first@example.org": "127.0.0.2",
        "second@example.org": "127.0.0.3",
    }

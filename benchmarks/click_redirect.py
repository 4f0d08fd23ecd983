"""The `/c/` redirect under load, beside a trivial route of the same server.

Sends an issue with `[tracking] clicks = aggregate` into an outbox, serves the web
application with waitress on 127.0.0.1 (as `newsletter serve` does) in a process of its own,
and offers requests at a fixed rate from a bounded pool of Python threads with keep-alive
connections. Each request
comes from its own client address (X-Forwarded-For, one proxy hop trusted), so every click
is counted: flood limit, burst check and counter upsert, one transaction each. Latency is
measured from the moment a request was due, so a server that falls behind shows it. The same
run first measures `/favicon.ico`, a route that touches nothing. Usage:

    python benchmarks/click_redirect.py [--rate 1000] [--seconds 5] [--database URL]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from waitress import create_server  # noqa: E402

from newsletter.app import App  # noqa: E402
from newsletter.config import (  # noqa: E402
    DatabaseSettings,
    DeliverySettings,
    NewsletterSettings,
    Secrets,
    Settings,
    TrackingSettings,
    WebSettings,
)
from newsletter.db.session import make_engine, upgrade  # noqa: E402
from newsletter.web.endpoints import create_app  # noqa: E402
from tests.tracking_world import WEEK, send_week  # noqa: E402

CLIENT_THREADS = 32


def load(port: int, paths: list[str], rate: float, seconds: float) -> tuple[list[float], int]:
    """Offer `rate` requests a second for `seconds`; latencies (s) and the number of errors."""
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def worker(first: int) -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine: list[float] = []
        failed = 0
        for n in range(first, total, CLIENT_THREADS):
            due = start + n / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            try:
                conn.request("GET", paths[n % len(paths)], headers={"X-Forwarded-For": address})
                response = conn.getresponse()
                response.read()
                if response.status not in (204, 302):
                    failed += 1
            except (OSError, http.client.HTTPException):
                failed += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            mine.append(time.perf_counter() - due)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors += failed

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def report(name: str, latencies: list[float], errors: int, seconds: float) -> None:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    print(
        f"{name:14} {len(ordered) / seconds:8.0f} req/s offered  p50 {pct(0.5):7.1f} ms  "
        f"p90 {pct(0.9):7.1f} ms  p99 {pct(0.99):7.1f} ms  max {ordered[-1] * 1000:7.1f} ms  "
        f"errors {errors}  mean {statistics.fmean(ordered) * 1000:.1f} ms"
    )


def serve(settings: Settings, threads: int, ready: Any) -> None:
    """The server process: waitress on an ephemeral loopback port, until terminated."""
    app = App.create(settings)
    server: Any = create_server(create_app(app), host="127.0.0.1", port=0, threads=threads)
    ready.put(server.effective_port)
    server.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--database", help="SQLAlchemy URL (default: SQLite in a temp dir)")
    parser.add_argument("--server-threads", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database or f"sqlite:///{tmp}/bench.db"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        settings = Settings(
            newsletter=NewsletterSettings(base_url="https://news.example.org"),
            database=DatabaseSettings(url=url),
            delivery=replace(DeliverySettings(), transport=f"outbox:{tmp}/outbox"),
            web=replace(WebSettings(), proxy_hops=1),
            tracking=TrackingSettings(clicks="aggregate"),
            secrets=Secrets(secret_keys=("benchmark-secret",)),
            source="benchmark",
            base_dir=Path(tmp),
        )
        app = App.create(settings)
        copies = send_week(app, ["reader@example.org"], WEEK)
        app.close()
        clicks = copies[0].paths()
        context = multiprocessing.get_context("spawn")
        ready = context.Queue()
        server = context.Process(target=serve, args=(settings, args.server_threads, ready))
        server.start()
        try:
            port = ready.get(timeout=60)
            print(
                f"{args.rate:.0f} req/s for {args.seconds:.0f} s, {CLIENT_THREADS} client "
                f"threads, waitress with {args.server_threads} threads, {url.split(':')[0]}"
            )
            for name, paths in (("trivial route", ["/favicon.ico"]), ("/c/ redirect", clicks)):
                latencies, errors = load(port, paths, args.rate, args.seconds)
                report(name, latencies, errors, args.seconds)
        finally:
            server.terminate()  # the process started above, by its own handle
            server.join(timeout=10)


if __name__ == "__main__":
    main()

"""Throughput of `newsletter send` against Postfix's smtp-sink, next to Postfix's smtp-source.

For each list size and connection count, a fresh SQLite database gets N subscribers and the
demo issue (week 2024-W47 from the bundled feed); a child process sends it to smtp-sink on
loopback and reports its elapsed time, CPU time and peak RSS. Then smtp-source sends the
same number of messages of the same size (one of ours, via -F) over the same number of
reused connections (-d -s N) to the same sink. Figures are printed; nothing is asserted.

    python benchmarks/send_throughput.py [--sizes 10000,100000] [--connections 1,4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from postfix import FEED, REPO, SOURCE, WEEK, smtp_sink


def prepare(folder: Path, size: int) -> Path:
    """A database with `size` active subscribers and the demo issue built; returns it."""
    from sqlalchemy import insert

    from newsletter.app import App
    from newsletter.config import DatabaseSettings, Secrets, Settings
    from newsletter.db.models import Subscriber, SubscriberStatus
    from newsletter.db.session import upgrade
    from newsletter.feeds.store import fetch_sources
    from newsletter.issue.build import build_issue
    from newsletter.issue.periods import Week

    database = folder / "bench.db"
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite:///{database}"),
        secrets=Secrets(secret_keys=("benchmark-signing-key-0123456789abcdef",)),
    )
    app = App.create(settings)
    upgrade(app.engine)
    now = app.clock.now()
    with app.engine.begin() as connection:
        for start in range(0, size, 10_000):
            connection.execute(
                insert(Subscriber),
                [
                    {
                        "email": f"reader{n:07d}@example.org",
                        "name": f"Reader Number {n}",
                        "status": SubscriberStatus.ACTIVE,
                        "subscribed_at": now,
                        "created_at": now,
                        "updated_at": now,
                        "confirmed_at": now,
                        "consent_source": "benchmark",
                        "soft_bounces": 0,
                    }
                    for n in range(start, min(start + 10_000, size))
                ],
            )
    fetch_sources(app, [str(FEED)])
    build_issue(app, Week.parse(WEEK))
    app.close()
    return database


def child(database: Path, port: int, connections: int, sample: Path) -> None:
    """Send the issue once and print the figures as JSON (run in its own process)."""
    from dataclasses import replace

    from newsletter.app import App
    from newsletter.config import DatabaseSettings, DeliverySettings, Secrets, Settings
    from newsletter.delivery.send import SendOptions, send_issue, send_test
    from newsletter.issue.periods import Week

    settings = Settings(
        database=DatabaseSettings(url=f"sqlite:///{database}"),
        delivery=replace(DeliverySettings(), transport=f"smtp://127.0.0.1:{port}"),
        secrets=Secrets(secret_keys=("benchmark-signing-key-0123456789abcdef",)),
    )
    app = App.create(settings)
    cpu = time.process_time()
    wall = time.perf_counter()
    report = send_issue(app, Week.parse(WEEK), SendOptions(rate=0, connections=connections))
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    outbox = replace(settings, delivery=replace(settings.delivery, transport=f"outbox:{sample}"))
    send_test(App.create(outbox), Week.parse(WEEK), ["reader0000001@example.org"])
    print(
        json.dumps(
            {
                "sent": report.sent,
                "error": report.error,
                "wall": wall,
                "cpu": cpu,
                "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )


def smtp_source(port: int, count: int, connections: int, message: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            SOURCE, "-d", "-s", str(connections), "-m", str(count),
            "-f", "newsletter@example.org", "-t", "reader@example.org",
            "-F", str(message), f"127.0.0.1:{port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=3600,
    )  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--connections", default="1,4")
    parser.add_argument("--child", nargs=4, metavar=("DB", "PORT", "CONNECTIONS", "SAMPLE"))
    args = parser.parse_args()
    if args.child:
        db, port, conns, sample = args.child
        child(Path(db), int(port), int(conns), Path(sample))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    counts = [int(c) for c in args.connections.split(",")]
    print(f"{'N':>7} {'conns':>5} {'ours msg/s':>10} {'source msg/s':>12} {'ratio':>6} "
          f"{'CPU us/msg':>10} {'peak RSS MB':>11} {'msg KB':>7}")  # fmt: skip
    for size in sizes:
        for connections in counts:
            with tempfile.TemporaryDirectory() as tmp, smtp_sink() as port:
                folder = Path(tmp)
                database = prepare(folder, size)
                sample = folder / "sample"
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(database), str(port),
                     str(connections), str(sample)],
                    check=True, capture_output=True, text=True, timeout=7200,
                    env={**os.environ, "PYTHONPATH": str(REPO)},
                )  # fmt: skip
                figures = json.loads(out.stdout.strip().splitlines()[-1])
                if figures["error"] or figures["sent"] != size:
                    print(f"send incomplete: {figures}")
                message = next(sample.glob("*.eml"))
                size_kb = message.stat().st_size / 1024
                source = smtp_source(port, size, connections, message)
            ours = figures["sent"] / figures["wall"]
            theirs = size / source
            print(
                f"{size:>7} {connections:>5} {ours:>10.0f} {theirs:>12.0f} "
                f"{ours / theirs:>6.2f} {figures['cpu'] / size * 1e6:>10.0f} "
                f"{figures['rss_kb'] / 1024:>11.1f} {size_kb:>7.1f}"
            )


if __name__ == "__main__":
    main()

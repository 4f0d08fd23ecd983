"""Throughput of the whole `newsletter send` command against Postfix's smtp-sink, next to
Postfix's smtp-source in the same run.

For each issue (the demo issue of the bundled feed, about 100 KB a copy, and the same week
cut to six articles, about 45 KB) a SQLite database gets `--count` subscribers. Then, for
each connection count, rounds alternate: `newsletter send --yes --rate 0` in a child
process, timed from start to exit on a fresh copy of the database, then smtp-source sending
as many messages of the same size (one of ours, via -F) over as many reused connections
(-d -s N) to the same sink. Alternating keeps a machine shared with other work fair to both;
each figure is printed as the range over the rounds. Nothing is asserted.

With `--against copies` or `--against ledger` the reference is instead this sender with one
piece of speed code swapped for the plain way (the standard library's email package for
every copy; SQLAlchemy's own transaction and execution path for the ledger's commit instead
of the driver's), to see what the speed code gains.

    python benchmarks/send_throughput.py [--count 30000] [--connections 1,4] [--rounds 2]
        [--issues demo,six] [--against source|copies|ledger]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from postfix import FEED, REPO, SOURCE, WEEK, add_readers, smtp_sink

ARTICLES = {"demo": None, "six": 6}
KEY = "benchmark-key-long-enough-for-the-32-byte-rule"

# Run in the child: the CLI, optionally with one piece of speed code swapped for the plain way.
CHILD = """
import sys
against = sys.argv.pop(1)
if against == "copies":
    from newsletter.mail.message import MessageFactory
    MessageFactory.build = MessageFactory.build_reference
elif against == "ledger":
    from newsletter.delivery import ledger

    def plain(self, connection, steps):
        # Ledger.advance on SQLAlchemy's own transaction and execution path.
        results = []
        with connection.begin():
            for step in steps:
                if step.sent is not None:
                    connection.execute(ledger._MARK_SENT, {"row": step.sent, "now": step.now})
                if step.next_row is None:
                    results.append(None)
                    continue
                ours = {"row": step.next_row.delivery_id, "claimer": step.claimer, "now": step.now}
                sending = {**ours, "subscriber": step.next_row.subscriber_id,
                           "newsletter": self.newsletter, "lease": self._lease(step.now)}
                if connection.execute(ledger._MARK_SENDING, sending).rowcount:
                    results.append(True)
                else:
                    skipped = connection.execute(ledger._MARK_SKIPPED, ours).rowcount
                    results.append(False if skipped else None)
        return results

    ledger.Ledger.advance = plain
from newsletter.cli import main
main()
"""


def environment(database: Path, transport: str, articles: int | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{database}",
        "NEWSLETTER_DELIVERY_TRANSPORT": transport,
        "NEWSLETTER_SECRET_KEY": KEY,
    }
    if articles is not None:
        env["NEWSLETTER_FEEDS_MAX_ARTICLES"] = str(articles)
    return env


def newsletter(env: dict[str, str], *args: str, against: str = "none") -> None:
    subprocess.run(
        [sys.executable, "-c", CHILD, against, *args],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        timeout=7200,
    )


def prepare(folder: Path, count: int, articles: int | None) -> tuple[Path, Path]:
    """A database with `count` active subscribers and the issue built, and one copy of its
    message (for smtp-source)."""
    from sqlalchemy import create_engine

    from newsletter.clock import SystemClock

    database = folder / "bench.db"
    env = environment(database, f"outbox:{folder / 'sample'}", articles)
    newsletter(env, "init")
    now = SystemClock().now()
    engine = create_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        for start in range(0, count, 10_000):
            emails = [
                f"reader{n:07d}@example.org" for n in range(start, min(start + 10_000, count))
            ]
            add_readers(connection, emails, now)
    engine.dispose()
    newsletter(env, "articles", "fetch", str(FEED))
    newsletter(env, "issue", "build", "--week", WEEK)
    newsletter(env, "send", "--week", WEEK, "--test", "reader0000001@example.org")
    return database, next((folder / "sample").glob("*.eml"))


def ours(
    database: Path, port: int, connections: int, articles: int | None, against: str = "none"
) -> tuple[float, float]:
    """Seconds for the whole command on a fresh copy of `database`, and its CPU seconds.

    The send re-selects the draft, so it must run with the article limit it was built with:
    without it, the six-article issue would grow back to the whole week before it is sent.
    """
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "send.db"
        shutil.copy(database, fresh)
        env = environment(fresh, f"smtp://127.0.0.1:{port}", articles)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        args = ("send", "--week", WEEK, "--yes", "--rate", "0", "--connections", str(connections))
        newsletter(env, *args, against=against)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


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


def span(values: list[float], digits: int = 0) -> str:
    low, high = min(values), max(values)
    return (
        f"{low:.{digits}f}"
        if round(low, digits) == round(high, digits)
        else (f"{low:.{digits}f}-{high:.{digits}f}")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--connections", default="1,4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--issues", default="demo,six")
    parser.add_argument("--against", default="source", choices=("source", "copies", "ledger"))
    args = parser.parse_args()
    counts = [int(c) for c in args.connections.split(",")]
    reference = "smtp-source" if args.against == "source" else f"plain {args.against}"
    print(f"{'issue':>5} {'KB':>5} {'conns':>5} {'ours msg/s':>12} {reference + ' msg/s':>18} "
          f"{'ratio':>9} {'CPU us/msg':>10}")  # fmt: skip
    for issue in args.issues.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            database, message = prepare(Path(tmp), args.count, ARTICLES[issue])
            size_kb = message.stat().st_size / 1024
            for connections in counts:
                rates: list[float] = []
                references: list[float] = []
                cpus: list[float] = []
                for _ in range(args.rounds):
                    with smtp_sink() as port:
                        wall, cpu = ours(database, port, connections, ARTICLES[issue])
                        rates.append(args.count / wall)
                        cpus.append(cpu / args.count * 1e6)
                        if args.against == "source":
                            seconds = smtp_source(port, args.count, connections, message)
                        else:
                            seconds, _ = ours(
                                database, port, connections, ARTICLES[issue], args.against
                            )
                        references.append(args.count / seconds)
                ratios = [a / b for a, b in zip(rates, references, strict=True)]
                print(
                    f"{issue:>5} {size_kb:>5.1f} {connections:>5} {span(rates):>12} "
                    f"{span(references):>18} {span(ratios, 2):>9} {span(cpus):>10}",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""What per-reader sections cost a send: `newsletter send` to readers spread evenly over the
31 combinations of five sections, next to the same send to readers of every section, in the
same run, into Postfix's smtp-sink.

The demo issue of the bundled feed has stories in four sections; one story is moved to a
fifth (Africa) before the issue is built, so every combination of the five has a story and
no reader is skipped. Each send is the real command in a child process, timed from start to
exit on a fresh copy of the database; rounds alternate between the two so that a machine
shared with other work is fair to both. Printed: the copies rendered for readers' sections
(at most 31: one per combination), messages per second of each send as the range over the
rounds, and their ratio (the goal: 0.9 or more). Nothing is asserted. The renders are a
fixed cost of about a second in all (some 30 ms each), so the ratio is lower for small lists
(0.73-0.88 at 3,000 readers on a busy two-core machine) and nears 1 as the list grows.

    python benchmarks/sections.py [--readers 100000] [--connections 4] [--rounds 1]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from postfix import FEED, REPO, WEEK, add_readers, smtp_sink
from sqlalchemy import create_engine, select, text

from newsletter.db.models import Article, IssueArticle

KEY = "benchmark-key-long-enough-for-the-32-byte-rule"
SECTIONS = ("Europe", "Middle East", "Asia-Pacific", "Americas", "Africa")
COMBINATIONS = [
    "\n".join(chosen)
    for size in range(1, len(SECTIONS) + 1)
    for chosen in itertools.combinations(SECTIONS, size)
]
RENDERS = re.compile(r"Copies rendered for readers' sections: (\d+)\.")
CHUNK = 10_000


def environment(database: Path, transport: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "NEWSLETTER_CONFIG": "",
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{database}",
        "NEWSLETTER_DELIVERY_TRANSPORT": transport,
        "NEWSLETTER_SECRET_KEY": KEY,
    }


def newsletter(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        check=True,
        env=env,
        capture_output=True,
        text=True,
        timeout=7200,
    )
    return done.stdout


def prepare(folder: Path, readers: int) -> tuple[Path, Path]:
    """Two databases with `readers` active readers and the issue built: in one they read
    every section, in the other the 31 combinations in turn."""
    reference = folder / "all.db"
    env = environment(reference, f"outbox:{folder / 'unused'}")
    newsletter(env, "init")
    newsletter(env, "articles", "fetch", str(FEED))
    now = datetime.now(UTC)
    engine = create_engine(f"sqlite:///{reference}")
    with engine.begin() as connection:
        for start in range(0, readers, CHUNK):
            numbers = range(start, min(start + CHUNK, readers))
            add_readers(connection, [f"reader{n:07d}@example.org" for n in numbers], now)
    newsletter(env, "issue", "build", "--week", WEEK)
    with engine.connect() as connection:
        americas = connection.execute(
            select(IssueArticle.article_id)
            .join(Article, Article.id == IssueArticle.article_id)
            .where(Article.section == "Americas")
            .order_by(IssueArticle.position)
            .limit(1)
        ).scalar_one()
    engine.dispose()
    newsletter(env, "issue", "section", str(americas), "Africa", "--week", WEEK)
    chosen = folder / "sections.db"
    shutil.copy(reference, chosen)
    engine = create_engine(f"sqlite:///{chosen}")
    with engine.begin() as connection:
        for index, sections in enumerate(COMBINATIONS):
            connection.execute(
                text("UPDATE subscriptions SET sections = :sections WHERE id % :n = :index"),
                {"sections": sections, "n": len(COMBINATIONS), "index": index},
            )
    engine.dispose()
    return reference, chosen


def send(database: Path, port: int, connections: int) -> tuple[float, int]:
    """Seconds for the whole command on a fresh copy of `database`, and the copies it
    rendered for readers' sections."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "send.db"
        shutil.copy(database, fresh)
        env = environment(fresh, f"smtp://127.0.0.1:{port}")
        started = time.perf_counter()
        args = ("send", "--week", WEEK, "--yes", "--rate", "0", "--connections", str(connections))
        out = newsletter(env, *args)
        wall = time.perf_counter() - started
    found = RENDERS.search(out)
    return wall, int(found[1]) if found else 0


def span(values: list[float], digits: int = 0) -> str:
    low, high = min(values), max(values)
    if round(low, digits) == round(high, digits):
        return f"{low:.{digits}f}"
    return f"{low:.{digits}f}-{high:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(
        f"{'readers':>8} {'conns':>5} {'renders':>7} {'sections msg/s':>15} "
        f"{'all sections msg/s':>19} {'ratio':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        reference, chosen = prepare(Path(tmp), args.readers)
        rates: list[float] = []
        references: list[float] = []
        renders: set[int] = set()
        for _ in range(args.rounds):
            with smtp_sink() as port:
                wall, rendered = send(chosen, port, args.connections)
                rates.append(args.readers / wall)
                renders.add(rendered)
                wall, _ = send(reference, port, args.connections)
                references.append(args.readers / wall)
        ratios = [a / b for a, b in zip(rates, references, strict=True)]
        shown = "/".join(str(r) for r in sorted(renders))
        print(
            f"{args.readers:>8} {args.connections:>5} {shown:>7} {span(rates):>15} "
            f"{span(references):>19} {span(ratios, 2):>9}",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""Scale figures for `newsletter send`: peak memory by list size, throughput over a slow
network against Postfix's smtp-source, and the speed-up of three senders on PostgreSQL.

Everything runs on loopback. Postfix's smtp-sink receives the mail; where a round trip is
wanted, a small asyncio proxy in front of it holds every server reply back for `--delay`
seconds (both our sender and smtp-source go through the same proxy). Figures are printed;
nothing is asserted. Usage:

    python benchmarks/send_scale.py [--rss-sizes 10000,100000,1000000] [--delay-count 3000]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test] [--pg-count 6000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from postfix import FEED, REPO, SINK, SOURCE, WEEK, add_readers, free_port, smtp_sink
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


class DelayProxy:
    """Forwards TCP to `target`, delivering each chunk the server sends `delay` seconds late:
    one added round trip per reply, as a distant server would cost."""

    def __init__(self, target: int, delay: float) -> None:
        self.target = target
        self.delay = delay
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port, backlog=512)
        )
        self._ready.set()
        self.loop.run_forever()
        server.close()
        # Connections still open at the end are cancelled and awaited, so nothing is left
        # pending when the loop closes.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
            await asyncio.gather(
                self._pipe(reader, up_writer, 0.0),
                self._pipe(up_reader, writer, self.delay),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            # Cancelled at shutdown, the connection just ends: Python 3.11's streams would
            # otherwise log the cancelled task as an error.
            writer.close()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay: float
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    break
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                sink.write(chunk)
                await sink.drain()
            sink.close()

        task = asyncio.ensure_future(deliver())
        try:
            while chunk := await source.read(65536):
                queue.put_nowait((self.loop.time() + delay, chunk))
        finally:
            queue.put_nowait((0.0, b""))
            await task

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def newsletter_command() -> list[str]:
    return [sys.executable, "-m", "newsletter"]


def env_for(url: str, transport: str, workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "NEWSLETTER_CONFIG": "",
        "NEWSLETTER_DATABASE_URL": url,
        "NEWSLETTER_DELIVERY_TRANSPORT": transport,
        "NEWSLETTER_NEWSLETTER_BASE_URL": "https://news.example.org",
        "NEWSLETTER_SECRET_KEY": "benchmark-signing-key-0123456789abcdef",
        "NEWSLETTER_DELIVERY_TIMEOUT": "30",
        "PYTHONPATH": str(REPO),
    }


def prepare(url: str, workdir: Path, count: int) -> None:
    """A database with `count` active subscribers and the demo week's issue built."""
    env = env_for(url, f"outbox:{workdir / 'outbox'}", workdir)
    run = newsletter_command()
    subprocess.run([*run, "init"], cwd=workdir, env=env, check=True, capture_output=True)
    engine = create_engine(url)
    moment = datetime.now(UTC)
    with engine.begin() as connection:
        for start in range(0, count, 20_000):
            numbers = range(start, min(start + 20_000, count))
            add_readers(connection, [f"reader{n}@example{n % 50}.org" for n in numbers], moment)
    engine.dispose()
    for args in (("articles", "fetch", str(FEED)), ("issue", "build", "--week", WEEK)):
        subprocess.run([*run, *args], cwd=workdir, env=env, check=True, capture_output=True)


def message_size(url: str, workdir: Path) -> int:
    outbox = workdir / "probe-outbox"
    env = env_for(url, f"outbox:{outbox}", workdir)
    subprocess.run(
        [*newsletter_command(), "send", "--week", WEEK, "--test", "probe@example.org"],
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
    )
    sizes = [p.stat().st_size for p in outbox.glob("*.eml")]
    shutil.rmtree(outbox)
    return max(sizes)


def timed_send(
    url: str, workdir: Path, port: int, connections: int, *, senders: int = 1
) -> tuple[float, int]:
    """Wall time of `senders` concurrent `send` processes, and the largest peak RSS (kB)."""
    env = env_for(url, f"smtp://127.0.0.1:{port}", workdir)
    command = [
        "/usr/bin/time",
        "-v",
        *newsletter_command(),
        "send",
        "--week",
        WEEK,
        "--yes",
        "--rate",
        "0",
        "--connections",
        str(connections),
    ]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(senders)
    ]
    peaks = []
    for process in processes:
        out, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"send failed ({process.returncode}):\n{out}\n{err[-2000:]}")
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
        peaks.append(int(found[1]) if found else 0)
    return time.perf_counter() - started, max(peaks)


def smtp_source(port: int, count: int, sessions: int, size: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            SOURCE,
            "-d",
            "-s",
            str(sessions),
            "-m",
            str(count),
            "-l",
            str(size),
            "-f",
            "newsletter@example.org",
            "-t",
            "reader@example.com",
            f"127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def sqlite_url(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'bench.db'}"


@contextmanager
def postgres_database(base: str) -> Iterator[str]:
    name = f"nl_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def memory(sizes: list[int]) -> None:
    print("\n== peak RSS of `send` (smtp-sink on loopback, 4 connections, no rate limit)")
    print(f"{'recipients':>10} {'seconds':>8} {'msg/s':>7} {'peak MB':>8} {'x first':>8}")
    first = None
    with smtp_sink() as port:
        for count in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                workdir = Path(tmp)
                url = sqlite_url(workdir)
                prepare(url, workdir, count)
                elapsed, peak = timed_send(url, workdir, port, 4)
            first = first or peak
            print(
                f"{count:>10} {elapsed:>8.1f} {count / elapsed:>7.0f} {peak / 1024:>8.1f} "
                f"{peak / first:>8.2f}"
            )
    print(f"goal: peak at the largest size <= 1.2 x the smallest (here {sizes[-1]} vs {sizes[0]})")


def latency(count: int, delay: float, connections: int) -> None:
    print(f"\n== throughput with {delay * 1000:.0f} ms per reply, {connections} connections")
    with tempfile.TemporaryDirectory() as tmp, smtp_sink() as sink:
        workdir = Path(tmp)
        url = sqlite_url(workdir)
        prepare(url, workdir, count)
        size = message_size(url, workdir)
        with DelayProxy(sink, delay) as proxy:
            ours, _ = timed_send(url, workdir, proxy.port, connections)
            theirs = smtp_source(proxy.port, count, connections, size)
    print(f"message size {size} bytes, {count} messages")
    print(f"newsletter send : {count / ours:8.1f} msg/s ({ours:.1f} s)")
    print(f"smtp-source     : {count / theirs:8.1f} msg/s ({theirs:.1f} s)")
    print(f"ratio           : {theirs / ours:8.2f}   (goal >= 0.8)")


def workers(base: str, count: int, delay: float) -> None:
    print(
        f"\n== PostgreSQL: three senders vs one ({count} recipients, {delay * 1000:.0f} ms/reply)"
    )
    results = {}
    with smtp_sink() as sink, DelayProxy(sink, delay) as proxy:
        for senders in (1, 3):
            with tempfile.TemporaryDirectory() as tmp, postgres_database(base) as url:
                workdir = Path(tmp)
                prepare(url, workdir, count)
                elapsed, _ = timed_send(url, workdir, proxy.port, 4, senders=senders)
            results[senders] = elapsed
            print(
                f"{senders} sender(s) x 4 connections: "
                f"{count / elapsed:8.1f} msg/s ({elapsed:.1f} s)"
            )
    print(f"speed-up        : {results[1] / results[3]:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rss-sizes", default="10000,100000")
    parser.add_argument("--delay-count", type=int, default=3000)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--pg", default=os.environ.get("NEWSLETTER_TEST_DATABASE_URL", ""))
    parser.add_argument("--pg-count", type=int, default=6000)
    args = parser.parse_args()
    for tool in (SINK, SOURCE):
        if not Path(tool).exists():
            raise SystemExit(f"{tool} is missing: install Debian's postfix package")
    memory([int(s) for s in args.rss_sizes.split(",") if s])
    latency(args.delay_count, args.delay, args.connections)
    if args.pg:
        workers(args.pg, args.pg_count, args.delay)
    else:
        print("\n== PostgreSQL: skipped (pass --pg URL or set NEWSLETTER_TEST_DATABASE_URL)")


if __name__ == "__main__":
    main()

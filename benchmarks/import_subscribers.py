"""Peak memory and speed of `newsletter subscribers import` on large generated files.

Each size runs the real command in a fresh folder under /usr/bin/time -v and prints rows,
wall time, rows per second and peak RSS, plus the ratio of each peak to the smallest run's
peak (the goal: 1,000,000 rows in under 60 s and 300 MB). Beside each, the same file goes
through `sqlite-utils insert --csv` into an empty SQLite table, as a reference for what
loading the rows alone costs (no validation, no history); install sqlite-utils for that
row (`pip install sqlite-utils`), it is skipped otherwise. Usage:

    python benchmarks/import_subscribers.py [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_csv(path: Path, rows: int) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("email,name,status,subscribed_at\n")
        for n in range(rows):
            status = "unsubscribed" if n % 97 == 0 else "active"
            handle.write(
                f"reader{n}@example{n % 50}.org,Reader Nº{n},{status},2024-01-01T09:00:00Z\n"
            )


def timed(command: list[str], workdir: Path, env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in KB and the last line printed, of one command."""
    started = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-v", *command],
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)[1])  # type: ignore[index]
    lines = result.stdout.strip().splitlines()
    return elapsed, peak, lines[-1] if lines else ""


def reference(csv_path: Path, workdir: Path) -> tuple[float, int, str] | None:
    tool = shutil.which("sqlite-utils") or str(Path(sys.executable).parent / "sqlite-utils")
    if not Path(tool).exists():
        return None
    command = [tool, "insert", "reference.db", "subscribers", str(csv_path), "--csv"]
    return timed(command, workdir, dict(os.environ))


def run(rows: int, workdir: Path) -> tuple[float, int, str]:
    csv_path = workdir / "list.csv"
    newsletter = shutil.which("newsletter") or str(Path(sys.executable).parent / "newsletter")
    env = {**os.environ, "NEWSLETTER_CONFIG": "", "NEWSLETTER_DATABASE_URL": "sqlite:///bench.db"}
    subprocess.run([newsletter, "init"], cwd=workdir, env=env, check=True, capture_output=True)
    return timed([newsletter, "subscribers", "import", str(csv_path)], workdir, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    print(f"{'rows':>9} {'seconds':>8} {'rows/s':>8} {'peak MB':>8} {'x smallest':>10}  report")
    baseline = None
    for rows in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            write_csv(Path(tmp) / "list.csv", rows)
            elapsed, peak_kb, report = run(rows, Path(tmp))
            ref = reference(Path(tmp) / "list.csv", Path(tmp))
        baseline = baseline or peak_kb
        print(
            f"{rows:>9} {elapsed:>8.1f} {rows / elapsed:>8.0f} {peak_kb / 1024:>8.1f} "
            f"{peak_kb / baseline:>10.2f}  {report}"
        )
        if ref is not None:
            seconds, ref_kb, _ = ref
            print(
                f"{'':>9} {seconds:>8.1f} {rows / seconds:>8.0f} {ref_kb / 1024:>8.1f} "
                f"{'':>10}  sqlite-utils insert --csv (reference)"
            )


if __name__ == "__main__":
    main()

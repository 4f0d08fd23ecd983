"""Peak memory and speed of `newsletter subscribers import` on large generated files.

Each size runs the real command in a fresh folder under /usr/bin/time -v and prints rows,
wall time, rows per second and peak RSS, plus the ratio of each peak to the smallest run's
peak (the goal: 1,000,000 rows in under 300 MB). Usage:

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


def run(rows: int, workdir: Path) -> tuple[float, int, str]:
    csv_path = workdir / "list.csv"
    write_csv(csv_path, rows)
    newsletter = shutil.which("newsletter") or str(Path(sys.executable).parent / "newsletter")
    env = {**os.environ, "NEWSLETTER_CONFIG": "", "NEWSLETTER_DATABASE_URL": "sqlite:///bench.db"}
    subprocess.run([newsletter, "init"], cwd=workdir, env=env, check=True, capture_output=True)
    started = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-v", newsletter, "subscribers", "import", str(csv_path)],
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)[1])  # type: ignore[index]
    return elapsed, peak, result.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    print(f"{'rows':>9} {'seconds':>8} {'rows/s':>8} {'peak MB':>8} {'x smallest':>10}  report")
    baseline = None
    for rows in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            elapsed, peak_kb, report = run(rows, Path(tmp))
        baseline = baseline or peak_kb
        print(
            f"{rows:>9} {elapsed:>8.1f} {rows / elapsed:>8.0f} {peak_kb / 1024:>8.1f} "
            f"{peak_kb / baseline:>10.2f}  {report}"
        )


if __name__ == "__main__":
    main()

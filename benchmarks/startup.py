"""How long `newsletter --help` takes, next to the interpreter alone and to importing click.

The command imports a command's module (and the core behind it) only when that command runs,
so `--help` should cost little more than click itself. Prints the median of N runs of each,
alternated so that a busy machine slows every row alike.

    python benchmarks/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

NEWSLETTER = Path(sys.executable).with_name("newsletter")
CASES = {
    "python -c pass (reference)": [sys.executable, "-c", "pass"],
    "python -c 'import click' (reference)": [sys.executable, "-c", "import click"],
    "newsletter --help": [str(NEWSLETTER), "--help"],
    "newsletter issue --help": [str(NEWSLETTER), "issue", "--help"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    timings: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(runs):
        for name, command in CASES.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            timings[name].append(time.perf_counter() - started)
    width = max(len(name) for name in CASES)
    print(f"{'command':<{width}}  median s  min s")
    for name, values in timings.items():
        print(f"{name:<{width}}  {statistics.median(values):8.3f}  {min(values):5.3f}")


if __name__ == "__main__":
    main()

"""How long rendering a 20-article issue takes, and where the time goes.

Renders the same issue N times through the whole pipeline (Jinja2 -> MJML -> premailer, HTML,
text and web edition) and prints the median time per render. For scale, the same run also
times a bare Jinja2 render of the layout (no MJML, no inlining) and one `personalise` call,
the per-subscriber cost that the single render buys. The goal: well under a second per
render. Usage:

    python benchmarks/render_issue.py [--articles 20] [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.config import NewsletterSettings, Settings  # noqa: E402
from newsletter.issue.render import (  # noqa: E402
    HTML_TEMPLATE,
    PersonalFields,
    _context,
    _environment,
    _preheader,
    _subject,
    personalise,
    render_issue,
)
from tests.sample_issue import sample_issue  # noqa: E402


def median_seconds(action: Callable[[], object], runs: int) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=20)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    settings = Settings(newsletter=NewsletterSettings(base_url="https://news.example.org"))
    dirs = [REPO / "templates"]
    content = sample_issue(args.articles)

    cold_start = time.perf_counter()
    rendered = render_issue(content, settings, dirs)
    cold = time.perf_counter() - cold_start

    full = median_seconds(lambda: render_issue(content, settings, dirs), args.runs)

    env = _environment(tuple(dirs))
    subject = _subject(content.week, settings)
    context = _context(content, settings, subject, _preheader(content, settings))
    template = env.get_template(HTML_TEMPLATE)
    bare = median_seconds(lambda: template.render(context), args.runs)

    reader = PersonalFields("https://news.example.org/u/MQ.abcdefghijk", "jane@example.org", "Jane")
    per_copy = median_seconds(
        lambda: (
            personalise(rendered.html, reader, html=True),
            personalise(rendered.text, reader, html=False),
        ),
        max(args.runs, 200),
    )

    print(f"articles:                    {args.articles}")
    print(f"runs:                        {args.runs}")
    print(f"HTML size:                   {rendered.html_bytes / 1024:.1f} KB")
    print(f"first render (cold):         {cold * 1000:.1f} ms")
    print(f"full render, median:         {full * 1000:.1f} ms")
    print(f"bare Jinja2 layout, median:  {bare * 1000:.2f} ms")
    print(f"ratio full / bare Jinja2:    {full / bare:.1f}x")
    print(f"personalise one copy:        {per_copy * 1e6:.0f} us (HTML and text)")
    print(f"ratio full render / copy:    {full / per_copy:.0f}x")


if __name__ == "__main__":
    main()

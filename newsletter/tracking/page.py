"""The report as one self-contained HTML page: charts drawn by matplotlib as inline SVG,
readable without JavaScript or network, each followed by a table with the same figures
for screen readers and for copying.

Every value that came from outside (article titles from the feed, the subject) is escaped
by Jinja2's autoescaping in the page, and drawn as glyph outlines, never markup, in the SVG.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
from markupsafe import Markup
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from newsletter.tracking.opens import UNRELIABLE
from newsletter.tracking.report import IssueReport

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
PAGE = "report/report.html.j2"
# (class, figure width in inches, characters of a title kept): one drawing for wide screens
# and one for phones, where the wide one's text would shrink below reading size; the page's
# CSS shows one of them.
LAYOUTS = (("wide", 8.0, 48), ("narrow", 4.4, 22))
HUMAN, MACHINE = "#1f5f99", "#c9a227"
STYLE: dict[Any, Any] = {
    "svg.fonttype": "path",  # text as outlines: the same on every screen, no markup inside
    "svg.hashsalt": "newsletter-report",  # element ids stable from one run to the next
    "text.parse_math": False,  # a `$` in a headline is a dollar, not TeX
    "font.size": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_SIZE = re.compile(r'\s(width|height)="[^"]*"')


def render_page(report: IssueReport) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    with matplotlib.rc_context(STYLE), warnings.catch_warnings():
        # A script the bundled font lacks is drawn as boxes in the chart; the table below
        # it still has the title as written.
        warnings.filterwarnings("ignore", "Glyph .* missing from font", UserWarning)
        charts = {
            name: Markup("\n").join(
                draw(report, width, chars, f"chart {kind}", f"chart-{name}")
                for kind, width, chars in LAYOUTS
            )
            for name, draw in (
                ("deliveries", _deliveries),
                ("clicks", _clicks),
                ("growth", _growth),
            )
        }
    return env.get_template(PAGE).render(report=report, charts=charts, opens_note=UNRELIABLE)


def _deliveries(report: IssueReport, width: float, chars: int, css: str, label: str) -> Markup:
    labels = list(report.deliveries)
    values = list(report.deliveries.values())
    figure = _figure(width, len(labels))
    axes = figure.subplots()
    bars = axes.barh(labels, values, color=HUMAN)
    axes.invert_yaxis()
    axes.set_xlabel("messages")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.bar_label(bars, padding=3)
    return _svg(figure, css, label)


def _clicks(report: IssueReport, width: float, chars: int, css: str, label: str) -> Markup:
    rows = report.articles
    labels = [f"{n}. {_short(row.title, chars)}" for n, row in enumerate(rows, 1)]
    labels = labels or ["(no articles)"]
    human = [row.human for row in rows] or [0]
    machine = [row.machine for row in rows] or [0]
    figure = _figure(width, len(labels))
    axes = figure.subplots()
    axes.barh(labels, human, color=HUMAN, label="people")
    axes.barh(labels, machine, left=human, color=MACHINE, label="machines")
    axes.invert_yaxis()
    axes.set_xlabel("clicks")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(loc="lower right", frameon=False)
    return _svg(figure, css, label)


def _growth(report: IssueReport, width: float, chars: int, css: str, label: str) -> Markup:
    weeks = [row.week[5:] for row in report.growth]
    figure = Figure(figsize=(width, 3.4))
    axes = figure.subplots()
    for values, series, colour in (
        ([row.added for row in report.growth], "added", HUMAN),
        ([row.unsubscribed for row in report.growth], "unsubscribed", MACHINE),
        ([row.bounced for row in report.growth], "bounced", "#8c2d19"),
    ):
        axes.plot(weeks, values, marker="o", label=series, color=colour)
    axes.set_ylabel("subscribers")
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.tick_params(axis="x", labelrotation=45)
    axes.legend(frameon=False)
    return _svg(figure, css, label)


def _figure(width: float, bars: int) -> Figure:
    return Figure(figsize=(width, 1.2 + 0.38 * max(bars, 1)))


def _short(title: str, chars: int) -> str:
    title = " ".join("".join(ch for ch in title if ch.isprintable()).split())
    return title if len(title) <= chars else title[: chars - 1] + "\u2026"


def _svg(figure: Figure, css: str, label: str) -> Markup:
    """The figure as an inline <svg> that scales to its container (its viewBox is kept)."""
    figure.tight_layout()
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    svg = out.getvalue()
    svg = svg[svg.index("<svg") :]
    opening, rest = svg.split(">", 1)
    opening = _SIZE.sub("", opening)
    tag = f'{opening} class="{css}" role="img" aria-labelledby="{label}">'
    return Markup(tag + rest)  # noqa: S704 - matplotlib's own SVG; titles are drawn as paths

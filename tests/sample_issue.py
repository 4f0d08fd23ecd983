"""A realistic week of invented articles for rendering tests and the render benchmark.

Twelve stories in the magazine's shape: one featured, the rest spread over the configured
sections, with bylines, photo credits, links inside teasers and a few names that need
escaping or are not ASCII.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from newsletter.issue.periods import Week
from newsletter.issue.render import IssueContent, Teaser

WEEK = Week(2024, 47)
SITE = "https://www.example.org"
IMAGES = "https://images.example.org"

_STORIES: tuple[tuple[str, str, str, tuple[str, ...], str, str, str], ...] = (
    (
        "Europe",
        "Analysis",
        "Why Berlin's new defence budget is less than it seems",
        ("Katrin Vogel",),
        "Germany has promised to spend more on its armed forces than at any time since "
        "reunification. The fine print tells a more cautious story, and allies have noticed.",
        "Soldiers of the Bundeswehr on exercise near Munster",
        "Jens Büttner / Example Images",
    ),
    (
        "Europe",
        "News",
        "Poland and the Baltic states agree on a joint air-defence command",
        ("Marek Nowicki", "Laura Ozola"),
        "The four governments will share radar data and coordinate interceptors from a single "
        "headquarters in Riga, the first arrangement of its kind on NATO's eastern flank.",
        "A Patriot air-defence battery at a base in eastern Poland",
        "Wojtek Radwański / Example Images",
    ),
    (
        "Europe",
        "Analysis",
        "The quiet return of industrial policy to Brussels",
        ("Élodie Marchand",),
        "After decades of suspicion, the European Commission now picks winners in batteries, "
        "chips and steel. Smaller member states worry the rules favour the biggest economies.",
        "The Berlaymont building in Brussels at dusk",
        "Thierry Roge / Example Images",
    ),
    (
        "Middle East",
        "Analysis",
        "Gulf states are hedging their bets on Washington",
        ("Omar Haddad",),
        "Riyadh and Abu Dhabi are signing defence deals with Seoul, Ankara and Beijing at the "
        "same time. Officials call it diversification; critics call it a warning.",
        "Delegates at a defence exhibition in Abu Dhabi",
        "Karim Sahib / Example Images",
    ),
    (
        "Middle East",
        "News",
        "Water talks between Iraq and Turkey resume after a two-year pause",
        ("Layla Ahmed", "Deniz Kaya"),
        "Negotiators met in Ankara to discuss flows on the Tigris and Euphrates as southern Iraq "
        "faces another summer of drought and failing harvests.",
        "A dried riverbed of the Euphrates near Nasiriyah",
        "Hussein Faleh / Example Images",
    ),
    (
        "Asia-Pacific",
        "Analysis",
        "Japan's new security strategy meets an old constitution",
        ("Hiroshi Tanaka",),
        "Tokyo wants counterstrike missiles and a larger role in regional defence. Article 9 and "
        "public opinion still set limits that Washington tends to underestimate.",
        "A Japanese destroyer leaves the port of Yokosuka",
        "Kazuhiro Nogi / Example Images",
    ),
    (
        "Asia-Pacific",
        "News",
        "Manila and Hanoi sign a coast-guard pact for the South China Sea",
        ("Maria Santos",),
        "The agreement covers joint patrols, hotlines and search-and-rescue drills, and it is "
        "the first between two claimants that does not include Beijing.",
        "Philippine coast-guard vessels near Second Thomas Shoal",
        "Ted Aljibe / Example Images",
    ),
    (
        "Americas",
        "Analysis",
        "Brazil's bid to lead the Global South has a domestic problem",
        ("Rafael Souza",),
        "Brasília hosts summits and brokers talks abroad, but a divided Congress and a slowing "
        "economy limit how much of that ambition it can pay for.",
        "The National Congress building in Brasília",
        "Evaristo Sá / Example Images",
    ),
    (
        "Americas",
        "News",
        "Mexico and the United States extend their security framework",
        ("Ana Lucía Herrera", "Tom O'Neill"),
        "The renewed agreement adds cooperation on fentanyl precursors and arms trafficking, "
        "two issues that dominated the campaign on both sides of the border.",
        "Border crossing between Ciudad Juárez and El Paso",
        "Herika Martínez / Example Images",
    ),
    (
        "Africa",
        "Analysis",
        "The Sahel's juntas are rewriting their alliances",
        ("Aminata Diallo",),
        "Mali, Burkina Faso and Niger have left ECOWAS and formed a confederation of their own. "
        "Their neighbours are trying to keep trade routes open without endorsing the coups.",
        "A market street in Niamey, Niger",
        "Boureima Hama / Example Images",
    ),
    (
        "Global",
        "Analysis",
        "What the climate finance deal in Baku means for borrowers",
        ("Priya Raman", "Jonas Lindqvist"),
        "Rich countries agreed to a larger annual sum, but much of it will come as loans. For "
        "indebted governments, the terms matter more than the headline figure.",
        "Delegates in the plenary hall at the Baku climate conference",
        "Sean Gallup / Example Images",
    ),
    (
        "Global",
        "News",
        "The WTO's dispute-settlement body is still without judges",
        ("Claire Dubois",),
        "A proposal to restore the appellate body failed again in Geneva, leaving trade disputes "
        "to be settled by ad hoc arbitration & bilateral deals.",
        "The headquarters of the World Trade Organization in Geneva",
        "Fabrice Coffrini / Example Images",
    ),
)


def _teaser_html(summary: str, url: str, number: int) -> str:
    return (
        f"<p>{summary.replace('&', '&amp;')}</p>"
        f'<p>Read our <a href="{url}/background">background briefing</a> and the '
        f"<em>editors&#8217; notes</em> on story {number}.</p>"
    )


def sample_teasers(count: int = 12, *, image_base: str = IMAGES) -> tuple[Teaser, ...]:
    """`count` stories (cycling through the twelve), the first one featured, newest first."""
    start = datetime(2024, 11, 22, 14, 0, tzinfo=UTC)
    teasers = []
    for number in range(count):
        section, kicker, title, authors, summary, alt, credit = _STORIES[number % len(_STORIES)]
        slug = f"story-{number + 1}"
        url = f"{SITE}/{section.lower().replace(' ', '-')}/{slug}"
        teasers.append(
            Teaser(
                article_id=number + 1,
                url=url,
                title=title if number < len(_STORIES) else f"{title} ({number + 1})",
                kicker=kicker,
                section=section,
                authors=authors,
                published_at=start - timedelta(hours=7 * number),
                teaser_html=_teaser_html(summary, url, number + 1),
                image_url=f"{image_base}/{slug}.jpg",
                image_alt=alt,
                image_credit=credit,
                featured=number == 0,
            )
        )
    ordered = sorted(teasers[1:], key=lambda t: _SECTION_ORDER.index(t.section))
    return (teasers[0], *ordered)


_SECTION_ORDER = ("Europe", "Middle East", "Asia-Pacific", "Americas", "Africa", "Global")


def sample_issue(count: int = 12, *, image_base: str = IMAGES) -> IssueContent:
    return IssueContent(week=WEEK, teasers=sample_teasers(count, image_base=image_base))

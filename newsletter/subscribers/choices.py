"""Which newsletters, and which of their sections, a file row or a command puts a reader down for.

A CSV cell and the `--sections` option list values separated by `;`. The sections named apply
to every newsletter named beside them, so each must be carried by all of them; an entry written
`SLUG:Section` applies to that one newsletter only, which is how an export writes a reader
whose newsletters have different sections chosen. Names are checked against the
configuration, and every unknown one is its own problem, so that a file's author can fix them
all in one go.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from newsletter.config import Settings
from newsletter.db.models import Subscription

SEPARATOR = ";"
QUALIFIER = ":"

# Each newsletter chosen, with the sections chosen in it (empty: every section it carries).
Choice = dict[str, tuple[str, ...]]


def split(cell: str) -> tuple[str, ...]:
    """`Europe; Asia-Pacific` as its values, without blanks or repeats."""
    return tuple(dict.fromkeys(v.strip() for v in cell.split(SEPARATOR) if v.strip()))


@dataclass(frozen=True)
class Catalogue:
    """The newsletters of the install, in the configuration's order, and what each carries."""

    carried: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, settings: Settings) -> Catalogue:
        return cls({slug: settings.for_newsletter(slug).sections for slug in settings.slugs})

    def choose(
        self, newsletters: Sequence[str], sections: Sequence[str]
    ) -> tuple[Choice, list[str]]:
        """The newsletters named with the sections chosen for each, as configured (the
        configuration's spelling); and one line per name that is not known or not carried."""
        problems = [
            f"unknown newsletter {slug!r} (the newsletters are: {', '.join(self.carried)})"
            for slug in newsletters
            if slug not in self.carried
        ]
        known = [slug for slug in newsletters if slug in self.carried]
        chosen: dict[str, list[str]] = {slug: [] for slug in known}
        for entry in sections:
            slug, name = self._qualified(entry)
            if slug is not None and slug not in chosen:
                if slug in self.carried:
                    problems.append(f"section {entry!r} is for {slug}, which the row does not name")
                continue
            targets = [slug] if slug is not None else known
            found = self._carried_by(name, targets)
            if found is None:
                problems.append(self._not_carried(name, targets))
                continue
            for target in targets:
                chosen[target].append(found)
        return {slug: tuple(dict.fromkeys(names)) for slug, names in chosen.items()}, problems

    def _qualified(self, entry: str) -> tuple[str | None, str]:
        prefix, colon, rest = entry.partition(QUALIFIER)
        if colon and prefix.strip() in self.carried:
            return prefix.strip(), rest.strip()
        return None, entry

    def _carried_by(self, name: str, targets: Iterable[str]) -> str | None:
        """The configured spelling of section `name` if every target carries it."""
        spelling = None
        for slug in targets:
            match = [s for s in self.carried[slug] if s.casefold() == name.casefold()]
            if not match:
                return None
            spelling = match[0]
        return spelling

    def _not_carried(self, name: str, targets: Sequence[str]) -> str:
        everywhere = {s.casefold() for sections in self.carried.values() for s in sections}
        if name.casefold() not in everywhere:
            known = dict.fromkeys(s for sections in self.carried.values() for s in sections)
            return f"unknown section {name!r} (the sections are: {', '.join(known)})"
        missing = [
            slug
            for slug in targets
            if name.casefold() not in {s.casefold() for s in self.carried[slug]}
        ]
        return f"section {name!r} is not carried by {', '.join(missing)}"

    def cells(self, subscriptions: Iterable[Subscription]) -> tuple[str, str]:
        """The `newsletters` and `sections` cells for a reader's live subscriptions, in the
        configuration's order so that a list read back writes the same cells again."""
        order = {slug: i for i, slug in enumerate(self.carried)}
        live = sorted(
            subscriptions, key=lambda s: (order.get(s.newsletter, len(order)), s.newsletter)
        )
        newsletters = SEPARATOR.join(s.newsletter for s in live)
        if len({s.sections for s in live}) <= 1:
            return newsletters, SEPARATOR.join(live[0].section_list if live else ())
        qualified = (f"{s.newsletter}{QUALIFIER}{name}" for s in live for name in s.section_list)
        return newsletters, SEPARATOR.join(qualified)

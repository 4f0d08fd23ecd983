"""Each reader's copy of an issue: the full issue, or only the sections they chose.

The sections a reader chose are fixed in their ledger row when the send is queued. A send
meets few combinations of them among many readers, so each combination's copy is rendered
once, the first time a reader with it comes up, and its `MessageFactory` is kept for the rest
of the send: a send renders at most one copy per combination (the full issue, stored when it
was built, is never rendered again). Every sender renders from the same stored issue, so the
readers of a combination get the same copy whichever sender mails them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from newsletter.mail.message import MessageFactory

# Why a reader whose sections have no story in the issue was not sent it.
NOTHING_IN_SECTIONS = "nothing in their sections in this issue"
ALL_SECTIONS = "all sections"

Sections = tuple[str, ...]


def combination(packed: str, known: Sequence[str]) -> Sections:
    """A reader's sections as stored (one per line; "" for all) as the key of their copy:
    without repeats, spelt and ordered as in `known` (the feed's sections), so that readers
    who chose the same sections share one copy. Sections no longer known keep their place
    after the known ones; they match no story."""
    order = {name.casefold(): index for index, name in enumerate(known)}
    chosen: dict[str, str] = {}
    for line in packed.splitlines():
        name = line.strip()
        if name:
            key = name.casefold()
            chosen.setdefault(key, known[order[key]] if key in order else name)
    return tuple(sorted(chosen.values(), key=lambda n: (order.get(n.casefold(), len(order)), n)))


def label(sections: Sections) -> str:
    """How a combination reads in a report or a masthead."""
    return " \u00b7 ".join(sections) if sections else ALL_SECTIONS


class Variants:
    """The factories of one send, one per combination of sections, made on first use.

    `render` makes the factory of a combination, or None when the issue has nothing in it
    (its readers get no message). `renders` counts the combinations rendered so far.
    """

    def __init__(
        self,
        full: MessageFactory,
        render: Callable[[Sections], MessageFactory | None],
        known: Sequence[str],
    ) -> None:
        self.full = full
        self._render = render
        self._known = tuple(known)
        self._keys: dict[str, Sections] = {}
        self._made: dict[Sections, MessageFactory | None] = {(): full}
        self.renders = 0

    def factory(self, packed: str) -> MessageFactory | None:
        """The factory for a reader whose sections are stored as `packed`."""
        if not packed:
            return self.full
        key = self._keys.get(packed)
        if key is None:
            key = self._keys[packed] = combination(packed, self._known)
        if key not in self._made:
            made = self._render(key)
            self.renders += made is not None
            self._made[key] = made
        return self._made[key]

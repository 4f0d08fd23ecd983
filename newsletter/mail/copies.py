"""Per-subscriber copies of one issue's message by substitution, byte for byte what the
standard library would build.

The message is built the slow way for two sentinel recipients; the lines that differ are the
personal ones. Everything else is kept as encoded bytes, and per subscriber only the four
personal headers and the personal body lines are encoded again. The static bytes come from
the standard library's message, whose header block was checked; the personal headers are
checked in every copy.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import quoprimime
from email.headerregistry import Address
from email.utils import format_datetime
from typing import TYPE_CHECKING

from newsletter.issue.personal import PERSONAL_MARKER, PersonalFields, personalise
from newsletter.mail.headers import (
    CRLF,
    MAX_LINE,
    POLICY,
    Recipient,
    check_header_fields,
    fold_uri_list,
)
from newsletter.transport.smtp import dot_stuff

if TYPE_CHECKING:
    from newsletter.mail.message import MessageFactory

LONG_LINE = 2000  # personal lines longer than this are re-encoded only around the fields
_SIMPLE_NAME = re.compile(r"[A-Za-z0-9'-]+(?: [A-Za-z0-9'-]+)*")
_SIMPLE_ADDRESS = re.compile(r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9.-]+")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

_PERSONAL_FIELDS = (b"To", b"Date", b"Message-ID", b"List-Unsubscribe")

# Bytes of a copy as stored, and the same bytes dot-stuffed for SMTP's DATA.
Chunk = tuple[bytes, bytes]
STORED, STUFFED = 0, 1  # which side of each chunk


def _lines(text: str) -> list[str]:
    """Lines as `bytes.splitlines` sees them after UTF-8 encoding (which is what the email
    package does before quoted-printable encoding)."""
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _qp_line(line: str) -> bytes:
    encoded = quoprimime.body_encode(line.encode("utf-8").decode("latin-1"), MAX_LINE, CRLF)
    return encoded.encode("ascii")


def _qp_escape(text: str) -> str:
    """The quoted-printable form of `text` before line wrapping (a trailing blank is left
    as is: only the end of a whole line gets special treatment)."""
    raw = text.encode("utf-8").decode("latin-1")
    return str(quoprimime.body_encode(raw + "x", sys.maxsize))[:-1]


class _LongLine:
    """A long line with personal fields in it, encoded exactly as `quoprimime.body_encode`
    would encode the personalised line, without re-encoding its static stretches.

    The wrapping of a stretch depends only on the offset at which the first soft line
    starts inside it, so each stretch is wrapped once per offset seen (at most 78) and the
    per-subscriber work is limited to the few soft lines that touch a personal field.
    """

    WIDTH = MAX_LINE - 1  # characters per soft line before the "="
    MARGIN = MAX_LINE + 1  # a soft line decided entirely inside a stretch

    def __init__(self, line: str, html: bool) -> None:
        found = list(PERSONAL_MARKER.finditer(line))
        edges = [0, *(edge for match in found for edge in match.span()), len(line)]
        self.statics = [_qp_escape(line[a:b]) for a, b in zip(edges[::2], edges[1::2], strict=True)]
        self.markers = [match.group(0) for match in found]
        self.html = html
        self._cache: dict[tuple[int, int], tuple[Chunk | None, int]] = {}

    def chunks(self, fields: PersonalFields) -> list[Chunk]:
        parts = [self.statics[0]]
        begins = [0]
        for marker, static in zip(self.markers, self.statics[1:], strict=True):
            parts.append(_qp_escape(personalise(marker, fields, html=self.html)))
            begins.append(sum(map(len, parts)))
            parts.append(static)
        line = "".join(parts)
        out: list[Chunk] = []
        start = 0
        laststart = len(line) - 1 - MAX_LINE
        segment = 0
        while start <= laststart:
            while segment < len(self.statics) and start >= begins[segment] + len(
                self.statics[segment]
            ):
                segment += 1
            if (
                segment < len(self.statics)
                and begins[segment] <= start
                and start + self.MARGIN <= begins[segment] + len(self.statics[segment])
            ):
                block, exit_at = self._stretch(segment, start - begins[segment])
                if block is not None:
                    out.append(block)
                start = begins[segment] + exit_at
                continue
            soft: list[str] = []
            start = _wrap_step(line, start, soft)
            out.append(_chunk(soft[0]))
        out.append(_chunk(_line_end(line, start, laststart)))
        return out

    def _stretch(self, segment: int, offset: int) -> tuple[Chunk | None, int]:
        key = (segment, offset)
        if key not in self._cache:
            text = self.statics[segment]
            out: list[str] = []
            start = offset
            while start + self.MARGIN <= len(text):
                start = _wrap_step(text, start, out)
            self._cache[key] = (_chunk(CRLF.join(out)) if out else None, start)
        return self._cache[key]


def _chunk(lines: str) -> Chunk:
    return _stuffed(lines.encode("ascii") + b"\r\n")


def _stuffed(encoded: bytes) -> Chunk:
    """Encoded lines that start at a line start, with their line break, as stored and as
    SMTP's DATA carries them (the same object when no line starts with a dot)."""
    return encoded, dot_stuff(encoded)


def _wrap_step(line: str, start: int, out: list[str]) -> int:
    """One soft line of `quoprimime.body_encode`, never splitting an escape sequence."""
    stop = start + MAX_LINE - 1
    if line[stop - 2] == "=":
        out.append(line[start : stop - 1])
        return stop - 2
    if line[stop - 1] == "=":
        out.append(line[start:stop])
        return stop - 1
    out.append(line[start:stop] + "=")
    return stop


def _line_end(line: str, start: int, laststart: int) -> str:
    if line and line[-1] in " \t":
        room = start - laststart
        if room >= 3:
            return line[start:-1] + f"={ord(line[-1]):02X}"
        if room == 2:
            return line[start:-1] + line[-1] + "=" + CRLF
        return line[start:-1] + "=" + CRLF + f"={ord(line[-1]):02X}"
    return line[start:]


# Two recipients that differ in every personal field: lines that differ between their
# messages are the personal ones.
_SENTINELS = (
    Recipient(subscriber_id=None, email="first.sentinel@sentinel.invalid", name="First Sentinel"),
    Recipient(subscriber_id=None, email="second.sentinel@sentinel.invalid", name="Other Person"),
)
_SENTINEL_URLS = ("https://sentinel.invalid/u/AAAA", "https://sentinel.invalid/u/BBBBBBBB")
_SENTINEL_READERS = ("2000-W01.1.CCCC", "2000-W01.22.DDDDDDDD")


def _sentinel_fields(recipient: Recipient, url: str, reader: str) -> PersonalFields:
    # The preferences address is the unsubscribe one with its path changed: it differs
    # between the two sentinels as every personal field must.
    return PersonalFields(
        unsubscribe_url=url,
        email=recipient.email,
        name=recipient.name,
        reader=reader,
        preferences_url=url.replace("/u/", "/p/"),
    )


@dataclass(frozen=True)
class _Part:
    """One body part: encoded static runs, with the personal lines' templates between them."""

    static: tuple[bytes, ...]
    personal: tuple[str | _LongLine, ...]
    html: bool

    @classmethod
    def learn(cls, template: str, html: bool) -> _Part | None:
        source = _lines(template)
        renders = [
            _lines(personalise(template, _sentinel_fields(r, url, reader), html=html))
            for r, url, reader in zip(_SENTINELS, _SENTINEL_URLS, _SENTINEL_READERS, strict=True)
        ]
        if any(len(r) != len(source) for r in renders):
            return None
        static: list[bytes] = []
        personal: list[str | _LongLine] = []
        run: list[bytes] = []
        for index, line in enumerate(source):
            if renders[0][index] == renders[1][index]:
                run.append(_qp_line(renders[0][index]) + b"\r\n")
                continue
            static.append(b"".join(run))
            run = []
            personal.append(_LongLine(line, html) if len(line) > LONG_LINE else line)
        static.append(b"".join(run))
        part = cls(tuple(static), tuple(personal), html)
        for recipient, url, reader, render in zip(
            _SENTINELS, _SENTINEL_URLS, _SENTINEL_READERS, renders, strict=True
        ):
            fields = _sentinel_fields(recipient, url, reader)
            expected = b"".join(_qp_line(line) + b"\r\n" for line in render)
            if part.encode(fields) != expected:
                return None
        return part

    def encode(self, fields: PersonalFields) -> bytes:
        return b"".join(_assemble(self.static, self.slots(fields), STORED))

    def slots(self, fields: PersonalFields) -> list[list[Chunk]]:
        """The chunks of each personal line."""
        slots = []
        for line in self.personal:
            if isinstance(line, _LongLine):
                slots.append(line.chunks(fields))
            else:
                personal = personalise(line, fields, html=self.html)
                slots.append([_stuffed(_qp_line(personal) + b"\r\n")])
        return slots


@dataclass(frozen=True)
class FastTemplate:
    """The serialised message cut around everything that depends on the recipient.

    `static` holds the runs between the personal pieces, and `stuffed` the same runs
    dot-stuffed for SMTP's DATA, so that per message only the small personal pieces are
    scanned for a leading dot.
    """

    static: tuple[bytes, ...]
    stuffed: tuple[bytes, ...]
    text: _Part
    html: _Part

    @classmethod
    def learn(cls, factory: MessageFactory) -> FastTemplate | None:
        text = _Part.learn(factory.issue.text, html=False)
        html = _Part.learn(factory.issue.html, html=True)
        if text is None or html is None:
            return None
        recipient = Recipient(subscriber_id=0, email="fast.sentinel@sentinel.invalid")
        now = datetime.fromisoformat("2000-01-01T00:00:00+00:00")
        token = factory.token(recipient)
        fields = factory.personal_fields(recipient, token)
        text_body = personalise(factory.issue.text, fields, html=False)
        html_body = personalise(factory.issue.html, fields, html=True)
        whole = factory.reference_bytes(recipient, token, now, text=text_body, html=html_body)
        headers = _headers(factory, recipient, token, now)
        runs = _split_around(whole, [*headers, text.encode(fields), html.encode(fields)])
        if runs is None:
            return None
        static = _runs(
            [*_slots(runs[:5]), *_slots(text.static), runs[5], *_slots(html.static), runs[6]]
        )
        template = cls(tuple(static), tuple(dot_stuff(run) for run in static), text, html)
        if template.render(factory, recipient, now) != whole:
            return None
        return template

    def _personal(
        self, factory: MessageFactory, recipient: Recipient, now: datetime
    ) -> list[list[Chunk]]:
        token = factory.token(recipient)
        fields = factory.personal_fields(recipient, token)
        # A header line starts with its name or, folded, with a blank: never with a dot.
        return [
            *([(header, header)] for header in _headers(factory, recipient, token, now)),
            *self.text.slots(fields),
            *self.html.slots(fields),
        ]

    def render(self, factory: MessageFactory, recipient: Recipient, now: datetime) -> bytes:
        return b"".join(_assemble(self.static, self._personal(factory, recipient, now), STORED))

    def render_for_smtp(
        self, factory: MessageFactory, recipient: Recipient, now: datetime
    ) -> tuple[bytes, bytes]:
        """The message, and the same message as SMTP's DATA section."""
        slots = self._personal(factory, recipient, now)
        message = b"".join(_assemble(self.static, slots, STORED))
        return message, b"".join(_assemble(self.stuffed, slots, STUFFED)) + b".\r\n"


def _headers(
    factory: MessageFactory, recipient: Recipient, token: str, now: datetime
) -> list[bytes]:
    """The copy's personal header fields, refused if a value broke out of its own."""
    headers = [
        _to_header(recipient),
        _date_header(now),
        f"Message-ID: {factory.message_id(recipient)}{CRLF}".encode("ascii"),
        fold_uri_list("List-Unsubscribe", factory.list_unsubscribe(token)).encode(),
    ]
    check_header_fields(b"".join(headers), _PERSONAL_FIELDS)
    return headers


def _assemble(runs: Sequence[bytes], slots: Sequence[list[Chunk]], side: int) -> list[bytes]:
    """runs[0], the chunks of slots[0], runs[1], ..., runs[-1]."""
    out = [runs[0]]
    for slot, run in zip(slots, runs[1:], strict=True):
        out += [chunk[side] for chunk in slot]
        out.append(run)
    return out


def _slots(runs: Sequence[bytes]) -> list[bytes | None]:
    """The runs with a personal slot (None) between each two."""
    out: list[bytes | None] = [runs[0]]
    for run in runs[1:]:
        out += (None, run)
    return out


def _runs(layout: Sequence[bytes | None]) -> list[bytes]:
    """The static runs around the slots of `layout`, neighbours joined into one."""
    runs = [b""]
    for item in layout:
        if item is None:
            runs.append(b"")
        else:
            runs[-1] += item
    return runs


def _split_around(whole: bytes, pieces: Sequence[bytes]) -> list[bytes] | None:
    """`whole` cut at each of `pieces` in order: the len(pieces)+1 runs between them."""
    runs: list[bytes] = []
    position = 0
    for piece in pieces:
        found = whole.find(piece, position)
        if found < 0:
            return None
        runs.append(whole[position:found])
        position = found + len(piece)
    runs.append(whole[position:])
    return runs


def _to_header(recipient: Recipient) -> bytes:
    if (not recipient.name or _SIMPLE_NAME.fullmatch(recipient.name)) and _SIMPLE_ADDRESS.fullmatch(
        recipient.email
    ):
        value = f"{recipient.name} <{recipient.email}>" if recipient.name else recipient.email
        line = f"To: {value}{CRLF}"
        if len(line) <= MAX_LINE + 2:
            return line.encode("ascii")
    address = Address(display_name=recipient.name, addr_spec=recipient.email)
    header = POLICY.header_factory("To", address)
    return str(header.fold(policy=POLICY)).encode("ascii")


def _date_header(now: datetime) -> bytes:
    return _date_header_for(now.replace(microsecond=0))


@functools.lru_cache(maxsize=4)
def _date_header_for(second: datetime) -> bytes:
    """Formatted once per second of the send rather than once per message."""
    return f"Date: {format_datetime(second)}{CRLF}".encode("ascii")

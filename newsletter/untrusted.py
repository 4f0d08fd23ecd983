"""Text that came from a stranger (a subscriber, a feed, a bounce report), made safe for
where it goes: a display name for a mail header, or any text for the operator's terminal.

A name is text for people. Whatever looks like an RFC 2047 encoded-word is decoded here, so
that the email package, which decodes such words again when it writes a header, finds
nothing left to decode; control characters (C0, DEL, C1), line breaks and the bidi controls
that reorder what follows them are taken out; the email package then encodes what remains.

A terminal runs control characters (ESC starts a command, BEL rings) and lets bidi controls
turn a line around, so text shown there has those characters spelled out instead.
"""

from __future__ import annotations

import binascii
import re

# Embeddings, overrides and isolates (Unicode's explicit directional formatting characters,
# the "Trojan Source" set). The marks (LRM, RLM, ALM) change nothing beyond one character.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0)]  # C0, DEL and C1 (NEL is C1)
_LINE_SEPARATORS = "\u2028\u2029"
_SURROGATES = range(0xD800, 0xE000)  # only a command line's undecodable bytes make these

_NAME_TABLE: dict[int, str | None] = {
    **{code: " " if chr(code).isspace() else None for code in _CONTROLS},
    **{ord(ch): " " for ch in _LINE_SEPARATORS},
    **dict.fromkeys(map(ord, BIDI_CONTROLS)),
    **dict.fromkeys(_SURROGATES, "\ufffd"),
}
_TERMINAL_TABLE: dict[int, str] = {
    code: ascii(chr(code))[1:-1]
    for code in [*_CONTROLS, *map(ord, _LINE_SEPARATORS + "".join(BIDI_CONTROLS)), *_SURROGATES]
}

# An encoded-word, and a run of them: the blanks between two encoded-words are not text.
_WORD = r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?="
_ENCODED_WORD = re.compile(_WORD)
_ENCODED_RUN = re.compile(rf"{_WORD}(?:\s+{_WORD})*")
# A decoded word may hold another one; what is still encoded after this many rounds is no
# name, and loses its `=?` like any word that does not decode.
_MAX_NESTING = 8
# What the email package's header parser would take for the start of an encoded-word.
_WORD_START = re.compile(r"=+\?")


def person_name(raw: str) -> str:
    """A display name as plain text: encoded-words decoded, no control or bidi character,
    no line break, blanks collapsed, and nothing the email package would decode again."""
    text = raw.translate(_NAME_TABLE)
    for _ in range(_MAX_NESTING):
        decoded = _ENCODED_RUN.sub(_decode_run, text).translate(_NAME_TABLE)
        if decoded == text:
            break
        text = decoded
    return _WORD_START.sub("?", " ".join(text.split()))


def for_terminal(text: str) -> str:
    """`text` with control characters, line breaks and bidi controls written as escapes
    (`\\x1b`, `\\u202e`), so that printing it can neither command the terminal nor reorder
    the line."""
    return text.translate(_TERMINAL_TABLE)


def _decode_run(run: re.Match[str]) -> str:
    return "".join(_decode_word(word) for word in _ENCODED_WORD.findall(run[0]))


def _decode_word(word: str) -> str:
    """The word's text; a word that does not decode is left as it is (and loses its `=?`
    later, so that nothing else decodes it either)."""
    _, charset, encoding, encoded, _ = word.split("?")
    try:
        if encoding in "bB":
            data = binascii.a2b_base64(encoded + "=" * (-len(encoded) % 4), strict_mode=True)
        else:
            data = binascii.a2b_qp(encoded, header=True)
        return data.decode(charset.partition("*")[0], errors="replace")
    except (LookupError, ValueError):  # binascii.Error and UnicodeError are ValueErrors
        return word

"""Which text encoding a subscriber file is in.

Spreadsheets save CSV in whatever the system uses: UTF-8 (with or without a byte order mark),
UTF-16 with a mark, or a Windows code page. A file read in the wrong one imports names as
garbage, or nothing at all, so the import finds out first and says what it used: a byte order
mark decides; a file that is UTF-8 from end to end is UTF-8; anything else is left to
charset-normalizer's statistics.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path

from newsletter.errors import InputError

CHUNK = 1 << 20
SAMPLE = 1 << 16
# Single-byte code pages decode the same bytes to the same letters more often than not, and
# the statistics then tie; a spreadsheet saved on a Western Windows system is the likeliest.
PREFERRED = "cp1252"


@dataclass(frozen=True)
class Encoding:
    codec: str
    label: str  # what the report says, e.g. "cp1252 (detected)"
    clean: bool  # every byte of the file decodes: no line needs checking on its own


def detect(handle: BufferedReader, path: Path) -> Encoding:
    """The file's encoding; the handle is left at the start of the file."""
    head = handle.peek(SAMPLE)[:SAMPLE]
    if head.startswith(codecs.BOM_UTF8):
        found = _verified(handle, "utf-8-sig", "UTF-8 (byte order mark)")
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        found = _verified(handle, "utf-16", "UTF-16 (byte order mark)")
    else:
        if b"\0" in head:
            raise InputError(f"{path}: this is a binary file, not a CSV text file")
        found = _verified(handle, "utf-8", "UTF-8")
        if not found.clean:
            found = _guessed(handle, path)
    handle.seek(0)
    return found


def _verified(handle: BufferedReader, codec: str, label: str) -> Encoding:
    """Decode the whole file once, chunk by chunk: cheap beside the import, and it spares
    checking every row for bytes that did not decode."""
    handle.seek(0)
    decoder = codecs.getincrementaldecoder(codec)()
    try:
        while chunk := handle.read(CHUNK):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return Encoding(codec, label, clean=False)
    return Encoding(codec, label, clean=True)


def _guessed(handle: BufferedReader, path: Path) -> Encoding:
    from charset_normalizer import from_bytes  # noqa: PLC0415 - only for files not in UTF-8

    handle.seek(0)
    sample = handle.read(SAMPLE * 4)
    matches = list(from_bytes(sample))
    if not matches:
        raise InputError(
            f"{path}: cannot tell the file's text encoding", hint="save the file as UTF-8"
        )
    best = matches[0]
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    codec = next((PREFERRED for m in tied if PREFERRED in m.could_be_from_charset), best.encoding)
    return _verified(handle, codec, f"{codec} (detected)")

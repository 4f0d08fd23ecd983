"""Wire rules shared by the message builders, the fast path and the SMTP client: the policy,
the folding of List-Unsubscribe, the refusal of line breaks in any value that becomes a
header and, once serialised, of any header line the builder did not write; dot-stuffing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email import policy as email_policy
from email.header import Header
from email.headerregistry import (
    Address,
    HeaderRegistry,
    UniqueAddressHeader,
    UnstructuredHeader,
)
from email.message import EmailMessage
from typing import Any

from newsletter.errors import InputError

CRLF = "\r\n"
MAX_LINE = 78


class HeaderInjectionError(InputError):
    """A header value holds a line break: it would let its author add headers of their own."""

    hint = "remove line breaks from names, subjects and addresses"


class ListUnsubscribeHeader(UnstructuredHeader):
    """Folds only between its URIs: the default folder turns a long URL into encoded-words,
    which no mail client would follow."""

    name: str  # from BaseHeader, which the registry mixes in

    def fold(self, *, policy: Any) -> str:
        return fold_uri_list(self.name, str(self), policy.linesep)


def fold_uri_list(name: str, value: str, linesep: str = CRLF) -> str:
    uris = [part.strip() for part in value.split(",")]
    lines = [f"{name}: {uris[0]}"]
    for uri in uris[1:]:
        if len(lines[-1]) + 2 + len(uri) <= MAX_LINE:
            lines[-1] += f", {uri}"
        else:
            lines[-1] += ","
            lines.append(f" {uri}")
    return linesep.join(lines) + linesep


# The characters that make the email package write a display name as a quoted-string.
_SPECIALS = frozenset('()<>@,:;."[]\\')


class ToHeader(UniqueAddressHeader):
    """Writes a display name that needs quoting as RFC 2047 encoded-words unless the whole
    field fits on one line: Python before 3.12.6 drops the quotes of a quoted-string that it
    has to fold (gh-80222), so that `"Doe, John, ..." <a@example.org>` came out as several
    addresses, and a long name ending in `<b@example.org>` as that address."""

    name: str  # from BaseHeader, which the registry mixes in

    def fold(self, *, policy: Any) -> str:
        if len(self.addresses) == 1:
            address = self.addresses[0]
            quoted = not _SPECIALS.isdisjoint(address.display_name)
            if quoted and len(f"{self.name}: {address}") > policy.max_line_length:
                return fold_encoded_name(
                    self.name, address.display_name, address.addr_spec, policy.linesep
                )
        return str(super().fold(policy=policy))  # type: ignore[misc]  # BaseHeader's


def fold_encoded_name(name: str, display_name: str, addr_spec: str, linesep: str = CRLF) -> str:
    """`name: display_name <addr_spec>`, the display name in encoded-words, folded."""
    words = Header(display_name, "utf-8", MAX_LINE, header_name=name).encode(linesep=linesep)
    last = words.rpartition(linesep)[2]
    gap = " " if len(last) + 3 + len(addr_spec) <= MAX_LINE else f"{linesep} "
    return f"{name}: {words}{gap}<{addr_spec}>{linesep}"


def _policy(utf8: bool = False) -> Any:
    registry = HeaderRegistry()
    # typeshed does not know that the registry mixes BaseHeader into every header class.
    registry.map_to_type("list-unsubscribe", ListUnsubscribeHeader)  # type: ignore[arg-type]
    registry.map_to_type("to", ToHeader)  # type: ignore[arg-type]
    return email_policy.SMTP.clone(header_factory=registry, utf8=utf8)


POLICY = _policy()
POLICY_UTF8 = _policy(utf8=True)


def check_header_value(field: str, value: str) -> str:
    if "\r" in value or "\n" in value or "\0" in value:
        raise HeaderInjectionError(f"the {field} contains a line break")
    return value


def header_fields(message: bytes) -> tuple[bytes, ...]:
    """The names of the fields in a serialised message's header block (or in header lines
    alone), in order.

    A value is checked before it is set, but the email package decodes RFC 2047 words when it
    writes a header, so only the bytes it wrote can show where the lines break: a bare CR or
    LF is refused here, and a line that is a field of its own (or not a field at all, or a
    blank line that ends the block early) shows up among the names.
    """
    end = message.find(b"\r\n\r\n")
    head = message[:end] if end >= 0 else message.removesuffix(b"\r\n")
    breaks = head.count(b"\r\n")
    if head.count(b"\r") != breaks or head.count(b"\n") != breaks:
        raise HeaderInjectionError("a header of the message holds a bare CR or LF")
    # A line that does not continue a folded field starts with the name of one.
    return tuple(
        line.partition(b":")[0] for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")
    )


def check_header_fields(message: bytes, expected: Sequence[bytes]) -> bytes:
    """`message`, if its header block holds exactly the `expected` fields, in that order."""
    if header_fields(message) != tuple(expected):
        raise HeaderInjectionError(
            "a value broke out of its header: the message holds header lines it was not built with"
        )
    return message


def serialise(message: EmailMessage) -> bytes:
    """The message's bytes, refused unless they hold just the headers that were set."""
    return check_header_fields(message.as_bytes(), [name.encode("ascii") for name in message])


@dataclass(frozen=True)
class Recipient:
    """`subscriber_id` is None for a `--test` address that is not on the list."""

    subscriber_id: int | None
    email: str
    name: str = ""


def to_value(email: str, name: str = "") -> Address | str:
    """A To: value for `email`. `Address` refuses a non-ASCII local part (fine over
    SMTPUTF8), so that one is quoted by hand, to be written as UTF-8 by `POLICY_UTF8`.
    A line break in either is refused: a display name is cleaned before it comes here."""
    check_header_value("recipient address", email)
    check_header_value("recipient name", name)
    if email.isascii():
        return Address(display_name=name, addr_spec=email)
    if not name:
        return email
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{email}>'

"""Wire rules shared by the message builder, its fast path and the SMTP client: the policy,
the folding of List-Unsubscribe, the refusal of line breaks in any value that becomes a
header, and dot-stuffing."""

from __future__ import annotations

from dataclasses import dataclass
from email import policy as email_policy
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
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


def _policy(utf8: bool = False) -> Any:
    registry = HeaderRegistry()
    # typeshed does not know that the registry mixes BaseHeader into every header class.
    registry.map_to_type("list-unsubscribe", ListUnsubscribeHeader)  # type: ignore[arg-type]
    return email_policy.SMTP.clone(header_factory=registry, utf8=utf8)


POLICY = _policy()
POLICY_UTF8 = _policy(utf8=True)


def check_header_value(field: str, value: str) -> str:
    if "\r" in value or "\n" in value or "\0" in value:
        raise HeaderInjectionError(f"the {field} contains a line break")
    return value


@dataclass(frozen=True)
class Recipient:
    """`subscriber_id` is None for a `--test` address that is not on the list."""

    subscriber_id: int | None
    email: str
    name: str = ""


def to_value(email: str, name: str = "") -> Address | str:
    """A To: value for `email`. `Address` refuses a non-ASCII local part (fine over
    SMTPUTF8), so that one is quoted by hand, to be written as UTF-8 by `POLICY_UTF8`."""
    if email.isascii():
        return Address(display_name=name, addr_spec=email)
    if not name:
        return email
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{email}>'

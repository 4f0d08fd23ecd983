"""Reading raw messages from where bounce reports land: an mbox file, a Maildir, or IMAP.

Every reader yields each message's bytes with a name the operator can find it by, and leaves
the mailbox exactly as it was (IMAP is opened read-only and fetched with BODY.PEEK), so that
reading the same mailbox again is harmless: deciding what is new is the bounce reader's job.
"""

from __future__ import annotations

import contextlib
import imaplib
import ipaddress
import mailbox
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from newsletter.errors import ConfigError, InputError, NewsletterError, UsageError

IMAP_SCHEMES = {"imap": 143, "imaps": 993}


class MailboxError(NewsletterError):
    hint = "check the mailbox address, the IMAP user and NEWSLETTER_IMAP_PASSWORD"


@dataclass(frozen=True)
class RawMessage:
    name: str
    data: bytes


def read_messages(source: str, *, password: str, timeout: float) -> Iterator[RawMessage]:
    """The messages in SOURCE: an `imap(s)://user@host[:port]/MAILBOX` URL, a Maildir or an mbox."""
    if "://" in source:
        return _read_imap(source, password=password, timeout=timeout)
    path = Path(source)
    if path.is_dir():
        return _read_maildir(path)
    if path.is_file():
        return _read_mbox(path)
    raise InputError(f"{source}: no such file, Maildir folder or IMAP URL")


def _read_mbox(path: Path) -> Iterator[RawMessage]:
    with path.open("rb") as handle:
        head = handle.read(5)
    if head and head != b"From ":
        raise InputError(f"{path}: not an mbox file (it does not start with a 'From ' line)")
    box = mailbox.mbox(path, create=False)
    try:
        for number, key in enumerate(box.keys(), start=1):
            yield RawMessage(f"{path.name} #{number}", box.get_bytes(key))
    finally:
        box.close()


def _read_maildir(path: Path) -> Iterator[RawMessage]:
    if not all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
        raise InputError(f"{path}: not a Maildir (it needs cur/, new/ and tmp/)")
    box = mailbox.Maildir(path, factory=None, create=False)
    for key in sorted(box.keys()):
        yield RawMessage(f"{path.name}/{key}", box.get_bytes(key))


@dataclass(frozen=True)
class ImapAddress:
    secure: bool
    user: str
    host: str
    port: int
    mailbox: str

    @classmethod
    def parse(cls, url: str) -> ImapAddress:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in IMAP_SCHEMES:
            raise UsageError(
                f"{url!r}: unsupported mailbox address",
                hint="give an mbox file, a Maildir folder or imaps://user@host/INBOX",
            )
        if parts.password is not None:
            raise UsageError(
                "the IMAP URL must not contain a password",
                hint="set NEWSLETTER_IMAP_PASSWORD instead",
            )
        try:
            port = parts.port or IMAP_SCHEMES[scheme]
        except ValueError:
            raise UsageError(f"{url!r}: the port is not a number") from None
        if not parts.hostname or not parts.username:
            raise UsageError(f"{url!r}: write it as {scheme}://user@host/INBOX")
        address = cls(
            secure=scheme == "imaps",
            user=unquote(parts.username),
            host=parts.hostname,
            port=port,
            mailbox=unquote(parts.path.lstrip("/")) or "INBOX",
        )
        if not address.secure and not _is_loopback(address.host):
            raise UsageError(
                f"{url!r}: plain imap:// would send the password unencrypted",
                hint="use imaps://; plain imap:// is accepted for loopback addresses only",
            )
        return address


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_imap(url: str, *, password: str, timeout: float) -> Iterator[RawMessage]:
    address = ImapAddress.parse(url)
    if not password:
        raise ConfigError(
            "NEWSLETTER_IMAP_PASSWORD is not set",
            hint="export the IMAP password as NEWSLETTER_IMAP_PASSWORD",
        )
    where = f"{address.host}:{address.port}"
    try:
        connection = _connect(address, timeout)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(f"cannot connect to IMAP server {where}: {exc}") from None
    try:
        yield from _fetch_all(connection, address, password, where)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(f"IMAP server {where}: {exc}") from None
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            connection.logout()


def _connect(address: ImapAddress, timeout: float) -> imaplib.IMAP4:
    if address.secure:
        return imaplib.IMAP4_SSL(
            address.host,
            address.port,
            ssl_context=ssl.create_default_context(),
            timeout=timeout,
        )
    return imaplib.IMAP4(address.host, address.port, timeout=timeout)


def _fetch_all(
    connection: imaplib.IMAP4, address: ImapAddress, password: str, where: str
) -> Iterator[RawMessage]:
    try:
        connection.login(address.user, password)
    except imaplib.IMAP4.error:
        raise MailboxError(f"IMAP server {where} refused the login of {address.user!r}") from None
    status, _ = connection.select(_quote(address.mailbox), readonly=True)
    if status != "OK":
        raise MailboxError(f"IMAP server {where} has no mailbox {address.mailbox!r}")
    status, found = connection.uid("SEARCH", "ALL")
    if status != "OK" or not found or not isinstance(found[0], bytes):
        raise MailboxError(f"IMAP server {where} did not list the messages")
    for uid in found[0].decode("ascii").split():
        status, parts = connection.uid("FETCH", uid, "(BODY.PEEK[])")
        body = next((p[1] for p in parts if isinstance(p, tuple) and len(p) == 2), None)
        # An unreadable message is still yielded (empty), so the report names it.
        data = body if status == "OK" and isinstance(body, bytes) else b""
        yield RawMessage(f"{address.mailbox} UID {uid}", data)


def _quote(name: str) -> str:
    """IMAP quoted string, so a mailbox name with spaces or quotes reaches the server intact."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'

"""IMAP -> raw messages: folder discovery, UIDVALIDITY/UID cursor, Gmail ids, reconnects. No SQL."""

from __future__ import annotations

import contextlib
import imaplib
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import LoginError
from imapclient.imap_utf7 import decode as decode_utf7

from mailaudit.config import AccountConfig, SyncConfig
from mailaudit.errors import AuthError, ConfigError, SourceUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

GMAIL_EXT = b"X-GM-EXT-1"
GMAIL_ATTRS = ("X-GM-THRID", "X-GM-MSGID", "X-GM-LABELS")
KEY_HEADERS = "MESSAGE-ID FROM DATE SUBJECT"
# common names of the Sent folder on servers without SPECIAL-USE (RFC 6154), tried in this order
SENT_NAMES = ("Sent", "Sent Items", "Sent Messages", "Sent Mail", "INBOX.Sent", "INBOX/Sent", "Gesendet",
              "Gesendete Elemente", "Envoyés", "Enviados", "Posta inviata")
_SKIP_FLAGS = {b"\\junk", b"\\trash", b"\\noselect", b"\\nonexistent", b"\\drafts"}
# a connection that died (server restart, network, timeout): reconnect and go on
_DROPPED: tuple[type[BaseException], ...] = (OSError, EOFError, imaplib.IMAP4.abort)


class UidValidityChanged(Exception):
    """The folder's UIDVALIDITY changed while it was being synced: start the folder over."""


class MissingFolders(Exception):
    """Configured folders that the server does not have."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


@dataclass(frozen=True)
class FolderPlan:
    name: str
    sent: bool  # messages here are the owner's (SPECIAL-USE \Sent, or a common Sent name)
    gmail: bool  # fetch Gmail's thread id, message id and labels


@dataclass(frozen=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int
    messages: int


@dataclass(slots=True)
class ImapMessage:
    uid: int
    data: bytes  # the header and a bounded prefix of the text
    size: int  # RFC822.SIZE: the whole message
    internal_ts: int | None  # INTERNALDATE as epoch seconds
    truncated: bool
    gm_thrid: str | None = None
    gm_msgid: str | None = None
    gm_labels: list[str] = field(default_factory=list)
    # for a truncated message: (has an attachment, attachment names) from BODYSTRUCTURE, beyond the prefix
    attachments: tuple[bool, list[str]] | None = None

    @property
    def sent(self) -> bool:
        return "Sent" in self.gm_labels

    @property
    def spam_or_trash(self) -> bool:
        return "Spam" in self.gm_labels or "Trash" in self.gm_labels


@dataclass(slots=True)
class ImapHeaders:
    """What re-linking needs: a few header fields and the size, never the body."""

    uid: int
    data: bytes
    size: int
    internal_ts: int | None


def plan_folders(
    listing: Sequence[tuple[tuple[bytes, ...], bytes | None, str]], capabilities: frozenset[bytes] | set[bytes],
    configured: Sequence[str],
) -> list[FolderPlan]:
    """Which folders to sync. Gmail: the \\All folder (All Mail, whatever its localised name). Elsewhere:
    INBOX and the \\Sent folder (else a common Sent name). Plus configured folders. Spam, Trash never."""
    flags = {name: {f.lower() for f in fl} for fl, _delim, name in listing}
    by_lower = {name.lower(): name for name in flags}
    plans: list[FolderPlan] = []
    gmail = GMAIL_EXT in capabilities
    all_mail = next((n for n, f in flags.items() if b"\\all" in f), None) if gmail else None
    if all_mail:
        plans.append(FolderPlan(all_mail, sent=False, gmail=True))
    else:
        if "inbox" in by_lower:
            plans.append(FolderPlan(by_lower["inbox"], sent=False, gmail=gmail))
        sent = next((n for n, f in flags.items() if b"\\sent" in f), None)
        sent = sent or next((by_lower[s.lower()] for s in SENT_NAMES if s.lower() in by_lower), None)
        if sent:
            plans.append(FolderPlan(sent, sent=True, gmail=gmail))
    missing = []
    for name in configured:
        # folder names are case-sensitive, except INBOX (RFC 3501 5.1)
        real = by_lower.get("inbox") if name.lower() == "inbox" else name if name in flags else None
        if real is None:
            missing.append(name)
            continue
        if flags[real] & _SKIP_FLAGS or any(p.name == real for p in plans):
            continue
        plans.append(FolderPlan(real, sent=b"\\sent" in flags[real], gmail=gmail))
    if missing:
        raise MissingFolders(missing)
    return plans


def message_from_fetch(uid: int, data: dict[bytes, object]) -> ImapMessage | None:
    """One FETCH response (as imapclient parses it) -> ImapMessage; None when the message has vanished."""
    header = text = None
    for key, value in data.items():
        if key == b"BODY[HEADER]":
            header = value
        elif key.startswith(b"BODY[TEXT]"):
            text = value
    if header is None:
        return None
    header = bytes(header) if isinstance(header, (bytes, bytearray)) else b""
    text = bytes(text) if isinstance(text, (bytes, bytearray)) else b""
    size = _int(data.get(b"RFC822.SIZE")) or len(header) + len(text)
    msg = ImapMessage(uid=uid, data=header + text, size=size, internal_ts=_epoch(data.get(b"INTERNALDATE")),
                      truncated=len(header) + len(text) < size)
    if b"X-GM-THRID" in data:
        msg.gm_thrid = _gm_id(data[b"X-GM-THRID"])
        msg.gm_msgid = _gm_id(data.get(b"X-GM-MSGID"))
        msg.gm_labels = gmail_labels(data.get(b"X-GM-LABELS"))
    return msg


def gmail_labels(value: object) -> list[str]:
    """X-GM-LABELS -> label names: system labels lose their backslash (\\Sent -> Sent, as in Takeout); user
    labels are decoded from modified UTF-7; a label that looks like a number comes back as a number."""
    if not isinstance(value, (tuple, list)):
        return []
    out = []
    for item in value:
        label = decode_utf7(bytes(item)) if isinstance(item, (bytes, bytearray)) else str(item)
        out.append(label[1:] if label.startswith("\\") else label)
    return out


def attachments_from_bodystructure(body: object, limit: int = 20) -> tuple[bool, list[str]]:
    """(has an attachment, file names) from a BODYSTRUCTURE (as imapclient parses it), the way parse.py
    counts them: a named part, a Content-Disposition: attachment, or a part that is not text."""
    has, names = False, []
    stack = [body]
    while stack and len(stack) < 1000:
        part = stack.pop()
        if not isinstance(part, tuple) or not part:
            continue
        if isinstance(part[0], list):  # multipart: (parts, subtype, ...)
            stack.extend(reversed(part[0]))
            continue
        ctype = b"/".join(x.lower() for x in part[:2] if isinstance(x, bytes)).decode("ascii", "replace")
        disposition = next((x for x in part[7:] if isinstance(x, tuple) and len(x) == 2
                            and isinstance(x[0], bytes) and x[0].lower() in (b"attachment", b"inline")), None)
        params = dict(_pairs(part[2] if len(part) > 2 else None))
        if disposition:
            params.update(_pairs(disposition[1]))
        raw = params.get(b"filename") or params.get(b"filename*") or params.get(b"name") or params.get(b"name*")
        filename = _param_text(raw) if raw else ""
        attach = disposition is not None and disposition[0].lower() == b"attachment"
        if filename or attach or not ctype.startswith("text/"):
            if ctype.startswith(("text/", "message/", "multipart/")) and not filename and not attach:
                continue
            has = True
            if filename and len(names) < limit:
                names.append(" ".join(filename.split())[:200])
    return has, names


def _pairs(value: object) -> list[tuple[bytes, bytes]]:
    if not isinstance(value, tuple):
        return []
    items = [v for v in value if isinstance(v, bytes)]
    return [(items[i].lower(), items[i + 1]) for i in range(0, len(items) - 1, 2)]


def _param_text(raw: bytes) -> str:
    import email.header
    import email.utils

    text = raw.decode("utf-8", "replace")
    if "''" in text:  # RFC 2231: charset'language'percent-encoded
        charset, _lang, value = email.utils.decode_rfc2231(text)
        return email.utils.collapse_rfc2231_value((charset, _lang, value))
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (ValueError, LookupError, UnicodeError):
        return text


def _gm_id(value: object) -> str | None:
    return str(value) if isinstance(value, int) or (isinstance(value, bytes) and value.isdigit()) else None


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


def _epoch(value: object) -> int | None:
    try:
        return int(value.timestamp())  # type: ignore[union-attr]
    except (AttributeError, ValueError, OverflowError, OSError):
        return None


def uid_batches(uids: Sequence[int], size: int) -> list[list[int]]:
    return [list(uids[i:i + size]) for i in range(0, len(uids), size)]


class ImapAccount:
    """A live, self-healing connection to one account: a dropped connection is reopened with bounded backoff,
    the folder selected again, and the failed command repeated (every command here is idempotent)."""

    def __init__(
        self, account: AccountConfig, sync: SyncConfig, credential: Callable[[bool], str],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.account = account
        self.sync = sync
        self.credential = credential  # credential(force_refresh) -> password or OAuth2 access token
        self.sleep = sleep
        self.client: IMAPClient | None = None
        self.capabilities: frozenset[bytes] = frozenset()
        self.reconnects = 0
        self._selected: str | None = None
        self._validity: dict[str, int] = {}
        self.who = f"account '{account.name}'"
        self.where = f"{account.host}:{account.effective_port}"

    def worker_copy(self) -> ImapAccount:
        """The same account for another process: no connection yet (it opens its own on first use), the
        folders' known UIDVALIDITY kept, so a change is still noticed there."""
        twin = ImapAccount(self.account, self.sync, self.credential, self.sleep)
        twin._validity = dict(self._validity)
        return twin

    def expect_uidvalidity(self, folder: str, uidvalidity: int) -> None:
        """The UIDVALIDITY the caller's cursor has: selecting the folder under another raises UidValidityChanged."""
        if self._validity.setdefault(folder, uidvalidity) != uidvalidity:
            self._validity[folder] = uidvalidity
            self._selected = None

    # --- connection ---------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Open and log in; every failure becomes one error naming the account and what to check."""
        try:
            self.client = self._open()
        except (AuthError, ConfigError, SourceUnavailableError):
            raise
        except (OSError, EOFError, imaplib.IMAP4.error) as exc:
            raise self._connect_error(exc) from None
        self.capabilities = frozenset(c.upper() for c in self.client.capabilities())

    def _connect_error(self, exc: BaseException) -> SourceUnavailableError:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return SourceUnavailableError(
                f"{self.who}: the TLS certificate of {self.where} is not trusted ({exc.verify_message}); check the "
                "host name, or set tls_ca_file to the CA that signed the server's certificate")
        if isinstance(exc, ssl.SSLError):
            return SourceUnavailableError(
                f"{self.who}: TLS with {self.where} failed ({exc.reason or exc}); check port and security "
                "(ssl usually on 993, starttls on 143)")
        if isinstance(exc, socket.gaierror):
            return SourceUnavailableError(f"{self.who}: cannot resolve host '{self.account.host}'; check host")
        if isinstance(exc, ConnectionRefusedError):
            return SourceUnavailableError(
                f"{self.who}: connection to {self.where} refused; check host and port, and that the server is up")
        if isinstance(exc, TimeoutError):
            return SourceUnavailableError(
                f"{self.who}: no answer from {self.where} within {self.sync.timeout_seconds} s; check host, port "
                "and network")
        if isinstance(exc, _DROPPED):
            return SourceUnavailableError(
                f"{self.who}: cannot talk to {self.where} ({_reason(exc)}); check host, port and network")
        return SourceUnavailableError(f"{self.who}: {self.where} refused the session ({_reason(exc)})")

    def _ssl_context(self) -> ssl.SSLContext:
        ca = self.account.tls_ca_file
        if ca and not Path(ca).expanduser().is_file():
            raise ConfigError(f"{self.who}: tls_ca_file {ca} not found; check the path")
        ctx = ssl.create_default_context(cafile=str(Path(ca).expanduser()) if ca else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def _open(self) -> IMAPClient:
        a = self.account
        ctx = self._ssl_context() if a.security != "none" else None
        timeout = SocketTimeout(connect=self.sync.timeout_seconds, read=self.sync.timeout_seconds)
        client = IMAPClient(a.host, port=a.effective_port, ssl=a.security == "ssl", ssl_context=ctx, timeout=timeout)
        client.normalise_times = False  # INTERNALDATE with its zone, so epoch seconds are right
        if not logging.getLogger("imapclient").isEnabledFor(logging.DEBUG):
            # imapclient runs imaplib at debug level 5, which formats a repr of every response (whole
            # message literals included) for a logger that drops it: a third of a first sync's CPU
            client._imap.debug = 0
        try:
            if a.security == "starttls":
                if not client.has_capability("STARTTLS"):
                    raise SourceUnavailableError(
                        f"{self.who}: {self.where} does not offer STARTTLS; use security = \"ssl\" (port 993)")
                client.starttls(ctx)
            self._login(client)
        except BaseException:
            _close_quietly(client)
            raise
        return client

    def _login(self, client: IMAPClient) -> None:
        a = self.account
        for force in (False, True):
            secret = self.credential(force)
            try:
                if a.auth == "oauth2":
                    client.oauth2_login(a.username, secret)
                else:
                    client.login(a.username, secret)
                return
            except LoginError as exc:
                why = _reason(exc).replace(secret, "***")
                if a.auth == "oauth2" and not force:
                    continue  # the cached access token may have been revoked early: refresh once
                if a.auth == "oauth2":
                    raise AuthError(f"{self.who}: the server refused the OAuth2 token ({why}); run `mailaudit auth "
                                    f"{a.name}` again") from None
                raise AuthError(f"{self.who}: the server refused the login ({why}); check username and the "
                                "password source (password_command, password_env or the keyring)") from None

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.logout()
            except Exception:
                _close_quietly(self.client)
            self.client = None
            self._selected = None

    def _drop(self) -> None:
        if self.client is not None:
            _close_quietly(self.client)
        self.client = None
        self._selected = None

    def _retry(self, folder: str | None, op: Callable[[IMAPClient], T]) -> T:
        attempt = 0
        while True:
            try:
                if self.client is None:
                    self.client = self._open()
                    self.reconnects += 1
                if folder is not None and self._selected != folder:
                    self._select(folder)
                return op(self.client)
            except ssl.SSLCertVerificationError as exc:  # the certificate changed under us: not a drop
                self._drop()
                raise self._connect_error(exc) from None
            except _DROPPED as exc:
                self._drop()
                attempt += 1
                if attempt > self.sync.reconnect_attempts:
                    raise SourceUnavailableError(
                        f"{self.who}: lost the connection to {self.where} and could not get it back after "
                        f"{self.sync.reconnect_attempts} attempts ({_reason(exc)}); check the server and network, "
                        "then run sync again: it goes on from the last stored batch") from None
                delay = min(float(self.sync.max_backoff_seconds), 2.0 ** (attempt - 1))
                log.warning("%s: connection to %s lost (%s); reconnecting in %.0f s (attempt %d of %d)",
                            self.who, self.where, _reason(exc), delay, attempt, self.sync.reconnect_attempts)
                self.sleep(delay)
            except imaplib.IMAP4.error as exc:
                raise SourceUnavailableError(
                    f"{self.who}: the server refused a command{' in folder ' + repr(folder) if folder else ''} "
                    f"({_reason(exc)}); check the folder exists and run sync again") from None

    def _select(self, folder: str) -> None:
        assert self.client is not None
        info = self.client.select_folder(folder, readonly=True)  # EXAMINE: nothing we do can set \Seen
        validity = _int(info.get(b"UIDVALIDITY"))
        self._selected = folder
        known = self._validity.setdefault(folder, validity)
        if known != validity:
            self._validity[folder] = validity
            raise UidValidityChanged(folder)

    # --- commands -----------------------------------------------------------------------------------------

    def list_folders(self) -> list[tuple[tuple[bytes, ...], bytes | None, str]]:
        return self._retry(None, lambda c: c.list_folders())

    def folder_status(self, folder: str) -> FolderStatus:
        """STATUS: one round trip, and the folder is not selected (an unchanged folder costs nothing more)."""
        st = self._retry(None, lambda c: c.folder_status(folder, [b"UIDVALIDITY", b"UIDNEXT", b"MESSAGES"]))
        status = FolderStatus(_int(st.get(b"UIDVALIDITY")), _int(st.get(b"UIDNEXT")), _int(st.get(b"MESSAGES")))
        if self._validity.get(folder) != status.uidvalidity:
            self._validity[folder] = status.uidvalidity
            if self._selected == folder:
                self._selected = None
        return status

    def search_uids(self, folder: str, above: int, since_ts: int | None = None) -> list[int]:
        """UIDs above `above` (the cursor), optionally only mail since a date (the first-sync horizon)."""
        criteria: list[object] = ["UID", f"{above + 1}:*"]
        if since_ts is not None:
            criteria += ["SINCE", time.strftime("%d-%b-%Y", time.gmtime(since_ts))]
        uids = self._retry(folder, lambda c: c.search(criteria))
        # "n:*" always matches the highest UID, even when it is below n (RFC 3501 6.4.8)
        return sorted(u for u in uids if u > above)

    def fetch_messages(self, folder: str, uids: list[int], gmail: bool, prefix: int) -> list[ImapMessage]:
        """Headers, a bounded text prefix, size and date, with BODY.PEEK: \\Seen is never set."""
        attrs = ["BODY.PEEK[HEADER]", f"BODY.PEEK[TEXT]<0.{prefix}>", "RFC822.SIZE", "INTERNALDATE"]
        if gmail:
            attrs += GMAIL_ATTRS
        resp = self._retry(folder, lambda c: c.fetch(uids, attrs))
        out = []
        for uid in uids:
            data = resp.get(uid)
            msg = message_from_fetch(uid, data) if data else None
            if msg is not None:
                out.append(msg)
        cut = [m for m in out if m.truncated]
        if cut:  # attachments past the prefix: their names from the structure, never their bytes
            shapes = self._retry(folder, lambda c: c.fetch([m.uid for m in cut], ["BODYSTRUCTURE"]))
            for m in cut:
                shape = (shapes.get(m.uid) or {}).get(b"BODYSTRUCTURE")
                if shape is not None:
                    m.attachments = attachments_from_bodystructure(shape)
        return out

    def fetch_headers(self, folder: str, uids: list[int]) -> list[ImapHeaders]:
        """Only Message-ID, From, Date, Subject and the size: enough to re-link a known message."""
        attrs = [f"BODY.PEEK[HEADER.FIELDS ({KEY_HEADERS})]", "RFC822.SIZE", "INTERNALDATE"]
        resp = self._retry(folder, lambda c: c.fetch(uids, attrs))
        out = []
        for uid in uids:
            data = resp.get(uid) or {}
            header = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), None)
            if isinstance(header, (bytes, bytearray)):
                out.append(ImapHeaders(uid, bytes(header), _int(data.get(b"RFC822.SIZE")),
                                       _epoch(data.get(b"INTERNALDATE"))))
        return out

    def all_uids(self, folder: str) -> list[int]:
        return sorted(self._retry(folder, lambda c: c.search(["ALL"])))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


def _close_quietly(client: IMAPClient) -> None:
    with contextlib.suppress(Exception):
        client.shutdown()

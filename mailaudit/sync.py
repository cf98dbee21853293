"""`mailaudit sync`: fetch_* from each IMAP account, save_* into the store batch by batch, then settle."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailaudit import store, syncstore
from mailaudit.config import AccountConfig, Config, ParseConfig
from mailaudit.errors import ConfigError, MailauditError, SourceUnavailableError
from mailaudit.imap_sync import (
    FolderPlan,
    FolderStatus,
    ImapAccount,
    ImapMessage,
    MissingFolders,
    UidValidityChanged,
    plan_folders,
    uid_batches,
)
from mailaudit.progress import Progress, SilentProgress
from mailaudit.secrets import fetch_access_token, fetch_password
from mailaudit.settle import settle

if TYPE_CHECKING:  # parsing is imported when there is mail to parse: a no-change sync starts faster without it
    from mailaudit.parse import ParsedMessage

log = logging.getLogger(__name__)

POOL_MIN_MESSAGES = 2000  # below this, parsing in worker processes costs more than it saves
RELINK_BATCH = 2000
# MIME damage that only says we cut the text short, not that the message is broken
_TRUNCATION_DEFECTS = {"CloseBoundaryNotFoundDefect", "StartBoundaryNotFoundDefect", "InvalidBase64PaddingDefect",
                       "InvalidBase64LengthDefect", "MissingHeaderBodySeparatorDefect"}


@dataclass
class FolderSummary:
    account: str
    folder: str
    unchanged: bool = False
    fetched: int = 0  # messages whose header and text were downloaded
    new: int = 0
    duplicates: int = 0
    relinked: int = 0  # known messages found again under a new UIDVALIDITY, not downloaded
    skipped: int = 0
    defects: int = 0


@dataclass
class SyncSummary:
    folders: list[FolderSummary] = field(default_factory=list)
    failures: list[MailauditError] = field(default_factory=list)
    accounts: int = 0
    threads: int = 0
    me: list[str] = field(default_factory=list)

    def total(self, attr: str) -> int:
        return sum(getattr(f, attr) for f in self.folders)


def sync_accounts(
    conn: sqlite3.Connection, cfg: Config, names: list[str] | None = None, progress: Progress | None = None
) -> SyncSummary:
    """Sync the named accounts (default: all). An account that fails is reported in `failures` while the
    others go on; when every account failed, the first error is raised."""
    progress = progress or SilentProgress()
    accounts = _select(cfg, names)
    summary = SyncSummary(accounts=len(accounts))
    parsers = _Parsers(cfg.parse)
    try:
        for account in accounts:
            try:
                sync_account(conn, cfg, account, progress, summary, parsers)
            except MailauditError as exc:
                log.debug("%s failed: %s", account.name, exc)
                summary.failures.append(exc)
    finally:
        parsers.close()
    changed = summary.total("new") or summary.total("relinked") or summary.total("duplicates")
    # an earlier run killed after storing a batch left messages unthreaded: settle them now
    if changed or store.has_unthreaded(conn):
        done = settle(conn, cfg)
        summary.me, summary.threads = done.me, done.threads
    if summary.failures and len(summary.failures) == len(accounts):
        for exc in summary.failures[1:]:  # the first becomes the error line; the others must not be lost
            log.error("%s", exc)
        raise summary.failures[0]
    return summary


def _select(cfg: Config, names: list[str] | None) -> list[AccountConfig]:
    if not cfg.accounts:
        raise ConfigError(f"{cfg.source}: no [[accounts]] configured; add one (see config.example.toml)")
    if not names:
        return list(cfg.accounts)
    known = {a.name: a for a in cfg.accounts}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"{cfg.source}: no account named {', '.join(unknown)} (configured: {', '.join(known)})")
    return [known[n] for n in names]


def credential_for(account: AccountConfig) -> Callable[[bool], str]:
    """credential(force_refresh): the password (fetched once, kept in memory for reconnects) or an access token."""
    if account.auth == "oauth2":
        return lambda force: fetch_access_token(account, force_refresh=force)
    cache: list[str] = []

    def password(force: bool) -> str:
        if not cache:
            cache.append(fetch_password(account))
        return cache[0]

    return password


def sync_account(
    conn: sqlite3.Connection, cfg: Config, account: AccountConfig, progress: Progress, summary: SyncSummary,
    parsers: _Parsers | None = None,
) -> None:
    imap = ImapAccount(account, cfg.sync, credential_for(account))
    imap.connect()
    own_parsers = parsers is None
    parsers = parsers or _Parsers(cfg.parse)
    try:
        try:
            plans = plan_folders(imap.list_folders(), imap.capabilities, account.folders)
        except MissingFolders as exc:
            raise SourceUnavailableError(
                f"account '{account.name}': folder {exc} not found on the server; check folders in its "
                "[[accounts]] table") from None
        for plan in plans:
            for attempt in range(3):
                try:
                    summary.folders.append(_sync_folder(conn, cfg, imap, plan, progress, parsers))
                    break
                except UidValidityChanged:
                    if attempt == 2:
                        raise SourceUnavailableError(
                            f"account '{account.name}': folder '{plan.name}' keeps changing its UIDVALIDITY; "
                            "run sync again later") from None
                    log.warning("account '%s': %s changed its UIDVALIDITY during the sync; starting it again",
                                account.name, plan.name)
    finally:
        imap.close()
        if own_parsers:
            parsers.close()


def _sync_folder(
    conn: sqlite3.Connection, cfg: Config, imap: ImapAccount, plan: FolderPlan, progress: Progress,
    parsers: _Parsers,
) -> FolderSummary:
    account = imap.account.name
    fs = FolderSummary(account, plan.name)
    src = store.save_source(conn, f"imap:{account}/{plan.name}", "imap", f"imap://{account}/{plan.name}",
                            plan.name, plan.sent, None, None)
    cursor = syncstore.load_imap_cursor(conn, account, plan.name)
    status = imap.folder_status(plan.name)
    if cursor and cursor.uidvalidity == status.uidvalidity and status.uidnext - 1 <= cursor.last_uid:
        fs.unchanged = True  # one STATUS round trip, and the folder is never selected
        return fs
    last_uid = cursor.last_uid if cursor and cursor.uidvalidity == status.uidvalidity else 0
    known: set[int] = set()
    if cursor and cursor.uidvalidity is not None and cursor.uidvalidity != status.uidvalidity:
        last_uid = _relink(conn, cfg, imap, plan, src.id, status.uidnext, status.uidvalidity, fs)
        known = syncstore.load_known_uids(conn, src.id)
    elif cursor and cursor.uidvalidity == status.uidvalidity:
        known = syncstore.load_known_uids(conn, src.id) if last_uid < _max_known(conn, src.id) else set()
    since = imap.account.since_ts(time.time())  # the horizon holds on every run, not only the first
    uids = [u for u in imap.search_uids(plan.name, last_uid, since) if u not in known]
    label = f"{account}/{plan.name}"
    progress.begin(label, len(uids), "msg")
    try:
        _fetch_and_save(conn, cfg, imap, plan, src.id, status, uids, parsers, progress, fs)
    finally:
        progress.end()
    store.mark_source_complete(conn, src.id)
    progress.note(f"{fs.new} new, {fs.relinked} re-linked, {fs.skipped} skipped, {fs.defects} with defects")
    log.info("synced %s: %d fetched, %d new, %d re-linked", label, fs.fetched, fs.new, fs.relinked)
    return fs


def _max_known(conn: sqlite3.Connection, source_id: int) -> int:
    row = conn.execute("SELECT max(CAST(location AS INTEGER)) FROM locations WHERE source=?", (source_id,)).fetchone()
    return int(row[0] or 0)


def _fetch_and_save(
    conn: sqlite3.Connection, cfg: Config, imap: ImapAccount, plan: FolderPlan, source_id: int,
    status: FolderStatus, uids: list[int], parsers: _Parsers, progress: Progress, fs: FolderSummary,
) -> None:
    """Fetch batch k+1 while batch k is parsed, then store batch k with its cursor; commits stay in UID order."""
    account = imap.account.name
    batches = uid_batches(uids, cfg.sync.batch_size)
    if not batches:
        syncstore.save_imap_cursor(conn, source_id, account, plan.name, status.uidvalidity, status.uidnext - 1)
        return
    big = len(uids) >= POOL_MIN_MESSAGES
    if big:
        parsers.start()
    pending: tuple[list[int], list[ImapMessage], Future] | None = None

    def commit(batch: list[int], msgs: list[ImapMessage], parsed: Future, final: bool) -> None:
        items: list[syncstore.ImapItem] = []
        for m, (pm, chash) in zip(msgs, parsed.result(), strict=True):
            if m.spam_or_trash:
                items.append((str(m.uid), None, False, None))
            elif chash:
                items.append((str(m.uid), pm, plan.sent or m.sent, m.gm_msgid, chash))
            else:
                items.append((str(m.uid), pm, plan.sent or m.sent, m.gm_msgid))
        top = max(batch[-1], status.uidnext - 1) if final else batch[-1]
        res = syncstore.save_imap_batch(conn, source_id, account, plan.name, status.uidvalidity, items, top)
        fs.fetched += len(msgs)
        fs.new += res.new
        fs.duplicates += res.duplicates
        fs.skipped += res.skipped + len(batch) - len(msgs)
        fs.defects += res.defects
        progress.advance(len(batch), len(batch))

    # a big first sync checkpoints the WAL in a thread, off the commit path
    with store.background_checkpoints(conn) if big else contextlib.nullcontext():
        try:
            for batch in batches:
                msgs = imap.fetch_messages(plan.name, batch, plan.gmail, cfg.sync.text_prefix_bytes)
                parsed = parsers.submit(msgs)
                if pending is not None:
                    done, pending = pending, None
                    commit(*done, final=False)
                pending = (batch, msgs, parsed)
            done, pending = pending, None
            commit(*done, final=True)
        finally:
            if pending is not None:  # the connection is gone for good: keep the batch already fetched
                with contextlib.suppress(Exception):
                    commit(*pending, final=False)


def _relink(
    conn: sqlite3.Connection, cfg: Config, imap: ImapAccount, plan: FolderPlan, source_id: int, uidnext: int,
    uidvalidity: int, fs: FolderSummary,
) -> int:
    """UIDVALIDITY changed: list the folder again, fetch only a few header fields, link what we know."""
    from mailaudit.parse import parse_message

    log.warning("account '%s': %s has a new UIDVALIDITY; re-linking known messages by Message-ID",
                imap.account.name, plan.name)
    entries: list[tuple[str, ParsedMessage, int]] = []
    for batch in uid_batches(imap.all_uids(plan.name), RELINK_BATCH):
        for h in imap.fetch_headers(plan.name, batch):
            pm = parse_message(h.data + b"\r\n", cfg.parse, envelope_ts=h.internal_ts)
            entries.append((str(h.uid), pm, h.size))
    unknown = syncstore.save_imap_relink(conn, source_id, imap.account.name, plan.name, uidvalidity, entries,
                                     plan.sent, uidnext)
    fs.relinked = len(entries) - len(unknown)
    cursor = syncstore.load_imap_cursor(conn, imap.account.name, plan.name)
    return cursor.last_uid if cursor else 0


def parse_fetched(msgs: list[ImapMessage], cfg: ParseConfig) -> list[ParsedMessage]:
    """Fetched (possibly truncated) messages -> ParsedMessage, with the server's size, date and Gmail ids."""
    from mailaudit.parse import parse_message

    out: list[ParsedMessage] = []
    for m in msgs:
        pm = parse_message(m.data, cfg, envelope_ts=m.internal_ts)
        pm.size = m.size
        if m.truncated:
            pm.defects = [d for d in pm.defects if d not in _TRUNCATION_DEFECTS]
        if m.attachments is not None:
            has, names = m.attachments
            pm.has_attachment = pm.has_attachment or has
            pm.attachment_names = (pm.attachment_names + [n for n in names if n not in pm.attachment_names])[:20]
        if m.gm_thrid:
            pm.gm_thrid = m.gm_thrid
        if m.gm_labels:
            pm.gm_labels = list(m.gm_labels)
        out.append(pm)
    return out


def _parse_hashed(msgs: list[ImapMessage], cfg: ParseConfig) -> list[tuple[ParsedMessage, str]]:
    """In a worker: parse, and hash there too, which takes that off the writer's thread."""
    return [(pm, pm.content_hash()) for pm in parse_fetched(msgs, cfg)]


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if sys.platform.startswith("linux"):
        import ctypes

        # die with the parent, even when it is killed with SIGKILL
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _Parsers:
    """Parse in worker processes during a large first sync (parsing is most of its cost), in-process otherwise."""

    def __init__(self, cfg: ParseConfig) -> None:
        self.cfg = cfg
        self.pool = None  # a ProcessPoolExecutor once started
        self.workers = max(1, min(os.cpu_count() or 1, 4))

    def start(self) -> None:
        if self.pool is None and self.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            self.pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker)

    def submit(self, msgs: list[ImapMessage]) -> Future:
        """A future of [(parsed message, its content hash, or None when the writer is to compute it)]."""
        if self.pool is None or len(msgs) < 50:
            done: Future = Future()
            done.set_result([(pm, None) for pm in parse_fetched(msgs, self.cfg)])
            return done
        step = -(-len(msgs) // self.workers)
        parts = [self.pool.submit(_parse_hashed, msgs[i:i + step], self.cfg) for i in range(0, len(msgs), step)]
        return _Joined(parts)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class _Joined(Future):
    """The results of several futures, concatenated in order."""

    def __init__(self, parts: list[Future]) -> None:
        super().__init__()
        self.parts = parts

    def result(self, timeout: float | None = None) -> list[tuple[ParsedMessage, str]]:  # type: ignore[override]
        return [pm for part in self.parts for pm in part.result(timeout)]
